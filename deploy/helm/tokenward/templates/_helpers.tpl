{{/* Chart name, cut to the 63 characters a label value allows. */}}
{{- define "tokenward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name for every object, unless the release name already contains the chart name. */}}
{{- define "tokenward.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tokenward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokenward.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tokenward.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Secret the pods read: yours (existingSecret) or the chart's. */}}
{{- define "tokenward.secretName" -}}
{{- default (include "tokenward.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/*
An integer value rendered exactly, as a quoted string: (list "name" value).
Helm reads YAML numbers as float64, and `quote` of a float64 prints 3e+06 for
3000000; `int64 | toString` prints every digit. A non-number (such as "30m")
fails the render instead of becoming "0" through `int`.
*/}}
{{- define "tokenward.int" -}}
{{- $name := index . 0 -}}
{{- $v := index . 1 -}}
{{- if not (or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v)) -}}
{{- fail (printf "%s must be an integer, not %v" $name $v) -}}
{{- end -}}
{{- $v | int64 | toString | quote -}}
{{- end -}}

{{- define "tokenward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tokenward.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* More than one pod can run: only then may a PodDisruptionBudget keep one. */}}
{{- define "tokenward.multiplePods" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}
