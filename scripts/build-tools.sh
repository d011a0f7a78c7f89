#!/usr/bin/env bash
# Build (or reuse) the pinned binaries of the local GPU cluster, outside the repo:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   k8s.io/kubernetes v1.36.3
#   etcd                                                              go.etcd.io/etcd/server/v3 v3.6.16
#   kwok, kwokctl                                                     sigs.k8s.io/kwok v0.8.0
#   helm                                                              helm.sh/helm/v3 v3.22.0
#   prometheus                                                        github.com/prometheus/prometheus v0.316.0 (= v3.16.0)
#   promtool3 (promtool of the same release, validates kubernetes_sd)   the same module
#   promtool                                                          Debian bookworm 2.42.0
#   monitoring-crds/ (PodMonitor, ServiceMonitor, PrometheusRule CRDs)   github.com/prometheus-operator/prometheus-operator v0.85.0
#     (scripts/fetch-monitoring-crds.sh: the module's example/prometheus-operator-crd-full)
#   external-dns-crd/ (the DNSEndpoint CRD)                            sigs.k8s.io/external-dns v0.23.0
#     (scripts/fetch-external-dns-crd.sh: the module's config/crd/standard)
# The Go tools come from the Go module proxy through the wrapper modules in tools/go/<name>/
# (committed go.mod/go.sum pin every dependency). Each tool lands in a directory named after its
# version and a hash of its go.mod/go.sum/flags, $CACHE/bin/<name>-<version>-<hash>/, so a version
# bump rebuilds and an unchanged one is reused; $CACHE/bin/<binary> links to the current build.
# promtool is Debian's prometheus package unpacked into the cache (apt-get download + dpkg-deb -x):
# no system service, user or daemon is created or started. Debian builds its Prometheus server
# without Kubernetes service discovery, so the server the local cluster runs is built upstream.
#
# Usage: scripts/build-tools.sh [--check]   (--check: exit 1 if anything would be built)
# First build from scratch on 2 cores: about 26 minutes on a busy machine (README, "Local GPU
# cluster"); Kubernetes and Prometheus take most of it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${DEEPSEEK_CACHE:-$HOME/.cache/deepseek-operator}
bindir=$cache/bin
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

GO_VERSION=1.26.8            # toolchain fetched from the module proxy when no suitable go exists
PROMTOOL_UPSTREAM=2.42.0     # promtool of Debian bookworm's prometheus package (any revision)


log() { printf '==> %s\n' "$*"; }
die() { printf 'build-tools: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

mkdir -p "$bindir"
# Two engineers running `make tools` at once: the second waits for the first, then reuses it.
exec 9>"$bindir/.build.lock"
if ! flock -n 9; then
  log "another build-tools.sh is running; waiting for it"
  flock 9
fi

run_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else die "need root (or sudo) for: $*"
  fi
}

# --- Go toolchain -------------------------------------------------------------------------------
go_ok() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  [ "$(printf '%s\n%s\n' "1.26" "$v" | sort -V | head -1)" = "1.26" ]
}

