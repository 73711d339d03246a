{{- define "ml-batch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ml-batch.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ml-batch.labels" -}}
{{ include "ml-batch.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The credentials as environment variables of the app container (Secret sources). */}}
{{- define "ml-batch.secretEnv" -}}
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

{{/*
The pod spec of the worker and of the CronJob. Arguments: root (the chart context), args (the
container's arguments), job (true for the CronJob: the agent only fetches once, in an init
container, since a sidecar that never exits would keep the Job from completing).
*/}}
{{- define "ml-batch.podSpec" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $s := $v.secrets }}
{{- $agent := eq $s.source "agent" }}
{{- $fromSecret := has $s.source (list "existingSecret" "sealedSecret" "externalSecret") }}
{{- $fullname := include "ml-batch.fullname" $root }}
serviceAccountName: {{ if $v.serviceAccount.create }}{{ $fullname }}{{ else }}default{{ end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .job }}
restartPolicy: Never
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- if $agent }}
{{- if or (not .job) $s.agent.nativeSidecar }}
# The agent signals the worker on change (onChange.processName), so it must see its processes.
shareProcessNamespace: true
{{- end }}
initContainers:
  # Fetch once before the worker starts, so its files exist at its first read.
  - name: seal-agent-init
    image: "{{ $s.agent.image.repository }}:{{ $s.agent.image.tag }}"
    imagePullPolicy: {{ $s.agent.image.pullPolicy }}
    command: [seal-agent, --log-format=json, init, -c, /etc/seal-agent/config.yaml]
    resources:
      {{- toYaml $s.agent.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: seal-agent-config
        mountPath: /etc/seal-agent
        readOnly: true
      - name: secrets
        mountPath: {{ $s.agent.mountPath }}
  {{- if $s.agent.nativeSidecar }}
  # A native sidecar (Kubernetes 1.29+): started after the first fetch and before the worker,
  # kept running beside it, stopped after it (so a Job completes).
  - {{ include "ml-batch.agentContainer" $root | indent 4 | trim }}
    restartPolicy: Always
  {{- end }}
{{- end }}
containers:
  - name: ml-batch
    image: "{{ $v.image.repository }}:{{ default $root.Chart.AppVersion $v.image.tag }}"
    imagePullPolicy: {{ $v.image.pullPolicy }}
    {{- with .args }}
    args:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- $secretEnv := include "ml-batch.secretEnv" $root }}
    {{- if or $v.env $secretEnv }}
    env:
      {{- range $name, $value := $v.env }}
      - name: {{ $name }}
        value: {{ $value | quote }}
      {{- end }}
      {{- $secretEnv | indent 6 }}
    {{- end }}
    {{- if and $fromSecret $s.envFrom }}
    envFrom:
      - secretRef:
          name: {{ $s.secretName }}
    {{- end }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if $agent }}
      - name: secrets
        mountPath: {{ $s.agent.mountPath }}
        readOnly: true
      {{- end }}
  {{- if and $agent (not .job) (not $s.agent.nativeSidecar) }}
  # Keeps the files fresh and signals the worker when they change.
  - {{ include "ml-batch.agentContainer" $root | indent 4 | trim }}
  {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if $agent }}
  - name: secrets
    emptyDir:
      medium: Memory
      sizeLimit: 1Mi
  - name: seal-agent-config
    configMap:
      name: {{ $fullname }}-seal-agent
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "ml-batch.podAnnotations" -}}
{{- if eq .Values.secrets.source "agent" }}
checksum/seal-agent-config: {{ toYaml .Values.secrets.agent.config | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}


{{/* The seal-agent container that keeps the files fresh: a sidecar, or with
secrets.agent.nativeSidecar an init container with restartPolicy Always. */}}
{{- define "ml-batch.agentContainer" -}}
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
