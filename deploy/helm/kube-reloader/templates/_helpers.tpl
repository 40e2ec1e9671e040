{{/*
Names. Objects are called <release>-reloader (or fullnameOverride), as upstream's chart calls
them, so switching charts keeps object names and the Deployment's selector.
*/}}
{{- define "kube-reloader.name" -}}
{{- default "reloader" .Values.nameOverride | trunc 63 | trimSuffix "-" | lower -}}
{{- end -}}

{{- define "kube-reloader.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (default "reloader" .Values.nameOverride) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The namespace of every namespaced object: the top-level `namespace` value, as upstream's chart
reads it, or the release namespace.
*/}}
{{- define "kube-reloader.namespace" -}}
{{- .Values.namespace | default .Release.Namespace -}}
{{- end -}}

{{/*
Labels or annotations given in values, one `"key": "value"` line each, with `tpl` applied to
keys and values (so "{{ .Release.Name }}" renders, as upstream's chart allows) and every value a
string. Null values are left out. Call with (dict "map" <the map> "root" $).
*/}}
{{- define "kube-reloader.tplMap" -}}
{{- $root := .root -}}
{{- $lines := list -}}
{{- range $key, $value := .map -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $lines = append $lines (printf "%s: %s" (tpl (toString $key) $root | quote) (tpl (toString $value) $root | quote)) -}}
{{- end -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/*
"true" when an env value from values is given: not null and not "". false and 0 are values
(upstream's chart drops them too, with `empty`; here they are rendered as "false" and "0").
*/}}
{{- define "kube-reloader.present" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") -}}
true
{{- end -}}
{{- end -}}

{{- define "kube-reloader.serviceAccountName" -}}
{{- $account := .Values.reloader.serviceAccount -}}
{{- if $account.create -}}
{{- default (include "kube-reloader.fullname" .) $account.name -}}
{{- else -}}
{{- default "default" $account.name -}}
{{- end -}}
{{- end -}}

{{/* The Deployment's selector: upstream's keys (immutable once created) plus matchLabels. */}}
{{- define "kube-reloader.selectorLabels" -}}
app: {{ include "kube-reloader.fullname" . }}
release: {{ .Release.Name | quote }}
{{- with include "kube-reloader.tplMap" (dict "map" .Values.reloader.matchLabels "root" .) }}
{{ . }}
{{- end }}
{{- end -}}

{{- define "kube-reloader.labels" -}}
{{ include "kube-reloader.selectorLabels" . }}
chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
heritage: {{ .Release.Service | quote }}
app.kubernetes.io/name: {{ include "kube-reloader.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end -}}

{{/* Labels of RBAC objects. */}}
{{- define "kube-reloader.rbacLabels" -}}
{{ include "kube-reloader.labels" . }}
{{- with include "kube-reloader.tplMap" (dict "map" .Values.reloader.rbac.labels "root" .) }}
{{ . }}
{{- end }}
{{- end -}}

{{- define "kube-reloader.subjects" -}}
- kind: ServiceAccount
  name: {{ include "kube-reloader.serviceAccountName" . }}
  namespace: {{ include "kube-reloader.namespace" . }}
{{- end -}}

{{- define "kube-reloader.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.global.imageRegistry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .Values.global.imageRegistry) .Values.image.name -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* "true" when leader election is on: enableHA, or more than one replica. */}}
{{- define "kube-reloader.ha" -}}
{{- if or .Values.reloader.enableHA (gt (int .Values.reloader.deployment.replicas) 1) -}}
true
{{- end -}}
{{- end -}}

{{/*
The namespaces of the namespaced mode as a comma-separated string: the chart's namespace plus
`namespaces` (list or CSV), trimmed, without duplicates, sorted. Empty when `namespaces` is.
*/}}
{{- define "kube-reloader.namespaces" -}}
{{- $given := .Values.reloader.namespaces | default list -}}
{{- if kindIs "string" $given -}}
{{- $given = splitList "," $given -}}
{{- end -}}
{{- $names := list -}}
{{- range $given -}}
{{- $name := trim (toString .) -}}
{{- if $name -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- if $names -}}
{{- append $names (include "kube-reloader.namespace" .) | uniq | sortAlpha | join "," -}}
{{- end -}}
{{- end -}}

{{/*
The rules for watching and reloading, for the ClusterRole (global mode) or each Role
(namespaced mode). Each rule is exactly what one feature uses; docs/SECURITY.md explains them.
*/}}
{{- define "kube-reloader.workloadRules" -}}
{{- $r := .Values.reloader -}}
{{- if not $r.ignoreConfigMaps }}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch"]
{{- end }}
{{- if not $r.ignoreSecrets }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
{{- end }}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "watch", "patch"]
{{- if not $r.ignoreCronJobs }}
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- if not (and $r.ignoreJobs $r.ignoreCronJobs) }}
{{- /* create: Jobs from CronJobs and re-created Jobs; patch (the ledger) and delete: only
       when Jobs themselves are reloaded. */}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create"{{ if not $r.ignoreJobs }}, "patch", "delete"{{ end }}]
{{- end }}
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if $r.isArgoRollouts }}
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- if $r.isOpenshift }}
- apiGroups: ["apps.openshift.io"]
  resources: ["deploymentconfigs"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- if $r.enableCSIIntegration }}