ensure_go() {
  if command -v go >/dev/null && GOTOOLCHAIN=local go_ok go; then
    GO=$(command -v go)
    return
  fi
  local dir=$cache/go-toolchain/go$GO_VERSION
  if [ ! -x "$dir/bin/go" ]; then
    [ $check_only = 1 ] && { echo "would download Go $GO_VERSION"; exit 1; }
    log "no Go >= 1.26 on PATH: fetching Go $GO_VERSION from the Go module proxy"
    local zip=golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip
    local tmp
    tmp=$(mktemp -d)
    curl -fSL --progress-bar -o "$tmp/go.zip" "https://proxy.golang.org/$zip"
    mkdir -p "$cache/go-toolchain"
    unzip -q "$tmp/go.zip" -d "$tmp/x"
    rm -rf "$dir"
    mv "$tmp/x/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64" "$dir"
    rm -rf "$tmp"
    chmod +x "$dir/bin/"* "$dir/pkg/tool/"*/* 2>/dev/null || true
  fi
  GO=$dir/bin/go
}

# --- Go tools -----------------------------------------------------------------------------------
# mod_version NAME MODULE: the version of MODULE pinned by the wrapper module tools/go/NAME.
mod_version() {
  (cd "$here/tools/go/$1" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$GO" list -m -f '{{.Version}}' "$2")
}

built=()
# build_go NAME VERSION LDFLAGS OUT=PACKAGE...
build_go() {
  local name=$1 version=$2 ldflags=$3
  shift 3
  local mod=$here/tools/go/$name
  local key
  local tags=${BUILD_TAGS:-}
  key=$( (cat "$mod/go.mod" "$mod/go.sum"; echo "$ldflags $*${tags:+ tags=$tags}"; "$GO" env GOVERSION GOOS GOARCH) \
    | sha256sum | cut -c1-10)
  local dir=$bindir/$name-$version-$key
  local outs=() pkgs=() spec
  for spec in "$@"; do outs+=("${spec%%=*}"); pkgs+=("${spec#*=}"); done

  if [ ! -f "$dir/.complete" ]; then
    [ $check_only = 1 ] && { echo "would build $name $version"; exit 1; }
    local t0
    t0=$(now)
    log "building $name $version (${outs[*]}) into $dir"
    local tmp=$dir.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (
      cd "$mod"
      export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
      log "  $name: downloading the modules it imports"
      local total
      total=$("$GO" list -tags "$tags" -deps "${pkgs[@]}" | wc -l)
      log "  $name: compiling up to $total packages (progress every 30 s)"
      local i buildlog=$tmp/.build.log
      # One `go build` per binary (they share the build cache): etcd's package path ends in /v3,
      # so each output is named explicitly.
      (
        for i in "${!pkgs[@]}"; do
          "$GO" build -v -trimpath -tags "$tags" -ldflags "$ldflags" -o "$tmp/${outs[$i]}" "${pkgs[$i]}"
        done
      ) >"$buildlog" 2>&1 &
      local pid=$! start ticks=0
      start=$(now)
      while kill -0 $pid 2>/dev/null; do
        sleep 2
        ticks=$((ticks + 1))
        if [ $((ticks % 15)) = 0 ]; then
          printf '    %s: %s elapsed, %s packages compiled so far\n' "$name" \
            "$(fmt_secs $(($(now) - start)))" "$(grep -vc '^go: ' "$buildlog" || true)"
        fi
      done
      if ! wait $pid; then
        tail -40 "$buildlog" >&2
        die "building $name failed (log: $buildlog)"
      fi
    )
    rm -f "$tmp/.build.log"
    touch "$tmp/.complete"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    built+=("$name $version: $(fmt_secs $(($(now) - t0)))")
    log "built $name $version in $(fmt_secs $(($(now) - t0)))"
  fi
  local out
  for out in "${outs[@]}"; do
    ln -sfn "$(basename "$dir")/$out" "$bindir/$out"
  done
}

# --- promtool from Debian -----------------------------------------------------------------------
ensure_prometheus() {
  local have
  have=$(cat "$bindir/.prometheus-version" 2>/dev/null || true)
  if [ -n "$have" ] && [ -x "$bindir/prometheus-$have/promtool" ]; then
    ln -sfn "prometheus-$have/promtool" "$bindir/promtool"
    return
  fi
  [ $check_only = 1 ] && { echo "would fetch prometheus"; exit 1; }
  local t0
  t0=$(now)
  command -v apt-get >/dev/null || die "apt-get not found: Prometheus comes from Debian's package"
  local candidate
  candidate=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    log "apt package lists are empty: apt-get update"
    run_as_root apt-get update -qq
    candidate=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
  fi
  case "$candidate" in
    "$PROMTOOL_UPSTREAM"+*) ;;
    *) die "Debian offers prometheus '$candidate', expected $PROMTOOL_UPSTREAM (bookworm)";;
  esac
  log "fetching promtool from Debian's prometheus $candidate (apt-get download; unpacked, no service)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q "prometheus=$candidate" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  local deb
  deb=$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || die "apt-get download prometheus=$candidate failed"
  dpkg-deb -x "$deb" "$tmp/x"
  local dir=$bindir/prometheus-$candidate
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$tmp/x/usr/bin/promtool" "$dir/"
  rm -rf "$tmp"
  "$dir/promtool" --version >/dev/null
  echo "$candidate" >"$bindir/.prometheus-version"
  ln -sfn "prometheus-$candidate/promtool" "$bindir/promtool"
  built+=("promtool $candidate: $(fmt_secs $(($(now) - t0)))")
}

# --- main ---------------------------------------------------------------------------------------
t_start=$(now)
ensure_go
log "tools cache: $bindir (Go: $("$GO" env GOVERSION))"

# promtool and helm first: they are quick and other work (dashboards, chart) waits for them; the
# Kubernetes binaries take most of the time.
ensure_prometheus

helm_version=$(mod_version helm helm.sh/helm/v3)
# helm's Makefile derives its default Kubernetes version from its client-go (v0.37 -> 1.37).
helm_kube_minor=$(mod_version helm k8s.io/client-go | cut -d. -f2)
helm_ld="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
helm_ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ld+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_kube_minor"
done
build_go helm "$helm_version" "$helm_ld" helm=helm.sh/helm/v3/cmd/helm


K8S_VERSION=$(mod_version kubernetes k8s.io/kubernetes)
# buildDate: the release's commit time as the module proxy records it (reproducible builds).
K8S_TIME=$(cd "$here/tools/go/kubernetes" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
  "$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
k8s_minor=${K8S_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
k8s_ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$K8S_TIME"
done
build_go kubernetes "$K8S_VERSION" "$k8s_ld" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
  kubectl=k8s.io/kubernetes/cmd/kubectl

etcd_version=$(mod_version etcd go.etcd.io/etcd/server/v3)
build_go etcd "$etcd_version" "-s -w" etcd=go.etcd.io/etcd/server/v3

kwok_version=$(mod_version kwok sigs.k8s.io/kwok)
build_go kwok "$kwok_version" "-s -w" \
  kwok=sigs.k8s.io/kwok/cmd/kwok kwokctl=sigs.k8s.io/kwok/cmd/kwokctl

prom_version=$(mod_version prometheus github.com/prometheus/prometheus)
# Module v0.MMMPP.x is Prometheus v3.MM.x (v0.316.0 -> 3.16.0): what `prometheus --version` says.
prom_minor=${prom_version#v0.3}
prom_minor=${prom_minor%%.*}
prom_release=3.$((10#$prom_minor)).${prom_version##*.}
prom_ld="-s -w"
for kv in Version=$prom_release Revision=$prom_version Branch=HEAD BuildUser=deepseek-operator \
  BuildDate=$(cd "$here/tools/go/prometheus" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
    "$GO" list -m -f '{{.Time.UTC.Format "20060102-15:04:05"}}' github.com/prometheus/prometheus); do
  prom_ld+=" -X github.com/prometheus/common/version.$kv"
done
# Only the service discoveries the local cluster uses (kubernetes; file and http are always in):
# leaving out the cloud providers' SDKs halves the build.
BUILD_TAGS=remove_all_sd,enable_kubernetes_sd \
  build_go prometheus "$prom_version" "$prom_ld" prometheus=github.com/prometheus/prometheus/cmd/prometheus \
  promtool3=github.com/prometheus/prometheus/cmd/promtool

# The Prometheus Operator's CRDs for the e2e tests (a module download, no build).
GO=$GO DEEPSEEK_CACHE=$cache "$here/scripts/fetch-monitoring-crds.sh" $([ $check_only = 1 ] && echo --check)
# external-dns's DNSEndpoint CRD for the unit and e2e tests of spec.failover.dns (likewise).
GO=$GO DEEPSEEK_CACHE=$cache "$here/scripts/fetch-external-dns-crd.sh" $([ $check_only = 1 ] && echo --check)

if [ ${#built[@]} -gt 0 ]; then
  log "built: ${built[*]}"
  log "total $(fmt_secs $(($(now) - t_start)))"
else
  log "all tools cached (checked in $(fmt_secs $(($(now) - t_start))))"
fi
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm \
  prometheus promtool promtool3; do
  [ -x "$bindir/$b" ] || die "missing $bindir/$b after build"
done
echo "    $bindir: kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl"
echo "      helm prometheus promtool promtool3"
