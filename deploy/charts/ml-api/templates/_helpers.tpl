{{- define "ml-api.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ml-api.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ml-api.labels" -}}
{{ include "ml-api.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The credentials as environment variables of the app container (Secret sources). */}}
{{- define "ml-api.secretEnv" -}}
{{- $s := .Values.secrets -}}
{{- if and (has $s.source (list "existingSecret" "sealedSecret" "externalSecret")) $s.env }}
{{- range $name, $key := $s.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end -}}
