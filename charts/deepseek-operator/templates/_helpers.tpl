{{/* Chart name, possibly overridden. */}}
{{- define "deepseek-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: <release>-deepseek-operator, or the release name when
it already contains the chart name. */}}
{{- define "deepseek-operator.fullname" -}}
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

{{- define "deepseek-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "deepseek-operator.labels" -}}
helm.sh/chart: {{ include "deepseek-operator.chart" . }}
{{ include "deepseek-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deepseek-operator
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "deepseek-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deepseek-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "deepseek-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deepseek-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "deepseek-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" in cluster mode (no watchNamespaces). */}}
{{- define "deepseek-operator.clusterMode" -}}
{{- if not .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}

{{/* Labels of the NVML exporter's pods. */}}
{{- define "deepseek-operator.nvmlSelectorLabels" -}}
app.kubernetes.io/name: {{ include "deepseek-operator.name" . }}-nvml-exporter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gpu-exporter
{{- end }}