- apiGroups: ["secrets-store.csi.x-k8s.io"]
  resources: ["secretproviderclasspodstatuses", "secretproviderclasses"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}

{{/*
reloader.custom_annotations: each key upstream's chart reads, with the flag it sets and the
binary's default annotation (for NOTES.txt), as JSON.
*/}}
{{- define "kube-reloader.annotationFlags" -}}
{{- $flags := dict -}}
{{- range list
    (list "configmap" "configmap-annotation" "configmap.reloader.stakater.com/reload")
    (list "secret" "secret-annotation" "secret.reloader.stakater.com/reload")
    (list "auto" "auto-annotation" "reloader.stakater.com/auto")
    (list "secret_auto" "secret-auto-annotation" "secret.reloader.stakater.com/auto")
    (list "configmap_auto" "configmap-auto-annotation" "configmap.reloader.stakater.com/auto")
    (list "search" "auto-search-annotation" "reloader.stakater.com/search")
    (list "match" "search-match-annotation" "reloader.stakater.com/match")
    (list "ignore" "ignore-annotation" "reloader.stakater.com/ignore")
    (list "pausePeriod" "pause-deployment-annotation" "deployment.reloader.stakater.com/pause-period")
    (list "pauseTime" "pause-deployment-time-annotation" "deployment.reloader.stakater.com/paused-at") -}}
{{- $_ := set $flags (index . 0) (dict "flag" (index . 1) "default" (index . 2)) -}}
{{- end -}}
{{- toJson $flags -}}
{{- end -}}

{{/* The probe keys the chart reads; any other key of livenessProbe/readinessProbe has no effect. */}}
{{- define "kube-reloader.probeKeys" -}}
timeoutSeconds failureThreshold periodSeconds successThreshold initialDelaySeconds
{{- end -}}

{{/* Probe timings: upstream's defaults, each overridable. */}}
{{- define "kube-reloader.probeTimings" -}}
timeoutSeconds: {{ .timeoutSeconds | default 5 }}
failureThreshold: {{ .failureThreshold | default 5 }}
periodSeconds: {{ .periodSeconds | default 10 }}
successThreshold: {{ .successThreshold | default 1 }}
initialDelaySeconds: {{ .initialDelaySeconds | default 10 }}
{{- end -}}

{{/* Fails rendering on combinations the controller cannot run with (values.schema.json catches them first when it is used). */}}
{{- define "kube-reloader.validate" -}}
{{- $r := .Values.reloader -}}
{{- if and $r.ignoreSecrets $r.ignoreConfigMaps -}}
{{- fail "reloader.ignoreSecrets and reloader.ignoreConfigMaps cannot both be true: nothing would be watched" -}}
{{- end -}}
{{- if and $r.watchGlobally (include "kube-reloader.namespaces" .) -}}
{{- fail "reloader.namespaces needs reloader.watchGlobally=false (the namespaced mode)" -}}
{{- end -}}
{{- end -}}
