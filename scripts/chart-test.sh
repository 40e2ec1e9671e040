#!/usr/bin/env bash
# Static checks of the Helm chart (no cluster needed; tests/integration/chart.rs does the rest on
# a real API server):
#   - `helm lint --strict` and `helm template` with the default values, every value set in
#     deploy/helm/kube-reloader/ci/ and upstream's own values.yaml (tests/data/upstream-chart);
#   - invalid values fail `helm template` with a message naming the value;
#   - deploy/manifests and deploy/kustomize match a fresh render (drift test), and the kustomize
#     base builds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$("$root/testbins/build.sh" --print-dir)"
helm="$bin/helm"
kubectl="$bin/kubectl"
chart="$root/deploy/helm/kube-reloader"
failures=0
fail() { echo "chart-test: FAIL: $*" >&2; failures=$((failures + 1)); }

value_sets=("" "$chart"/ci/*-values.yaml "$root/tests/data/upstream-chart/values.yaml")
for values in "${value_sets[@]}"; do
  name="${values:-default values}"
  name="${name#"$root/"}"
  args=()
  [ -n "$values" ] && args=(--values "$values")
  if ! lint="$("$helm" lint --strict "$chart" "${args[@]}" 2>&1)"; then
    fail "helm lint $name:"$'\n'"$lint"
    continue
  fi
  if ! rendered="$("$helm" template chart-test "$chart" --namespace chart-test "${args[@]}" 2>&1)"; then
    fail "helm template $name:"$'\n'"$rendered"
    continue
  fi
  echo "chart-test: ok: lint + template, $name ($(grep -c '^kind: ' <<<"$rendered") objects)"
done

# expect_rejected DESCRIPTION EXPECTED-MESSAGE HELM-ARGS...
expect_rejected() {
  local what="$1" expected="$2"
  shift 2
  local output
  if output="$("$helm" template chart-test "$chart" "$@" 2>&1)"; then
    fail "$what: helm template succeeded, expected a rejection"
  elif ! grep -qF -- "$expected" <<<"$output"; then
    fail "$what: rejected, but without \"$expected\":"$'\n'"$output"
  else
    echo "chart-test: ok: rejected: $what"
  fi
}
expect_rejected "ignoreSecrets and ignoreConfigMaps both true" "/reloader/ignoreConfigMaps': value must be false" \
  --set reloader.ignoreSecrets=true --set reloader.ignoreConfigMaps=true
expect_rejected "unknown reloadStrategy" "/reloader/reloadStrategy': value must be one of" \
  --set reloader.reloadStrategy=rolling
expect_rejected "namespaces with watchGlobally true (list)" "/reloader/namespaces': maxItems" \
  --set 'reloader.namespaces={team-a}'
expect_rejected "namespaces with watchGlobally true (string)" "/reloader/namespaces': maxLength" \
  --set reloader.namespaces=team-a
expect_rejected "custom_annotations key that is not a string" "/reloader/custom_annotations/configmap'" \
  --set reloader.custom_annotations.configmap=5
expect_rejected "negative probe timing" "/reloader/deployment/readinessProbe/timeoutSeconds'" \
  --set reloader.deployment.readinessProbe.timeoutSeconds=-1
expect_rejected "probe timing that is not a number" "/reloader/deployment/livenessProbe/periodSeconds'" \
  --set reloader.deployment.livenessProbe.periodSeconds=10s
expect_rejected "liveness successThreshold other than 1" "/reloader/deployment/livenessProbe/successThreshold'" \
  --set reloader.deployment.livenessProbe.successThreshold=2
expect_rejected "namespace that is not a namespace name" "/namespace'" \
  --set namespace=Team_A
expect_rejected "unknown logFormat" "/reloader/logFormat': value must be one of" \
  --set reloader.logFormat=xml
expect_rejected "negative replicas" "/reloader/deployment/replicas'" \
  --set reloader.deployment.replicas=-1
expect_rejected "webhookUrl without http(s)" "/reloader/webhookUrl'" \
  --set reloader.webhookUrl=ftp://example.com
expect_rejected "string for a boolean" "/reloader/enableHA': got string, want boolean" \
  --set-string reloader.enableHA=yes
expect_rejected "string for keyLevelTriggers" "/reloader/keyLevelTriggers': got string, want boolean" \
  --set-string reloader.keyLevelTriggers=yes
# Without the schema the templates still refuse (e.g. helm --skip-schema-validation).
expect_rejected "both ignore flags, schema skipped" "cannot both be true" \
  --skip-schema-validation --set reloader.ignoreSecrets=true --set reloader.ignoreConfigMaps=true
expect_rejected "namespaces with watchGlobally true, schema skipped" "needs reloader.watchGlobally=false" \
  --skip-schema-validation --set reloader.namespaces=team-a

if HELM="$helm" "$root/scripts/render-manifests.sh" --check; then
  echo "chart-test: ok: no drift between the chart and deploy/manifests, deploy/kustomize"
else
  fail "drift: see the diff above"
fi
if built="$("$kubectl" kustomize "$root/deploy/kustomize" 2>&1)"; then
  if [ "$(grep -c '^kind: ' <<<"$built")" -ne "$(grep -c '^kind: ' "$root/deploy/manifests/kube-reloader.yaml")" ]; then
    fail "the kustomize base and deploy/manifests/kube-reloader.yaml hold different numbers of objects"
  else
    echo "chart-test: ok: kubectl kustomize deploy/kustomize"
  fi
else
  fail "kubectl kustomize deploy/kustomize:"$'\n'"$built"
fi

if [ "$failures" -ne 0 ]; then
  echo "chart-test: $failures check(s) failed" >&2
  exit 1
fi
echo "chart-test: all chart checks passed"
