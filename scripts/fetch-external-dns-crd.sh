#!/usr/bin/env bash
# Fetch (or reuse) external-dns's own DNSEndpoint CRD from its Go module through the Go module
# proxy, into
#   $CACHE/external-dns-crd/external-dns-<version>/dnsendpoints.externaldns.k8s.io.yaml
# and link $CACHE/external-dns-crd/current to it. The unit tests check the operator's DNSEndpoint
# against its schema and the e2e tests install it in the local cluster, so the DNSEndpoint the
# operator writes for spec.failover.dns is validated by the real schema.
# `go mod download` checks the module zip against the checksum database (through the proxy), and
# the zip's hash is pinned and recomputed here as well, so a changed module is refused. Nothing is
# built.
#
# Usage: scripts/fetch-external-dns-crd.sh [--check]   (--check: exit 1 if it would download)
# Called by scripts/build-tools.sh; needs `go` (build-tools.sh passes its own as GO).
set -euo pipefail

VERSION=v0.23.0
SUM=h1:35KyAZtLN8o5nIE0aPKfyhILbf5HHkKPJby/4FowPJM=
MODULE=sigs.k8s.io/external-dns
FILE=config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml

cache=${DEEPSEEK_CACHE:-$HOME/.cache/deepseek-operator}
GO=${GO:-go}
dir=$cache/external-dns-crd/external-dns-$VERSION
log() { printf '==> %s\n' "$*"; }
die() { printf 'fetch-external-dns-crd: %s\n' "$*" >&2; exit 1; }

if [ -f "$dir/.complete" ]; then
  ln -sfn "$(basename "$dir")" "$cache/external-dns-crd/current"
  exit 0
fi
[ "${1:-}" = "--check" ] && { echo "would fetch the external-dns DNSEndpoint CRD $VERSION"; exit 1; }

log "fetching the external-dns DNSEndpoint CRD ($MODULE@$VERSION, $FILE) from the Go module proxy"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module (an empty directory), so no go.mod of the repository is read or changed.
# The module declares `go 1.27.0`, newer than the local toolchain, so the go command downloads and
# verifies the zip but refuses to extract it ("requires go >= 1.27.0"): the file is taken from the
# verified zip itself, whose h1 hash (the go.sum form: sha256 of the sorted file list with each
# file's sha256) is computed here again and must equal the pinned one.
info=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" mod download -json "$MODULE@$VERSION" || true)
sum=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p')
zip=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Zip": "\(.*\)",*$/\1/p')
[ -n "$zip" ] && [ -f "$zip" ] || die "go mod download $MODULE@$VERSION failed: $info"
[ "$sum" = "$SUM" ] || die "$MODULE@$VERSION has hash '$sum', expected $SUM"
h1=$(unzip -Z1 "$zip" | LC_ALL=C sort | while IFS= read -r f; do
  printf '%s  %s\n' "$(unzip -p "$zip" "$f" | sha256sum | cut -d' ' -f1)" "$f"
done | sha256sum | cut -d' ' -f1 | xxd -r -p | base64)
[ "h1:$h1" = "$SUM" ] || die "the zip $zip hashes to h1:$h1, expected $SUM"
mkdir -p "$tmp/out"
unzip -p "$zip" "$MODULE@$VERSION/$FILE" >"$tmp/out/$(basename "$FILE")" \
  || die "$FILE not in $MODULE@$VERSION ($zip)"
grep -q '^  name: dnsendpoints.externaldns.k8s.io$' "$tmp/out/$(basename "$FILE")" \
  || die "$FILE in $MODULE@$VERSION is not the DNSEndpoint CRD"
echo "$VERSION" >"$tmp/out/VERSION"
touch "$tmp/out/.complete"
mkdir -p "$cache/external-dns-crd"
rm -rf "$dir"
mv "$tmp/out" "$dir"
chmod -R u+w "$dir"
ln -sfn "$(basename "$dir")" "$cache/external-dns-crd/current"
log "external-dns DNSEndpoint CRD $VERSION in $dir"
