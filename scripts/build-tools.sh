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
#   external-dns (the failover e2e tests run it)                      the same module, with Go 1.27
#   pdns/ (pdns_server, the local DNS server external-dns writes)      Debian bookworm pdns-server 4.7.3
# The Go tools come from the Go module proxy through the wrapper modules in tools/go/<name>/
# (committed go.mod/go.sum pin every dependency). Each tool lands in a directory named after its
# version and a hash of its go.mod/go.sum/flags, $CACHE/bin/<name>-<version>-<hash>/, so a version
# bump rebuilds and an unchanged one is reused; $CACHE/bin/<binary> links to the current build.
# promtool and PowerDNS are Debian packages unpacked into the cache (apt-get download + dpkg-deb -x):
# no system service, user or daemon is created or started. Debian builds its Prometheus server
# without Kubernetes service discovery, so the server the local cluster runs is built upstream.
#
# Usage: scripts/build-tools.sh [--check]   (--check: exit 1 if anything would be built)
# First build from scratch on 2 cores: about 34 minutes on a busy machine (README, "Local GPU
# cluster"); Kubernetes, Prometheus and external-dns (about 7 minutes, 3.2 GB peak memory) take most
# of it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${DEEPSEEK_CACHE:-$HOME/.cache/deepseek-operator}
bindir=$cache/bin
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

GO_VERSION=1.26.8            # toolchain fetched from the module proxy when no suitable go exists
GO127_VERSION=1.27.3         # likewise, for external-dns (its module declares go 1.27.0)
PROMTOOL_UPSTREAM=2.42.0     # promtool of Debian bookworm's prometheus package (any revision)
PDNS_UPSTREAM=4.7.3          # Debian bookworm's pdns-server and pdns-backend-sqlite3 (any revision)


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
# go_ok GO MIN: GO runs and is at least Go MIN.
go_ok() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  [ "$(printf '%s\n%s\n' "$2" "$v" | sort -V | head -1)" = "$2" ]
}

