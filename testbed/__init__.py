"""The test bed of deepseek-operator: everything the product is tested and demonstrated on, and
nothing the product ships or imports.

- cluster/: the local GPU cluster: a real control plane (etcd, kube-apiserver,
  controller-manager, scheduler built from Go modules), kwok GPU nodes, a Prometheus per region;
  two profiles (the demo's and the tests').
- sim/: the simulated GPU fleet (engine model, vLLM-compatible replicas, DCGM exporters), a
  router, trace replay and fault hooks.
- demo.py: `make demo`.

Command line: `python -m testbed cluster up|down|status`, `python -m testbed demo up|down|clean`,
`python -m testbed.sim fleet|router|load|fault|zone`. Its dependencies are the `testbed` extra
of pyproject.toml; the operator image carries none of this package.
"""
