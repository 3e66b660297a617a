{{/* The release's base name. */}}
{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.serviceName" -}}
{{- default (include "switchyard.fullname" .) .Values.service.name -}}
{{- end -}}

{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "switchyard.labels" -}}
{{ include "switchyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "switchyard.secretsDir" -}}/var/run/secrets/switchyard{{- end -}}

{{/* The router's own settings, a SwitchyardConfig document. Changing it restarts the pods. */}}
{{- define "switchyard.settings" -}}
apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata:
  name: {{ include "switchyard.fullname" . }}
spec:
  ingress:
    addr: ":8080"
    maxBodyBytes: {{ int64 .Values.config.maxBodyBytes }}
    queueSize: {{ int .Values.config.queueSize }}
    maxInFlight: {{ int .Values.config.maxInFlight }}
    maxInFlightWait: {{ .Values.config.maxInFlightWait | quote }}
    maxTTL: {{ int .Values.config.maxTTL }}
    maxUnfinishedBytes: {{ int64 .Values.config.memory.maxUnfinishedBytes }}
    maxBodyBytesInFlight: {{ int64 .Values.config.memory.maxBodyBytesInFlight }}
    {{- with .Values.tls.ingress }}
    {{- if .existingSecret }}
    tls:
      certFile: {{ printf "%s/%s/tls.crt" (include "switchyard.secretsDir" $) .existingSecret }}
      keyFile: {{ printf "%s/%s/tls.key" (include "switchyard.secretsDir" $) .existingSecret }}
      {{- if .clientCASecret }}
      clientCAFile: {{ printf "%s/%s/ca.crt" (include "switchyard.secretsDir" $) .clientCASecret }}
      clientAuth: {{ .clientAuth }}
      {{- end }}
    {{- end }}
    {{- end }}
  subscribers:
    maxReplyBytesInFlight: {{ int64 .Values.config.memory.maxReplyBytesInFlight }}
  admin:
    addr: ":9090"
    {{- with .Values.tls.admin.existingSecret }}
    tls:
      certFile: {{ printf "%s/%s/tls.crt" (include "switchyard.secretsDir" $) . }}
      keyFile: {{ printf "%s/%s/tls.key" (include "switchyard.secretsDir" $) . }}
    {{- end }}
  delivery:
    {{- toYaml .Values.config.delivery | nindent 4 }}
  triggers:
    concurrency: {{ int .Values.config.triggerConcurrency }}
  clusterDomain: {{ .Values.config.clusterDomain }}
  shutdownGracePeriod: {{ printf "%ds" (int .Values.shutdownGracePeriodSeconds) }}
  {{- with .Values.kafka }}
  {{- if .bootstrapServers }}
  kafka:
    bootstrapServers:
      {{- toYaml .bootstrapServers | nindent 6 }}
    partitions: {{ int .partitions }}
    replicationFactor: {{ int .replicationFactor }}
    {{- if .tls.enabled }}
    tls:
      {{- if .tls.existingSecret }}
      ca: {secretKeyRef: {name: {{ .tls.existingSecret }}, key: ca.crt}}
      {{- if .tls.clientCertificate }}
      cert: {secretKeyRef: {name: {{ .tls.existingSecret }}, key: tls.crt}}
      key: {secretKeyRef: {name: {{ .tls.existingSecret }}, key: tls.key}}
      {{- end }}
      {{- else }}
      {}
      {{- end }}
    {{- end }}
    {{- if .sasl.mechanism }}
    sasl:
      mechanism: {{ .sasl.mechanism }}
      user: {secretKeyRef: {name: {{ .sasl.existingSecret }}, key: {{ .sasl.userKey }}}}
      password: {secretKeyRef: {name: {{ .sasl.existingSecret }}, key: {{ .sasl.passwordKey }}}}
    {{- end }}
  {{- end }}
  {{- end }}
  log:
    format: json
    level: {{ .Values.logLevel }}
  results:
    memory:
      maxEventBytes: {{ int64 .Values.config.memory.maxResultEventBytes }}
  {{- with .Values.cassandra }}
  {{- if .hosts }}
    cassandra:
      hosts:
        {{- toYaml .hosts | nindent 8 }}
      keyspace: {{ .keyspace }}
      replication: {{ .replication | quote }}
      consistency: {{ .consistency }}
      {{- if .localDC }}
      localDC: {{ .localDC }}
      {{- end }}
      retention: {{ .retention }}
      {{- if .auth.existingSecret }}
      username: {file: {{ printf "%s/%s/%s" (include "switchyard.secretsDir" $) .auth.existingSecret .auth.usernameKey }}}
      password: {file: {{ printf "%s/%s/%s" (include "switchyard.secretsDir" $) .auth.existingSecret .auth.passwordKey }}}
      {{- end }}
      {{- if .tls.enabled }}
      tls:
        caFile: {{ printf "%s/%s/ca.crt" (include "switchyard.secretsDir" $) .tls.existingSecret }}
      {{- end }}
      journal:
        dir: /var/lib/switchyard/journal
  {{- end }}
  {{- end }}
{{- end -}}

{{/* Every Secret to mount: the listed ones and the Cassandra credentials, without repeats. */}}
{{- define "switchyard.secretNames" -}}
{{- $names := list -}}
{{- range .Values.secrets }}{{- $names = append $names . -}}{{- end -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- if .Values.kafka.tls.enabled }}{{- with .Values.kafka.tls.existingSecret }}{{- $names = append $names . -}}{{- end -}}{{- end -}}
{{- if .Values.kafka.sasl.mechanism }}{{- $names = append $names .Values.kafka.sasl.existingSecret -}}{{- end -}}
{{- end -}}
{{- if .Values.cassandra.hosts -}}
{{- with .Values.cassandra.auth.existingSecret }}{{- $names = append $names . -}}{{- end -}}
{{- if .Values.cassandra.tls.enabled }}{{- with .Values.cassandra.tls.existingSecret }}{{- $names = append $names . -}}{{- end -}}{{- end -}}
{{- end -}}
{{- with .Values.tls.ingress.existingSecret }}{{- $names = append $names . -}}{{- end -}}
{{- with .Values.tls.ingress.clientCASecret }}{{- $names = append $names . -}}{{- end -}}
{{- with .Values.tls.admin.existingSecret }}{{- $names = append $names . -}}{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{/* The routes file: config.manifests as YAML documents. */}}
{{- define "switchyard.routes" -}}
{{- if not .Values.config.manifests }}
# No brokers or triggers yet: set config.manifests (or config.existingConfigMap).
{{- end }}
{{- range .Values.config.manifests }}
---
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Refuses values that install something that does not do what it seems to: more than one pod
with results in memory answers `events get` from one pod's history only (issue #33, item 6), unless
results.perPodAcknowledged says the user knows. */}}
{{- define "switchyard.refusals" -}}
{{- $pods := int .Values.replicaCount -}}
{{- if .Values.autoscaling.enabled }}{{ $pods = int .Values.autoscaling.maxReplicas }}{{ end -}}
{{- if and (gt $pods 1) (not .Values.cassandra.hosts) (not .Values.results.perPodAcknowledged) -}}
{{- fail (printf "%d replicas (%s) would keep delivery results in memory, each pod only the events it routed: `switchyard events get` and GET /v1/events would answer 404 for an event another pod routed. Set cassandra.hosts so that every pod answers for every event, or replicaCount=1 (and autoscaling.maxReplicas=1), or results.perPodAcknowledged=true to accept per-pod results (docs/kubernetes.md#results-with-more-than-one-replica)" $pods (ternary "autoscaling.maxReplicas" "replicaCount" .Values.autoscaling.enabled)) -}}
{{- end -}}
{{- end -}}
