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


{{/* The seal-agent container that keeps the files fresh: a sidecar, or with
secrets.agent.nativeSidecar an init container with restartPolicy Always. */}}
{{- define "ml-api.agentContainer" -}}
{{- $s := .Values.secrets -}}
name: seal-agent
image: "{{ $s.agent.image.repository }}:{{ $s.agent.image.tag }}"
imagePullPolicy: {{ $s.agent.image.pullPolicy }}
command: [seal-agent, --log-format=json, run, -c, /etc/seal-agent/config.yaml]
{{- with $s.agent.config.metrics }}
{{- $port := splitList ":" .listen | last | int }}
# metrics.listen: /metrics for a scraper, /ping for the kubelet.
ports:
  - name: agent-metrics
    containerPort: {{ $port }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /ping
    port: agent-metrics
  periodSeconds: 20
{{- end }}
resources:
  {{- toYaml $s.agent.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: seal-agent-config
    mountPath: /etc/seal-agent
    readOnly: true
  - name: secrets
    mountPath: {{ $s.agent.mountPath }}
{{- end -}}
