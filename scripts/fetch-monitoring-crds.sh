#!/usr/bin/env bash
# Fetch (or reuse) the Prometheus Operator's own CRDs (PodMonitor, ServiceMonitor,
# PrometheusRule) from its Go module through the Go module proxy, into
#   $CACHE/monitoring-crds/prometheus-operator-<version>/monitoring.coreos.com_<plural>.yaml
# and link $CACHE/monitoring-crds/current to it. The e2e tests install them in the local cluster
# so the operator's and the chart's monitoring objects are validated by the real schemas.
# `go mod download` checks the module zip against the checksum database (through the proxy), and
# the zip's hash is pinned here as well, so a changed module is refused.
#
# Usage: scripts/fetch-monitoring-crds.sh [--check]   (--check: exit 1 if it would download)
# Called by scripts/build-tools.sh; needs `go` (build-tools.sh passes its own as GO).
set -euo pipefail

VERSION=v0.85.0
SUM=h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=
MODULE=github.com/prometheus-operator/prometheus-operator
KINDS=(podmonitors servicemonitors prometheusrules)

cache=${DEEPSEEK_CACHE:-$HOME/.cache/deepseek-operator}
GO=${GO:-go}
dir=$cache/monitoring-crds/prometheus-operator-$VERSION
log() { printf '==> %s\n' "$*"; }
die() { printf 'fetch-monitoring-crds: %s\n' "$*" >&2; exit 1; }

if [ -f "$dir/.complete" ]; then
  ln -sfn "$(basename "$dir")" "$cache/monitoring-crds/current"
  exit 0
fi
[ "${1:-}" = "--check" ] && { echo "would fetch the Prometheus Operator CRDs $VERSION"; exit 1; }

log "fetching the Prometheus Operator CRDs ($MODULE@$VERSION, ${KINDS[*]}) from the Go module proxy"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module (an empty directory), so no go.mod of the repository is read or changed.
info=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" mod download -json "$MODULE@$VERSION") \
  || die "go mod download $MODULE@$VERSION failed: $info"
sum=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p')
[ "$sum" = "$SUM" ] || die "$MODULE@$VERSION has hash '$sum', expected $SUM"
src=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')/example/prometheus-operator-crd-full
mkdir -p "$tmp/out"
for k in "${KINDS[@]}"; do
  f=monitoring.coreos.com_$k.yaml
  [ -f "$src/$f" ] || die "$f not in $MODULE@$VERSION ($src)"
  cp "$src/$f" "$tmp/out/$f"
done
echo "$VERSION" >"$tmp/out/VERSION"
touch "$tmp/out/.complete"
mkdir -p "$cache/monitoring-crds"
rm -rf "$dir"
mv "$tmp/out" "$dir"
chmod -R u+w "$dir"
ln -sfn "$(basename "$dir")" "$cache/monitoring-crds/current"
log "Prometheus Operator CRDs $VERSION in $dir"