# fetch_go VERSION: the toolchain go VERSION from the Go module proxy, cached; sets FETCHED_GO.
fetch_go() {
  local version=$1
  local dir=$cache/go-toolchain/go$version
  if [ ! -x "$dir/bin/go" ]; then
    [ $check_only = 1 ] && { echo "would download Go $version"; exit 1; }
    log "fetching Go $version from the Go module proxy"
    local zip=golang.org/toolchain/@v/v0.0.1-go$version.linux-amd64.zip
    local tmp
    tmp=$(mktemp -d)
    curl -fSL --progress-bar -o "$tmp/go.zip" "https://proxy.golang.org/$zip"
    mkdir -p "$cache/go-toolchain"
    unzip -q "$tmp/go.zip" -d "$tmp/x"
    rm -rf "$dir"
    mv "$tmp/x/golang.org/toolchain@v0.0.1-go$version.linux-amd64" "$dir"
    rm -rf "$tmp"
    chmod +x "$dir/bin/"* "$dir/pkg/tool/"*/* 2>/dev/null || true
  fi
  FETCHED_GO=$dir/bin/go
}

ensure_go() {
  if command -v go >/dev/null && GOTOOLCHAIN=local go_ok go 1.26; then
    GO=$(command -v go)
    return
  fi
  command -v go >/dev/null || log "no Go >= 1.26 on PATH"
  fetch_go $GO_VERSION
  GO=$FETCHED_GO
}

# GO127: a Go >= 1.27 for external-dns (the go on PATH when it is one; else fetched and cached).
ensure_go127() {
  if GOTOOLCHAIN=local go_ok "$GO" 1.27; then
    GO127=$GO
    return
  fi
  fetch_go $GO127_VERSION
  GO127=$FETCHED_GO
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

# --- PowerDNS from Debian -----------------------------------------------------------------------
# The DNS server of the failover e2e tests: external-dns writes it (through the test bed's webhook
# provider), the tests' clients resolve through it. Debian's pdns-server and pdns-backend-sqlite3
# unpacked into $CACHE/bin/pdns-<version>/ with the libraries they need that the system lacks
# (LuaJIT, for LUA records); $CACHE/bin/pdns-server runs it with those. No service, user or root.
# apt_missing_deps PKG...: the direct dependencies of PKG (the last of each alternative group) that
# are not installed.
apt_missing_deps() {
  local dep
  apt-cache depends "$@" 2>/dev/null | awk '/^  Depends:/ {print $2}' | sort -u | while read -r dep; do
    case "$dep" in "<"*) continue;; esac
    dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'install ok installed' || echo "$dep"
  done
}

ensure_pdns() {
  local have
  have=$(cat "$bindir/.pdns-version" 2>/dev/null || true)
  if [ -n "$have" ] && [ -f "$bindir/pdns-$have/.complete" ]; then
    ln -sfn "pdns-$have/pdns-server" "$bindir/pdns-server"
    return
  fi
  [ $check_only = 1 ] && { echo "would fetch pdns-server"; exit 1; }
  local t0
  t0=$(now)
  command -v apt-get >/dev/null || die "apt-get not found: PowerDNS comes from Debian's package"
  local candidate
  candidate=$(apt-cache policy pdns-server 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    log "apt package lists are empty: apt-get update"
    run_as_root apt-get update -qq
    candidate=$(apt-cache policy pdns-server | awk '/Candidate:/ {print $2}')
  fi
  case "$candidate" in
    "$PDNS_UPSTREAM"-*) ;;
    *) die "Debian offers pdns-server '$candidate', expected $PDNS_UPSTREAM (bookworm)";;
  esac
  local pkgs=("pdns-server=$candidate" "pdns-backend-sqlite3=$candidate") deps more
  # Two levels of missing dependencies (LuaJIT and its common files on a bookworm image).
  deps=$(apt_missing_deps pdns-server pdns-backend-sqlite3 | grep -v '^pdns-server$' || true)
  more=$( [ -z "$deps" ] || apt_missing_deps $deps)
  deps=$(printf '%s\n%s\n' "$deps" "$more" | grep -v '^$' | grep -v '^pdns-server$' | sort -u || true)
  log "fetching PowerDNS $candidate from Debian (apt-get download pdns-server pdns-backend-sqlite3 $(echo $deps); unpacked, no service)"
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2086
  (cd "$tmp" && apt-get download -q "${pkgs[@]}" $deps 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  local deb n=0
  for deb in "$tmp"/*.deb; do
    [ -f "$deb" ] || continue
    dpkg-deb -x "$deb" "$tmp/x"
    n=$((n + 1))
  done
  [ -x "$tmp/x/usr/sbin/pdns_server" ] && [ -f "$tmp/x/usr/lib/x86_64-linux-gnu/pdns/libgsqlite3backend.so" ] \
    || die "apt-get download pdns-server=$candidate pdns-backend-sqlite3=$candidate failed ($n packages)"
  local dir=$bindir/pdns-$candidate
  rm -rf "$dir"
  mkdir -p "$dir/sbin"
  cp "$tmp/x/usr/sbin/pdns_server" "$dir/sbin/"
  cp -a "$tmp/x/usr/lib/x86_64-linux-gnu" "$dir/lib"
  cp "$tmp/x/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql" "$dir/"
  rm -rf "$tmp"
  cat >"$dir/pdns-server" <<'WRAP'
#!/bin/sh
# pdns_server from Debian's package, with the libraries and backend modules unpacked beside it.
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH=$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec "$here/sbin/pdns_server" \
  --module-dir="$here/lib/pdns" "$@"
WRAP
  chmod +x "$dir/pdns-server"
  if LD_LIBRARY_PATH=$dir/lib ldd "$dir/sbin/pdns_server" "$dir/lib/pdns/libgsqlite3backend.so" | grep 'not found'; then
    die "pdns_server $candidate lacks libraries (above)"
  fi
  touch "$dir/.complete"
  echo "$candidate" >"$bindir/.pdns-version"
  ln -sfn "pdns-$candidate/pdns-server" "$bindir/pdns-server"
  built+=("pdns-server $candidate: $(fmt_secs $(($(now) - t0)))")
}

# --- main ---------------------------------------------------------------------------------------
t_start=$(now)
ensure_go
log "tools cache: $bindir (Go: $("$GO" env GOVERSION))"

# promtool and helm first: they are quick and other work (dashboards, chart) waits for them; the
# Kubernetes binaries take most of the time.
ensure_prometheus
ensure_pdns

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

# external-dns for the failover e2e tests (they run it against the local DNS server, PowerDNS):
# about 7 minutes and 3.2 GB of memory on 2 cores, most of it the cloud providers' SDKs, which
# upstream has no build tags to leave out.
ensure_go127
xdns_version=$(GO=$GO127 mod_version external-dns sigs.k8s.io/external-dns)
GO=$GO127 build_go external-dns "$xdns_version" \
  "-s -w -X sigs.k8s.io/external-dns/pkg/apis/externaldns.Version=$xdns_version" \
  external-dns=sigs.k8s.io/external-dns

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
  prometheus promtool promtool3 external-dns pdns-server; do
  [ -x "$bindir/$b" ] || die "missing $bindir/$b after build"
done
echo "    $bindir: kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl"
echo "      helm prometheus promtool promtool3 external-dns pdns-server"
