{{/* Names, labels and the image. */}}
{{- define "framescale.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "framescale.labels" -}}
app.kubernetes.io/name: framescale
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: framescale.selector (dict "root" $ "component" "adapter"). */}}
{{- define "framescale.selector" -}}
app.kubernetes.io/name: framescale
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "framescale.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* A listen address for a port: framescale.listen (dict "root" $ "port" 9477); [::]:9477 for IPv6. */}}
{{- define "framescale.listen" -}}
{{- $host := .root.Values.listenAddress -}}
{{- if contains ":" $host -}}
{{- printf "[%s]:%v" $host .port -}}
{{- else -}}
{{- printf "%s:%v" $host .port -}}
{{- end -}}
{{- end -}}

{{/* The exporter's namespace: exporter.namespace, else the release's. */}}
{{- define "framescale.exporterNamespace" -}}
{{- .Values.exporter.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* A pod's scheduling and security fields from a component's values (shared by every workload). */}}
{{- define "framescale.podPlacement" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "framescale.workerImage" -}}
{{- $repository := .Values.worker.image.repository | default .Values.image.repository -}}
{{- $tag := .Values.worker.image.tag | default (.Values.image.tag | default .Chart.AppVersion) -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{- define "framescale.adapter" -}}{{ include "framescale.fullname" . }}-adapter{{- end -}}
{{- define "framescale.exporter" -}}{{ include "framescale.fullname" . }}-exporter{{- end -}}
{{- define "framescale.worker" -}}{{ include "framescale.fullname" . }}-worker{{- end -}}
{{- define "framescale.queue" -}}{{ include "framescale.fullname" . }}-queue{{- end -}}

{{/* Queue mode's environment for the worker and the adapter: the queue's URL and stream. */}}
{{- define "framescale.queueEnv" -}}
{{- $queue := .Values.queue -}}
- name: FRAMESCALE_QUEUE_URL
{{- if $queue.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ $queue.existingSecret }}
      key: {{ $queue.existingSecretKey }}
{{- else if $queue.url }}
  value: {{ $queue.url | quote }}
{{- else if $queue.bundled.enabled }}
  value: {{ printf "redis://%s.%s.svc:%v/0" (include "framescale.queue" .) .Release.Namespace $queue.bundled.port | quote }}
{{- else }}
{{- fail "queue.enabled needs queue.url, queue.existingSecret or queue.bundled.enabled" }}
{{- end }}
- name: FRAMESCALE_QUEUE_STREAM
  value: {{ $queue.stream | quote }}
{{- end -}}

{{/* The serving certificate's DNS names: the adapter Service's. */}}
{{- define "framescale.adapterDNSNames" -}}
{{- $service := include "framescale.adapter" . -}}
{{- list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) | toJson -}}
{{- end -}}

{{/* The HPA API: the value, else autoscaling/v2 where the cluster has it, else v2beta2. */}}
{{- define "framescale.hpaApiVersion" -}}
{{- if .Values.worker.hpa.apiVersion -}}
{{- .Values.worker.hpa.apiVersion -}}
{{- else if .Capabilities.APIVersions.Has "autoscaling/v2" -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end -}}

{{- define "framescale.pdbApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" -}}policy/v1{{- else -}}policy/v1beta1{{- end -}}
{{- end -}}
