{{- define "oneoff-runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oneoff-runner.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "oneoff-runner.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "oneoff-runner.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "oneoff-runner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oneoff-runner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oneoff-runner.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "oneoff-runner.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "oneoff-runner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oneoff-runner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "oneoff-runner.runsNamespace" -}}
{{- default .Release.Namespace .Values.runs.namespace }}
{{- end }}

{{- define "oneoff-runner.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "oneoff-runner.tokensSecret" -}}
{{- default (printf "%s-tokens" (include "oneoff-runner.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "oneoff-runner.operatorsKey" -}}
{{- if .Values.auth.operatorTokensKey }}{{ .Values.auth.operatorTokensKey }}
{{- else if .Values.auth.operatorTokens }}operators
{{- end }}
{{- end }}
