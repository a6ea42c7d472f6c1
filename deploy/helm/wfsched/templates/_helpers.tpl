{{- define "wfsched.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "wfsched.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The backends' URLs: the static list, then the vLLM pods: with DNS
discovery, the SRV name of their headless Service (the router resolves it
to the pods' names); otherwise each pod by name. */}}
{{- define "wfsched.backends" -}}
{{- $urls := list -}}
{{- range .Values.backends.static -}}{{- $urls = append $urls . -}}{{- end -}}
{{- if .Values.vllm.enabled -}}
{{- $name := printf "%s-vllm" (include "wfsched.fullname" .) -}}
{{- if eq .Values.backends.discovery "dns" -}}
{{- $urls = append $urls (printf "http://_http._tcp.%s.%s.svc" $name $.Release.Namespace) -}}
{{- else -}}
{{- range $i := until (int .Values.vllm.replicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.vllm.port)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $urls -}}{{- fail "no backends: set backends.static, or vllm.enabled" -}}{{- end -}}
{{- if not (has .Values.backends.discovery (list "dns" "static")) -}}{{- fail "backends.discovery: want dns or static" -}}{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* The router's --state: the external Redis, the release's, or none. */}}
{{- define "wfsched.state" -}}
{{- if .Values.redis.url -}}{{ .Values.redis.url }}
{{- else if .Values.redis.enabled -}}redis://{{ include "wfsched.fullname" . }}-redis:6379/0
{{- end -}}
{{- end -}}
