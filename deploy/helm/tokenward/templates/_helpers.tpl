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

{{/* Where the frontends file is mounted (BFF_CONFIG_FILE): a file of its own under /etc/tokenward, so other mounts there (tls/) stay possible. */}}
{{- define "tokenward.frontendsPath" -}}
/etc/tokenward/frontends.yaml
{{- end -}}

{{/*
The chart renders its own Secret: always for one frontend (existingSecret
aside); with `frontends` only when some `secrets.*` default is set, as the
frontends' own secrets come from frontendSecrets.
*/}}
{{- define "tokenward.chartSecret" -}}
{{- if not .Values.existingSecret -}}
{{- $s := .Values.secrets -}}
{{- if or (not .Values.frontends) $s.clientSecret $s.clientPrivateKey $s.cookieSecret $s.encryptionKeys $s.redisUrl -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The `frontends` entries checked before anything renders, for installs that
skip the schema (--skip-schema-validation): a name and publicUrl per frontend,
names and hosts unique (tokenward refuses duplicates at start too), secrets
only as ${ENV_NAME} references, and none of the single-frontend values that
would silently become every frontend's default.
*/}}
{{- define "tokenward.checkFrontends" -}}
{{- if .Values.frontends -}}
{{- if .Values.publicUrl -}}
{{- fail "publicUrl must be empty with frontends: set frontends[].publicUrl instead" -}}
{{- end -}}
{{- if .Values.ingress.host -}}
{{- fail "ingress.host must be empty with frontends: the Ingress has one rule per frontend host" -}}
{{- end -}}
{{- $names := list -}}
{{- $hosts := list -}}
{{- range $i, $f := .Values.frontends -}}
{{- $name := required (printf "frontends[%d].name is required" $i) $f.name -}}
{{- if not (regexMatch "^[a-z][a-z0-9-]{0,31}$" $name) -}}
{{- fail (printf "frontends[%d].name %q must match [a-z][a-z0-9-]{0,31}" $i $name) -}}
{{- end -}}
{{- if has $name $names -}}
{{- fail (printf "frontends[%d].name %q is used twice" $i $name) -}}
{{- end -}}
{{- $names = append $names $name -}}
{{- $host := (urlParse (required (printf "frontends[%d] (%s): publicUrl is required" $i $name) $f.publicUrl)).host -}}
{{- if has $host $hosts -}}
{{- fail (printf "frontends[%d] (%s): the host %s of publicUrl is another frontend's" $i $name $host) -}}
{{- end -}}
{{- $hosts = append $hosts $host -}}
{{- range $key := list "clientSecret" "clientPrivateKey" "cookieSecret" "encryptionKeys" "dpopKey" -}}
{{- if hasKey $f $key -}}
{{- if not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" (toString (index $f $key))) -}}
{{- fail (printf "frontends[%d] (%s): %s must be a ${ENV_NAME} reference to a variable of frontendSecrets, never the secret itself" $i $name $key) -}}
{{- end -}}
{{- if not (or $.Values.frontendSecrets $.Values.existingSecret) -}}
{{- fail (printf "frontends[%d] (%s): %s references a variable, but no Secret provides it: list the Secret in frontendSecrets" $i $name $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Ingress host names of the frontends: publicUrl's host without a port (an Ingress rule has none; the Host header keeps it). */}}
{{- define "tokenward.frontendHosts" -}}
{{- range .Values.frontends }}
- {{ (urlParse .publicUrl).hostname | quote }}
{{- end }}
{{- end -}}
