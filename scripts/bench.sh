#!/usr/bin/env bash
# `make bench`: measures kube-reloader's memory and API load on a real control plane and writes
# docs/BENCHMARKS.md (the command, the machine and the numbers). Arguments go to the bench, e.g.
#   scripts/bench.sh --configmaps 500 --secrets 500 --deployments 200 --reloads 50
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bins="$(testbins/build.sh --print-dir)"
cargo build --locked --release --bin kube-reloader
cargo build --locked --release -p kube-reloader-testenv --bin kube-reloader-bench
table="$(KUBE_RELOADER_TESTBINS="$bins" target/release/kube-reloader-bench --binary target/release/kube-reloader "$@")"
cpus="$(nproc)"
mem="$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
{
  echo "# Benchmarks"
  echo
  echo "Measured by \`make bench\` (scripts/bench.sh → testenv/src/bin/kube-reloader-bench.rs) on"
  echo "$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), ${cpus} cores, ${mem}, against a real"
  echo "kube-apiserver $(sed -n "s/^\t*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p" testbins/k8s/go.mod | head -n1) + etcd on the same machine (tier A: no"
  echo "controller-manager, so no pods roll; what is measured is kube-reloader's own cost)."
  echo "Release build of kube-reloader; resident memory read from /proc; API requests counted from"
  echo "the API server's audit log for kube-reloader's service account only."
  echo
  echo "Command: \`scripts/bench.sh${*:+ $*}\` (defaults: --configmaps 2000 --secrets 2000 --deployments 1000 --reloads 200)"
  echo
  echo "$table"
  echo
  echo "Reading it: memory follows the number of objects, not their size (each ConfigMap and"
  echo "Secret is kept as a digest). A reload costs one PATCH and one Event (the creates), no LIST"
  echo "or GET. A start costs the startup checks (SelfSubjectAccessReview creates, /version and"
  echo "discovery gets), one paginated LIST and one WATCH per kind, and no write when nothing"
  echo "changed. The Helm chart's requests and limits (deploy/helm/kube-reloader/values.yaml) are"
  echo "sized from these."
} > docs/BENCHMARKS.md
cat docs/BENCHMARKS.md
