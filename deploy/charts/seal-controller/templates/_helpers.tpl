{{/* The release's full name: the chart name unless the release already carries it. */}}
{{- define "seal-controller.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "seal-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "seal-controller.labels" -}}
{{ include "seal-controller.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: seal
{{- end -}}

{{- define "seal-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "seal-controller.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "seal-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The syncer's pods: a name of their own, so the unsealer's selector (and its Service) never
matches them. */}}
{{- define "seal-controller.syncerSelectorLabels" -}}
app.kubernetes.io/name: seal-syncer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "seal-controller.syncerName" -}}
{{- printf "%s-syncer" (include "seal-controller.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "seal-controller.syncerServiceAccountName" -}}
{{- if .Values.syncer.serviceAccount.create -}}
{{- default (include "seal-controller.syncerName" .) .Values.syncer.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.syncer.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Egress rules to the API server (its ports, any address: NetworkPolicies see the endpoint
address, not the Service's) and to DNS. */}}
{{- define "seal-controller.apiServerEgress" -}}
- ports:
    {{- range .Values.networkPolicy.apiServerPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}
