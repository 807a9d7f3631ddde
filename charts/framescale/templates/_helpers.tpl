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
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "framescale.workerImage" -}}
{{- $repository := .Values.worker.image.repository | default .Values.image.repository -}}
{{- $tag := .Values.worker.image.tag | default (.Values.image.tag | default .Chart.AppVersion) -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{- define "framescale.adapter" -}}{{ include "framescale.fullname" . }}-adapter{{- end -}}
{{- define "framescale.exporter" -}}{{ include "framescale.fullname" . }}-exporter{{- end -}}
{{- define "framescale.worker" -}}{{ include "framescale.fullname" . }}-worker{{- end -}}

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
