#!/usr/bin/env bash
# Builds the control-plane binaries that tests, benchmarks and `make demo` run against
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm) from the Go wrapper
# modules next to this script, into a cache directory outside the repository.
#
# The cache is keyed by the go.mod/go.sum files, `go version` and RECIPE (bump it when the
# build flags below change), so a change to any pin builds into a fresh directory and an
# unchanged key is a no-op.
# A lock (flock) serialises concurrent runs. Each binary is moved into place only
# after it built completely, so an interrupted run resumes where it stopped.
#
# Usage: testbins/build.sh [--print-dir]
#   --print-dir   print only the bin directory on stdout (for scripts), logs go to stderr
# Env:   KUBE_RELOADER_TESTBINS_CACHE  cache root (default: $HOME/.cache/kube-reloader/testbins)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
print_dir=false
case "${1:-}" in
  --print-dir) print_dir=true ;;
  "") ;;
  *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac

log() { echo "testbins: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "error: 'go' is not on PATH. Install Go 1.26 or newer (https://go.dev/doc/install) and re-run."
  exit 1
fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
go_version="$(go version)"
case "$go_version" in
  *go1.2[6-9]*|*go1.[3-9][0-9]*) ;;
  *) log "error: $go_version is too old; the pinned modules need Go 1.26+."; exit 1 ;;
esac

# Bump when the build flags or the set of binaries change.
RECIPE=1
key="$(
  {
    echo "$go_version recipe=$RECIPE"
    for m in etcd k8s kwok helm; do cat "$here/$m/go.mod" "$here/$m/go.sum"; done
  } | sha256sum | cut -c1-16
)"
cache_root="${KUBE_RELOADER_TESTBINS_CACHE:-$HOME/.cache/kube-reloader/testbins}"
dir="$cache_root/$key"
bin="$dir/bin"
mkdir -p "$bin"

exec 9>"$dir/.lock"
if ! flock -n 9; then
  log "another build holds $dir/.lock; waiting for it"
  flock 9
fi

# Module version of a dependency as pinned in a wrapper module's go.mod.
pinned() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }

# build MODULE_DIR OUTPUT_NAME PACKAGE [LDFLAGS]
build() {
  local mod="$1" name="$2" pkg="$3" ldflags="${4:-}"
  if [ -x "$bin/$name" ]; then
    return 0
  fi
  log "building $name from $pkg (module testbins/$mod) -> $bin/$name"
  local start tmp
  start=$(date +%s)
  tmp="$(mktemp -d "$dir/.build-$name.XXXXXX")"
  (cd "$here/$mod" && go build -ldflags "-s -w $ldflags" -o "$tmp/$name" "$pkg")
  mv -f "$tmp/$name" "$bin/$name"
  rmdir "$tmp"
  log "built $name in $(( $(date +%s) - start ))s"
}

if [ -f "$dir/.complete" ]; then
  log "cached: $bin (key $key) is up to date, nothing to build"
else
  log "cache key $key ($go_version); binaries go to $bin"
  rm -rf "$dir"/.build-*

  etcd_version="$(pinned etcd go.etcd.io/etcd/server/v3)"
  build etcd etcd go.etcd.io/etcd/server/v3

  k8s_version="$(pinned k8s k8s.io/kubernetes)"
  k8s_minor="${k8s_version#v1.}"; k8s_minor="${k8s_minor%%.*}"
  k8s_ldflags=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
    k8s_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    build k8s "$c" "k8s.io/kubernetes/cmd/$c" "$k8s_ldflags"
  done

  build kwok kwok sigs.k8s.io/kwok/cmd/kwok

  helm_version="$(pinned helm helm.sh/helm/v3)"
  build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$helm_version"

  {
    echo "key=$key"
    echo "go=$go_version"
    echo "etcd=$etcd_version"
    echo "kubernetes=$k8s_version"
    echo "kwok=$(pinned kwok sigs.k8s.io/kwok)"
    echo "helm=$helm_version"
  } > "$dir/versions.txt"
  touch "$dir/.complete"
  log "done: $bin"
fi

# A stable pointer for humans and for tools that do not run this script.
ln -sfn "$key" "$cache_root/current"

if $print_dir; then
  echo "$bin"
else
  log "versions: $(tr '\n' ' ' < "$dir/versions.txt")"
  echo "$bin"
fi
