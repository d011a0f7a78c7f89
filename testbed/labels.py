"""Annotations of the test bed's own: the simulated fleet's, which the operator never reads (the
product's labels are in deepseek_operator.labels)."""

# The simulated fleet plays the container runtime on the local cluster: it sets these on a pod
# once its simulated engine listens (kwok then marks the pod Ready) and once a terminating
# pod's in-flight requests have drained (kwok then removes it).
SIM_ENGINE_READY = "sim.deepseek.dev/engine-ready"
SIM_DRAINED = "sim.deepseek.dev/drained"

# Helm test hook pods (helm.sh/hook one of TEST_HOOKS): the fleet's hook runner runs their
# command on this machine, then sets the exit code (kwok then completes the pod: Succeeded on 0,
# else Failed) and the tail of the output (the container's termination message).
TEST_HOOKS = ("test", "test-success")
SIM_EXIT_CODE = "sim.deepseek.dev/exit-code"
SIM_OUTPUT = "sim.deepseek.dev/output"
