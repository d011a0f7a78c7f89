#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment, outside the repo so that fresh clones on
# the same machine share it. Reinstalls only when pyproject.toml changed. Idempotent. The package
# is installed editable from the checkout that first made the venv; the Makefile puts its own
# checkout first on PYTHONPATH, so every clone runs its own code with the shared dependencies.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${DEEPSEEK_CACHE:-$HOME/.cache/deepseek-operator}
venv=${VENV:-$cache/venv}
py=${PYTHON:-python3}
stamp="$venv/.installed-$(sha256sum <"$here/pyproject.toml" | cut -c1-16)"

if [ -f "$stamp" ]; then
  exit 0
fi
mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtual environment $venv"
  "$py" -m venv "$venv"
fi
echo "==> installing deepseek-operator and its dev tools into $venv (first run: about a minute)"
"$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -e "$here[dev,testbed]" \
  | grep -E '^(Successfully|ERROR)' || true
"$venv/bin/python" -c "import deepseek_operator, kopf, kubernetes, pydantic" \
  || { echo "install failed" >&2; exit 1; }
rm -f "$venv"/.installed-*
touch "$stamp"
echo "==> python environment ready"
