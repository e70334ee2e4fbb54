{{/*
Names and labels.
*/}}
{{- define "retain.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "retain.fullname" -}}
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

{{- define "retain.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "retain.labels" -}}
helm.sh/chart: {{ include "retain.chart" . }}
app.kubernetes.io/name: {{ include "retain.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: retain
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one service: (dict "root" $ "name" $name). */}}
{{- define "retain.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retain.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Labels of one service's objects: (dict "root" $ "name" $name). */}}
{{- define "retain.serviceLabels" -}}
{{ include "retain.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Name of one service's objects: <fullname>-<service>. */}}
{{- define "retain.serviceFullname" -}}
{{- printf "%s-%s" (include "retain.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
deepMerge: .override merged over .base, recursively for maps; every other
value in .override (false, 0 and "" included) replaces the base's. Sprig's
mergeOverwrite would keep a default `true` over an explicit `false`.
*/}}
{{- define "retain.deepMerge" -}}
{{- $out := deepCopy (.base | default dict) -}}
{{- range $k, $v := (.override | default dict) -}}
{{- $b := get $out $k -}}
{{- if and (kindIs "map" $v) (kindIs "map" $b) -}}
{{- $_ := set $out $k (include "retain.deepMerge" (dict "base" $b "override" $v) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
The effective settings of one service, as YAML: serviceDefaults with the
service's own block over it, plus derived fields (name, fullname, image,
secret names, env). Use: include "retain.service" (dict "root" $ "name" $name) | fromYaml
*/}}
{{- define "retain.service" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $own := get $root.Values.services $name | default dict -}}
{{- $svc := include "retain.deepMerge" (dict "base" $root.Values.serviceDefaults "override" $own) | fromYaml -}}
{{- $fullname := include "retain.serviceFullname" . -}}
{{- $_ := set $svc "name" $name -}}
{{- $_ := set $svc "fullname" $fullname -}}
{{- /* image: registry/repository:tag or @digest */ -}}
{{- $img := $svc.image -}}
{{- $registry := $img.registry | default $root.Values.image.registry -}}
{{- $repository := $img.repository | default (printf "retain-%s" $name) -}}
{{- $ref := printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- if not $registry -}}{{- $ref = $repository -}}{{- end -}}
{{- if $img.digest -}}
{{- $ref = printf "%s@%s" $ref $img.digest -}}
{{- else -}}
{{- $ref = printf "%s:%s" $ref ($img.tag | default $root.Values.image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}
{{- $_ := set $svc "imageRef" $ref -}}
{{- /* database URL: chart-created Secret when url is given, else an existing one */ -}}
{{- $db := $svc.database -}}
{{- if $db.url -}}
{{- $_ := set $svc "databaseSecretName" (printf "%s-database" $fullname) -}}
{{- $_ := set $svc "databaseSecretKey" "url" -}}
{{- $_ := set $svc "databaseSecretCreated" true -}}
{{- else -}}
{{- $_ := set $svc "databaseSecretName" ($db.existingSecret | default (printf "retain-%s-database" $name)) -}}
{{- $_ := set $svc "databaseSecretKey" $db.existingSecretKey -}}
{{- $_ := set $svc "databaseSecretCreated" false -}}
{{- end -}}
{{- $_ := set $svc "databaseEnv" ($db.env | default (printf "RETAIN_%s_DATABASE_URL" (upper $name))) -}}
{{- /* service account */ -}}
{{- if $svc.serviceAccount.create -}}
{{- $_ := set $svc "serviceAccountName" ($svc.serviceAccount.name | default $fullname) -}}
{{- else -}}
{{- $_ := set $svc "serviceAccountName" ($svc.serviceAccount.name | default "default") -}}
{{- end -}}
{{- toYaml $svc -}}
{{- end -}}

{{/*
The enabled services, as YAML: each one's name over its effective settings
(retain.service), in name order. Every template that renders something per
service, and every check of one, ranges over it, so that what "enabled"
means is decided here only:
  range $name, $svc := include "retain.enabledServices" $ | fromYaml
*/}}
{{- define "retain.enabledServices" -}}
{{- range $name, $_ := .Values.services }}
{{- $svc := include "retain.service" (dict "root" $ "name" $name) }}
{{- if ($svc | fromYaml).enabled }}
{{ $name | quote }}:
  {{- $svc | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The secret and key holding the token public key. */}}
{{- define "retain.authSecretName" -}}
{{- if .Values.auth.publicKey -}}
{{- printf "%s-auth" (include "retain.fullname" .) -}}
{{- else -}}
{{- .Values.auth.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "retain.authSecretKey" -}}
{{- if .Values.auth.publicKey -}}publicKey{{- else -}}{{ .Values.auth.existingSecretKey }}{{- end -}}
{{- end -}}

{{/* The NATS chart's service name, as that chart computes it. */}}
{{- define "retain.natsFullname" -}}
{{- $nats := .Values.nats -}}
{{- $override := index $nats "fullnameOverride" -}}
{{- if $override -}}
{{- $override | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" (index $nats "nameOverride") -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The URL(s) the services connect to NATS with. */}}
{{- define "retain.natsURL" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc:4222" (include "retain.natsFullname" .) .Release.Namespace -}}
{{- else -}}
{{- required "externalNats.url is required when nats.enabled is false" .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/*
How the services log in to NATS: natsAuth.mode, by default password with
the bundled NATS (which has a user per service) and none with your own.
*/}}
{{- define "retain.natsAuthMode" -}}
{{- .Values.natsAuth.mode | default (ternary "password" "none" .Values.nats.enabled) -}}
{{- end -}}

{{/*
The Secret of the services' NATS logins: natsAuth.secretName, by default
<fullname>-nats-auth, so that two releases in a namespace have one each
(release "retain": retain-nats-auth).
*/}}
{{- define "retain.natsAuthSecret" -}}
{{- .Values.natsAuth.secretName | default (printf "%s-nats-auth" (include "retain.fullname" .)) -}}
{{- end -}}

{{/*
The Secret name a secretKeyRef of nats.container.env renders to in the
NATS chart: a string, or {$tplYaml: template}, which the NATS chart (1.x)
renders with its own context (this release, the NATS chart's values),
then reads as YAML. Done here the same way, to check it against
retain.natsAuthSecret.
*/}}
{{- define "retain.natsEnvSecretName" -}}
{{- $name := .name -}}
{{- if and (kindIs "map" $name) (hasKey $name "$tplYaml") -}}
{{- $root := .root -}}
{{- $ctx := dict "Release" $root.Release "Capabilities" $root.Capabilities "Template" $root.Template "Values" $root.Values.nats "Chart" (dict "Name" "nats") -}}
{{- $name = get (printf "tpl:%s" (tpl (get $name "$tplYaml") $ctx | nindent 2) | fromYaml) "tpl" -}}
{{- end -}}
{{- toString $name -}}
{{- end -}}

{{/* Where a service finds its NATS credentials file (mode creds) and the TLS files. */}}
{{- define "retain.natsAuthDir" -}}/etc/retain/nats-auth{{- end -}}
{{- define "retain.natsTLSDir" -}}/etc/retain/nats-tls{{- end -}}

{{/*
Where a service finds the certificate its APIs serve (tls.secretName) and
the revoked token ids (auth.revokedTokens): each mounted as a whole
directory, never by subPath, which the kubelet would not update when the
Secret or ConfigMap changes (the services re-read the files).
*/}}
{{- define "retain.tlsDir" -}}/etc/retain/tls{{- end -}}
{{- define "retain.authRevokedDir" -}}/etc/retain/auth-revoked{{- end -}}

{{/*
The API TLS and token revocation settings the chart gives the services,
each variable with the values that set it: files only the chart mounts, so
a service's env, secretEnv and extraEnv may not set them (retain.validate).
The campaign service's notifier client is the chart's while the chart
gives it the notifier's address (the notifier is enabled).
*/}}
{{- define "retain.fileSettings" -}}
RETAIN_TLS_CERT_FILE: tls.secretName
RETAIN_TLS_KEY_FILE: tls.secretName
{{- if (include "retain.service" (dict "root" . "name" "notifier") | fromYaml).enabled }}
RETAIN_CAMPAIGN_NOTIFIER_TLS: tls.secretName and tls.caKey
RETAIN_CAMPAIGN_NOTIFIER_TLS_CA: tls.secretName and tls.caKey
{{- end }}
RETAIN_AUTH_REVOKED_FILE: auth.revokedTokens
{{- end -}}

{{/* The variable of the bundled NATS's environment holding a service's password. */}}
{{- define "retain.natsPasswordEnv" -}}
{{- printf "RETAIN_NATS_PASSWORD_%s" (upper .) -}}
{{- end -}}

{{/*
The NATS login and TLS settings the chart gives every service, each
variable with what sets it: a service's env, secretEnv and extraEnv may
not set them too (retain.validate).
*/}}
{{- define "retain.natsClientSettings" -}}
{{- if ne (include "retain.natsAuthMode" .) "none" }}
{{- range list "CREDS" "NKEY" "USER" "PASSWORD" "PASSWORD_FILE" "TOKEN" "TOKEN_FILE" }}
RETAIN_NATS_{{ . }}: natsAuth
{{- end }}
{{- end }}
{{- if .Values.natsTLS.secretName }}
{{- range list "CA" "CERT" "KEY" }}
RETAIN_NATS_TLS_{{ . }}: natsTLS
{{- end }}
{{- end }}
{{- end -}}

{{/*
The stream settings, each variable with the key of config that sets it:
they size the streams every service shares, so a release gives them one
value for all (docs/decisions/0021-stream-settings.md). Every ConfigMap
renders them from config and retain.validate refuses them per service, both
from this list: a new stream setting is added here (and to config in
values.yaml and values.schema.json).
*/}}
{{- define "retain.streamSettings" -}}
RETAIN_EVENTS_MAX_AGE: eventsMaxAge
RETAIN_DUPLICATE_WINDOW: duplicateWindow
RETAIN_STREAM_REPLICAS: streamReplicas
{{- end -}}

{{/*
Settings the chart refuses, with the reason, before anything is applied.
*/}}
{{- define "retain.validate" -}}
{{- with .Values.auth.revokedTokens -}}
{{- if and .configMapName .secretName -}}
{{- fail "auth.revokedTokens sets both configMapName and secretName: the revoked token ids come from one of them" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.natsTLS.clientCertificate (not .Values.natsTLS.secretName) -}}
{{- fail "natsTLS.clientCertificate needs natsTLS.secretName: the services read the client certificate (tls.crt, tls.key) from that Secret, and without it they would connect with none" -}}
{{- end -}}
{{- $replicas := int .Values.config.streamReplicas -}}
{{- if .Values.nats.enabled -}}
{{- $js := .Values.nats.config.jetstream | default dict -}}
{{- if not $js.enabled -}}
{{- fail "nats.config.jetstream.enabled must be true: every Retain stream lives in JetStream" -}}
{{- end -}}
{{- if ne (dig "merge" "sync_interval" "" $js | toString) "always" -}}
{{- fail "nats.config.jetstream.merge.sync_interval must be \"always\": a 2xx from ingest promises the events are on disk (ARCHITECTURE.md, section 3)" -}}
{{- end -}}
{{- if not (dig "fileStore" "enabled" false $js) -}}
{{- fail "nats.config.jetstream.fileStore.enabled must be true: Retain's streams are file-backed" -}}
{{- end -}}
{{- $cluster := .Values.nats.config.cluster | default dict -}}
{{- $servers := 1 -}}
{{- if $cluster.enabled -}}{{- $servers = int ($cluster.replicas | default 3) -}}{{- end -}}
{{- if gt $replicas $servers -}}
{{- fail (printf "config.streamReplicas is %d but the bundled NATS runs %d server(s): lower config.streamReplicas or enable nats.config.cluster with at least %d replicas" $replicas $servers $replicas) -}}
{{- end -}}
{{- /* The bundled NATS's users are values of the NATS chart, which cannot read this chart's: check they match. */ -}}
{{- $mode := include "retain.natsAuthMode" . -}}
{{- $authz := dig "config" "merge" "authorization" nil .Values.nats -}}
{{- if and (eq $mode "none") $authz -}}
{{- fail "natsAuth.mode is none, but the bundled NATS requires a login (nats.config.merge.authorization): use natsAuth.mode password; to run NATS open to every pod that reaches it, also set nats.config.merge.authorization to null" -}}
{{- end -}}
{{- if eq $mode "password" -}}
{{- $users := dict -}}
{{- range (dig "users" list ($authz | default dict)) -}}
{{- $_ := set $users (toString .user) (toString .password) -}}
{{- end -}}
{{- $natsEnv := dig "container" "env" dict .Values.nats -}}
{{- $secret := include "retain.natsAuthSecret" . -}}
{{- range $name, $_ := include "retain.enabledServices" $ | fromYaml -}}
{{- $var := include "retain.natsPasswordEnv" $name -}}
{{- $password := printf "<< $%s >>" $var -}}
{{- if ne (get $users $name) $password -}}
{{- fail (printf "natsAuth.mode is password, but nats.config.merge.authorization.users has no {user: %s, password: %q}: the bundled NATS would refuse the %s service's login" $name $password $name) -}}
{{- end -}}
{{- $ref := dig $var "valueFrom" "secretKeyRef" dict $natsEnv -}}
{{- if ne (toString $ref.key) $name -}}
{{- fail (printf "natsAuth.mode is password, but nats.container.env.%s is not {valueFrom: {secretKeyRef: {name: %s, key: %s}}}: the bundled NATS would not know the %s service's password from natsAuth.secretName" $var $secret $name $name) -}}
{{- end -}}
{{- $refName := include "retain.natsEnvSecretName" (dict "root" $ "name" $ref.name) -}}
{{- if ne $refName $secret -}}
{{- fail (printf "the services read their NATS passwords from Secret %s (natsAuth.secretName, by default <fullname>-nats-auth), but the bundled NATS from Secret %s (nats.container.env.%s): the NATS chart's values cannot see this chart's fullnameOverride, nameOverride or natsAuth.secretName. Set natsAuth.secretName to %s, or the secretKeyRef name of every nats.container.env.RETAIN_NATS_PASSWORD_* to %s" $secret $refName $var $refName $secret) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Settings one value serves every service: none may set them alone. */ -}}
{{- $shared := dict -}}
{{- range $k, $key := include "retain.streamSettings" . | fromYaml -}}
{{- $_ := set $shared $k (printf ": it sizes the streams every service shares, so all services must have one value; set config.%s instead" $key) -}}
{{- end -}}
{{- range $k, $key := include "retain.natsClientSettings" . | fromYaml -}}
{{- $own := ternary "natsAuth.mode none lets services log in their own way" "without natsTLS.secretName, give the TLS files yourself" (eq $key "natsAuth") -}}
{{- $_ := set $shared $k (printf ", which %s sets for every service; %s" $key $own) -}}
{{- end -}}
{{- range $k, $key := include "retain.fileSettings" . | fromYaml -}}
{{- $_ := set $shared $k (printf ", which the chart sets from %s (it mounts the files): set %s instead" $key $key) -}}
{{- end -}}
{{- range $name, $svc := include "retain.enabledServices" $ | fromYaml -}}
{{- if $.Values.tls.secretName -}}
{{- range $probe := list "startup" "readiness" "liveness" -}}
{{- if eq (dig $probe "type" "" $svc.probes) "grpc" -}}
{{- fail (printf "services.%s.probes.%s.type is grpc (or serviceDefaults.probes.%s.type is), but tls.secretName is set: the kubelet's gRPC probe cannot speak TLS, so the probe would always fail. Use type http on the ops port (path /readyz for readiness, /healthz otherwise)" $name $probe $probe) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $svc.ingress.enabled (not $svc.ports.http) -}}
{{- fail (printf "services.%s.ingress.enabled needs services.%s.ports.http: the ingress routes to the public HTTP API" $name $name) -}}
{{- end -}}
{{- if and $svc.ingress.enabled (not $svc.ingress.host) -}}
{{- fail (printf "services.%s.ingress.host is required when the ingress is enabled" $name) -}}
{{- end -}}
{{- if and $svc.ingress.enabled (not $svc.ingress.paths) -}}
{{- fail (printf "services.%s.ingress.paths is empty: the ingress would route nothing" $name) -}}
{{- end -}}
{{- $extraNames := list -}}
{{- range $e := $svc.extraEnv -}}{{- $extraNames = append $extraNames $e.name -}}{{- end -}}
{{- range $k, $why := $shared -}}
{{- range $where := list "env" "secretEnv" "extraEnv" -}}
{{- $set := false -}}
{{- if eq $where "extraEnv" -}}{{- $set = has $k $extraNames -}}{{- else -}}{{- $set = hasKey ((get $svc $where) | default dict) $k -}}{{- end -}}
{{- if $set -}}
{{- fail (printf "services.%s.%s sets %s (or serviceDefaults.%s does)%s" $name $where $k $where $why) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k, $_ := $svc.env -}}
{{- if regexMatch "_(SECRET|PASSWORD|AUTH|TOKEN|PRIVATE_KEY|DATABASE_URL)$" $k -}}
{{- fail (printf "services.%s.env.%s looks like a credential: env is rendered into a ConfigMap; read it from a Secret with services.%s.secretEnv" $name $k $name) -}}
{{- end -}}
{{- if hasKey ($svc.secretEnv | default dict) $k -}}
{{- fail (printf "services.%s.env.%s is also in services.%s.secretEnv: set it in one place (secretEnv, a Secret)" $name $k $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The ConfigMap data of one service: the shared settings, then the service's
own env (which wins). (dict "root" $ "svc" $svc)
*/}}
{{- define "retain.serviceEnv" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $c := $root.Values.config -}}
{{- $env := dict
  "RETAIN_NATS_URL" (include "retain.natsURL" $root)
  "RETAIN_GRPC_ADDR" (printf ":%d" (int $svc.ports.grpc))
  "RETAIN_OPS_ADDR" (printf ":%d" (int $svc.ports.ops))
  "RETAIN_LOG_LEVEL" $c.logLevel
  "RETAIN_LOG_FORMAT" $c.logFormat
  "RETAIN_SHUTDOWN_TIMEOUT" $c.shutdownTimeout
  "RETAIN_DRAIN_DELAY" $c.drainDelay
-}}
{{- range $k, $key := include "retain.streamSettings" $root | fromYaml -}}
{{- $v := required (printf "config.%s is required: it sets %s" $key $k) (get $c $key) -}}
{{- /* numbers from values files are floats: render 1073741824, not 1.073741824e+09 */ -}}
{{- if kindIs "float64" $v -}}{{- $v = int $v -}}{{- end -}}
{{- $_ := set $env $k (toString $v) -}}
{{- end -}}
{{- if $svc.ports.http -}}
{{- $_ := set $env "RETAIN_HTTP_ADDR" (printf ":%d" (int $svc.ports.http)) -}}
{{- end -}}
{{- /* the NATS login and TLS files (deployment.yaml mounts them; the password comes from a Secret) */ -}}
{{- $mode := include "retain.natsAuthMode" $root -}}
{{- if eq $mode "password" -}}
{{- $_ := set $env "RETAIN_NATS_USER" $svc.name -}}
{{- else if eq $mode "creds" -}}
{{- $_ := set $env "RETAIN_NATS_CREDS" (printf "%s/nats.creds" (include "retain.natsAuthDir" $root)) -}}
{{- end -}}
{{- if $root.Values.natsTLS.secretName -}}
{{- $dir := include "retain.natsTLSDir" $root -}}
{{- $_ := set $env "RETAIN_NATS_TLS_CA" (printf "%s/ca.crt" $dir) -}}
{{- if $root.Values.natsTLS.clientCertificate -}}
{{- $_ := set $env "RETAIN_NATS_TLS_CERT" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $env "RETAIN_NATS_TLS_KEY" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- end -}}
{{- /* the APIs' certificate and the revoked tokens (deployment.yaml mounts them) */ -}}
{{- $tls := $root.Values.tls -}}
{{- if $tls.secretName -}}
{{- $dir := include "retain.tlsDir" $root -}}
{{- $_ := set $env "RETAIN_TLS_CERT_FILE" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $env "RETAIN_TLS_KEY_FILE" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- with $root.Values.auth.revokedTokens -}}
{{- if or .configMapName .secretName -}}
{{- $_ := set $env "RETAIN_AUTH_REVOKED_FILE" (printf "%s/%s" (include "retain.authRevokedDir" $root) .key) -}}
{{- end -}}
{{- end -}}
{{- if $root.Values.otel.endpoint -}}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" $root.Values.otel.endpoint -}}
{{- end -}}
{{- if and $svc.ingress.enabled $svc.ingress.urlEnv -}}
{{- $_ := set $env $svc.ingress.urlEnv (include "retain.ingressURL" $svc) -}}
{{- end -}}
{{- /* campaign checks the templates its campaigns send against the notifier's API */ -}}
{{- if eq $svc.name "campaign" -}}
{{- $notifier := include "retain.service" (dict "root" $root "name" "notifier") | fromYaml -}}
{{- if $notifier.enabled -}}
{{- $_ := set $env "RETAIN_CAMPAIGN_NOTIFIER_ADDR" (printf "%s:%d" $notifier.fullname (int $notifier.ports.grpc)) -}}
{{- /* the caller's token goes with each call: over TLS whenever the notifier serves it */ -}}
{{- $ca := "" -}}
{{- if and $tls.secretName $tls.caKey -}}
{{- $ca = printf "%s/%s" (include "retain.tlsDir" $root) $tls.caKey -}}
{{- end -}}
{{- $_ := set $env "RETAIN_CAMPAIGN_NOTIFIER_TLS" (ternary "true" "false" (not (empty $tls.secretName))) -}}
{{- $_ := set $env "RETAIN_CAMPAIGN_NOTIFIER_TLS_CA" $ca -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := $svc.env -}}
{{- $_ := set $env $k (toString $v) -}}
{{- end -}}
{{- range $k, $v := $env }}
{{ $k }}: {{ $v | toString | quote }}
{{- end -}}
{{- end -}}

{{/* The URL of a service's Ingress: https://<host> with a TLS Secret, else http://<host>. */}}
{{- define "retain.ingressURL" -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .ingress.tlsSecretName))) .ingress.host -}}
{{- end -}}

{{/*
One probe from its values: (dict "probe" $svc.probes.readiness "svc" $svc).
type grpc asks gRPC health on the gRPC port; type http GETs path on the
ops port.
*/}}
{{- define "retain.probe" -}}
{{- $p := .probe -}}
{{- if eq $p.type "grpc" -}}
grpc:
  port: {{ .svc.ports.grpc }}
{{- else -}}
httpGet:
  path: {{ $p.path | default "/healthz" }}
  port: ops
{{- end }}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $p $k }}
{{ $k }}: {{ get $p $k }}
{{- end }}
{{- end }}
{{- end -}}
