"""Annotations of the test bed's own: the simulated fleet's, which the operator never reads (the
product's labels are in deepseek_operator.labels)."""

# The simulated fleet plays the container runtime on the local cluster: it sets these on a pod
# once its simulated engine listens (kwok then marks the pod Ready) and once a terminating
# pod's in-flight requests have drained (kwok then removes it).
SIM_ENGINE_READY = "sim.deepseek.dev/engine-ready"
SIM_DRAINED = "sim.deepseek.dev/drained"
# Why the fleet cannot run a pod's engine or router (a model too big for its GPUs, a command the
# test bed cannot play, a router that does not listen at its pod IP).
SIM_ENGINE_ERROR = "sim.deepseek.dev/engine-error"

# Helm test hook pods (helm.sh/hook one of TEST_HOOKS): the fleet's hook runner runs their
# command on this machine, then sets the exit code (kwok then completes the pod: Succeeded on 0,
# else Failed) and the tail of the output (the container's termination message).
TEST_HOOKS = ("test", "test-success")
SIM_EXIT_CODE = "sim.deepseek.dev/exit-code"
SIM_OUTPUT = "sim.deepseek.dev/output"

# Router pods (issue #21): a pod labelled app.kubernetes.io/component=ROUTER_COMPONENT (or
# ROUTER_BATCH_COMPONENT, the batch pool of spec.router.batch) and
# serving.deepseek.dev/deployment, whose container runs `vllm-router`, is played by the fleet
# with the real vllm-router binary (testbed/sim/vllmrouter.py). Its readiness uses
# SIM_ENGINE_READY and its removal SIM_DRAINED, as for engine pods (one kwok class, "played by
# the fleet"). The operator's labels module has no router component yet: this is the value its
# router pods must carry.
ROUTER_COMPONENT = "router"
ROUTER_BATCH_COMPONENT = "router-batch"
ROUTER_COMPONENTS = (ROUTER_COMPONENT, ROUTER_BATCH_COMPONENT)
# When the router process exits on its own: its exit code, the tail of its output and how many
# times the fleet restarted it (with the kubelet's back-off).
SIM_LAST_EXIT_CODE = "sim.deepseek.dev/last-exit-code"
SIM_LAST_OUTPUT = "sim.deepseek.dev/last-output"
SIM_RESTART_COUNT = "sim.deepseek.dev/restart-count"
