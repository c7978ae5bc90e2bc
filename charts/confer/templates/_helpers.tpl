{{- define "confer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "confer.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "confer.labels" -}}
app.kubernetes.io/name: confer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "confer.selector" -}}
app.kubernetes.io/name: confer
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Environment every role reads from the shared secret. */}}
{{- define "confer.secretEnv" -}}
- name: CONFER_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.existingSecret }}, key: database-url}}
- name: CONFER_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.existingSecret }}, key: redis-url}}
{{- end -}}

{{- define "confer.grpcTlsEnv" -}}
{{- if .Values.grpcTls.enabled }}
- name: CONFER_GRPC_TLS_CERT
  value: /etc/confer/grpc-tls/tls.crt
- name: CONFER_GRPC_TLS_KEY
  value: /etc/confer/grpc-tls/tls.key
- name: CONFER_GRPC_TLS_CA
  value: /etc/confer/grpc-tls/ca.crt
- name: CONFER_GRPC_TLS_NAME
  value: {{ .Values.grpcTls.serverName | quote }}
{{- end }}
{{- end -}}

{{- define "confer.grpcTlsMount" -}}
{{- if .Values.grpcTls.enabled }}
- {name: grpc-tls, mountPath: /etc/confer/grpc-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "confer.grpcTlsVolume" -}}
{{- if .Values.grpcTls.enabled }}
- name: grpc-tls
  secret: {secretName: {{ .Values.grpcTls.secretName }}}
{{- end }}
{{- end -}}

{{- define "confer.consulEnv" -}}
- name: CONFER_CONSUL_ADDR
  value: {{ .Values.consul.address | quote }}
{{- if .Values.consul.tokenSecret }}
- name: CONSUL_HTTP_TOKEN
  valueFrom: {secretKeyRef: {name: {{ .Values.consul.tokenSecret }}, key: token}}
{{- end }}
{{- end -}}

{{- define "confer.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "confer.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{/* The recordings volume's claim, when recordings are enabled. */}}
{{- define "confer.recordingsClaim" -}}
{{- with .Values.recordings.persistence -}}
{{- .existingClaim | default (printf "%s-recordings" (include "confer.fullname" $)) -}}
{{- end -}}
{{- end }}
