{{/* Names and labels shared by every object of the chart. */}}

{{- define "classifyd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "classifyd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "classifyd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "classifyd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "classifyd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "classifyd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: inference
{{- end }}

{{- define "classifyd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "classifyd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The shutdown timeout in whole seconds, rounded up (the server takes a float). */}}
{{- define "classifyd.shutdownSeconds" -}}
{{- ceil (float64 .Values.shutdownTimeout) | int }}
{{- end }}

{{/*
Grace period: Kubernetes starts the clock before preStop runs, so it must cover the pause, then
the drain (up to shutdownTimeout for admitted work), then uvicorn's own graceful shutdown, which
classifyd gives shutdownTimeout again for requests still open when the drain times out, then the
process exit: preStop + 2 × shutdownTimeout + 10. A shorter grace period has the kubelet
SIGKILL a replica that is still answering.
*/}}
{{- define "classifyd.terminationGracePeriodSeconds" -}}
{{- $derived := add (int .Values.preStopSleepSeconds) (mul 2 (include "classifyd.shutdownSeconds" . | int)) 10 }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- if lt (int .Values.terminationGracePeriodSeconds) $derived }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least preStopSleepSeconds + 2 × shutdownTimeout + 10 = %d" .Values.terminationGracePeriodSeconds $derived) }}
{{- end }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- $derived }}
{{- end }}
{{- end }}

{{/*
torch threads: numThreads, else the CPU limit, else the CPU request (whole cores, at least 1),
else empty (the server's default).
*/}}
{{- define "classifyd.numThreads" -}}
{{- if .Values.numThreads }}
{{- int .Values.numThreads }}
{{- else }}
{{- $cpu := toString (dig "limits" "cpu" (dig "requests" "cpu" "" .Values.resources) .Values.resources) }}
{{- if hasSuffix "m" $cpu }}
{{- max 1 (div (trimSuffix "m" $cpu | atoi) 1000) }}
{{- else if $cpu }}
{{- max 1 (floor (float64 $cpu) | int) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The PromQL selector of this release's series, as the ServiceMonitor labels them. */}}
{{- define "classifyd.promSelector" -}}
namespace="{{ .Release.Namespace }}",service="{{ include "classifyd.fullname" . }}"
{{- end }}

{{- define "classifyd.kedaQuery" -}}
{{- if .Values.autoscaling.keda.query }}
{{- .Values.autoscaling.keda.query }}
{{- else }}
{{- printf "sum(avg_over_time(classifyd_queue_waiting_sequences{%s}[1m]))" (include "classifyd.promSelector" .) }}
{{- end }}
{{- end }}

{{- define "classifyd.claimName" -}}
{{- if .Values.model.pvc.existingClaim }}
{{- .Values.model.pvc.existingClaim }}
{{- else }}
{{- printf "%s-model" (include "classifyd.fullname" .) }}
{{- end }}
{{- end }}

{{/* Scale up at once, scale down slowly and one pod at a time (each drains first). */}}
{{- define "classifyd.hpaBehavior" -}}
scaleUp:
  stabilizationWindowSeconds: {{ .Values.autoscaling.scaleUpStabilizationSeconds }}
  policies:
    - type: Percent
      value: 100
      periodSeconds: 30
scaleDown:
  stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
  policies:
    - type: Pods
      value: 1
      periodSeconds: 60
{{- end }}
