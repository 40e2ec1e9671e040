#!/usr/bin/env bash
# `make demo`: a local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok
# fake node), kube-reloader against it, and a ConfigMap change rolling a Deployment, shown step
# by step. Everything it starts is stopped on exit, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "demo: $*" >&2; exit 1; }

bin="$(testbins/build.sh --print-dir)"
cargo build --locked --quiet -p kube-reloader-testenv --bin kube-reloader-cluster
cargo build --locked --quiet --bin kube-reloader

work="$(mktemp -d "${TMPDIR:-/tmp}/kube-reloader-demo.XXXXXX")"
cluster_pid="" reloader_pid=""
cleanup() {
  set +e
  [ -n "$reloader_pid" ] && kill -TERM "$reloader_pid" 2>/dev/null && wait "$reloader_pid" 2>/dev/null
  [ -n "$cluster_pid" ] && kill -TERM "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls "$@" until it succeeds, for at most $1 seconds.
wait_for() {
  local timeout="$1"; shift
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

say "1. Start a local control plane (tier C: pods turn Ready on the fake node kwok-node-0)"
KUBE_RELOADER_TESTBINS="$bin" target/debug/kube-reloader-cluster --kubeconfig-out "$work/kubeconfig" \
  > "$work/cluster.log" 2>&1 &
cluster_pid=$!
wait_for 180 grep -q 'Press Ctrl-C' "$work/cluster.log" || { cat "$work/cluster.log"; fail "the control plane did not start"; }
grep '^testenv:' "$work/cluster.log"
export KUBECONFIG="$work/kubeconfig"
kubectl() { "$bin/kubectl" "$@"; }
run kubectl get nodes

say "2. Start kube-reloader (it serves /live, /ready and /metrics)"
target/debug/kube-reloader --http-addr 127.0.0.1:0 > "$work/reloader.log" 2>&1 &
reloader_pid=$!
wait_for 30 grep -q 'addr=' "$work/reloader.log" || { cat "$work/reloader.log"; fail "kube-reloader did not start"; }
addr="$(grep -o 'addr=[0-9.:]*' "$work/reloader.log" | head -n1 | cut -d= -f2)"
ready() {
  exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" && printf 'GET /ready HTTP/1.0\r\n\r\n' >&3 && grep -q '200 OK' <&3
}
wait_for 60 ready || { cat "$work/reloader.log"; fail "kube-reloader did not become ready"; }
echo "kube-reloader is ready on http://$addr"

say "3. Apply a ConfigMap and a Deployment that opts in with configmap.reloader.stakater.com/reload"
cat > "$work/app.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-config
  namespace: demo
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
  namespace: demo
  annotations:
    configmap.reloader.stakater.com/reload: demo-config
spec:
  replicas: 2
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      containers:
        - name: app
          image: registry.invalid/demo:1
          envFrom:
            - configMapRef: {name: demo-config}
EOF
run kubectl apply -f "$work/app.yaml"
run kubectl -n demo rollout status deployment/demo --timeout=120s
ledger() { kubectl -n demo get deployment demo -o jsonpath='{.metadata.annotations.kube-reloader\.io/digests}'; }
wait_for 60 test -n "$(ledger)" || fail "kube-reloader did not record the Deployment"
echo "kube-reloader recorded the ConfigMap's digest on the Deployment (no rollout): $(ledger)"
run kubectl -n demo get replicasets

say "4. Change the ConfigMap"
run kubectl -n demo patch configmap demo-config --type merge -p '{"data":{"greeting":"hello, world"}}'
env_var() { kubectl -n demo get deployment demo -o jsonpath='{.spec.template.spec.containers[0].env}'; }
wait_for 60 test -n "$(env_var)" || fail "the Deployment was not reloaded"

say "5. kube-reloader patched the pod template with upstream's env var (sha1 of the data)"
run kubectl -n demo get deployment demo -o jsonpath='{.spec.template.spec.containers[0].env}{"\n"}'
run kubectl -n demo rollout status deployment/demo --timeout=120s

say "6. A new ReplicaSet took over; the old one is at 0"
run kubectl -n demo get replicasets -o wide
run kubectl -n demo get pods -o wide

say "7. The Event on the Deployment"
run kubectl -n demo get events --field-selector reason=Reloaded -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message

say "8. kube-reloader's log"
grep -v '^\s*$' "$work/reloader.log" | tail -n 5

say "Done: stopping kube-reloader and the control plane"
