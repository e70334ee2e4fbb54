package charttest

import (
	"strings"
	"testing"
)

// TestValuesRejected: a misspelt or wrong value, a misspelt or misplaced
// variable, or a NATS login a service could not use stops the install
// with a message that names the value, before anything reaches the
// cluster.
func TestValuesRejected(t *testing.T) {
	cases := []struct {
		name  string
		files []string
		set   []string
		// want are substrings the error must contain.
		want []string
	}{
		{
			name:  "a typo in a values file",
			files: []string{"testdata/typo-values.yaml"},
			want:  []string{"at '/services/ingest'", "additional properties 'replcias' not allowed"},
		},
		{
			name: "an unknown top-level key",
			set:  []string{"replicaCount=3"},
			want: []string{"additional properties 'replicaCount' not allowed"},
		},
		{
			name: "a typo in the shared service settings",
			set:  []string{"serviceDefaults.resouces.limits.memory=1Gi"},
			want: []string{"at '/serviceDefaults'", "additional properties 'resouces' not allowed"},
		},
		{
			name: "a service name that cannot be a Kubernetes name",
			set:  []string{"services.Ingest.enabled=true"},
			want: []string{"at '/services'", "additional properties 'Ingest' not allowed"},
		},
		{
			name: "an unknown log level",
			set:  []string{"config.logLevel=verbose"},
			want: []string{"at '/config/logLevel'", "'debug', 'info', 'warn', 'error'"},
		},
		{
			name: "a duration without a unit",
			set:  []string{"config.eventsMaxAge=30"},
			want: []string{"at '/config/eventsMaxAge'"},
		},
		{
			name: "a service setting given as a number",
			set:  []string{"services.ingest.env.RETAIN_INGEST_QUEUE_DEPTH=8192"},
			want: []string{"at '/services/ingest/env/RETAIN_INGEST_QUEUE_DEPTH'", "want string"},
		},
		{
			name: "a service setting that is not an environment variable name",
			set:  []string{"services.ingest.env.linger=2ms"},
			want: []string{"additional properties 'linger' not allowed"},
		},
		{
			name: "a probe type the chart does not know",
			set:  []string{"serviceDefaults.probes.liveness.type=tcp"},
			want: []string{"at '/serviceDefaults/probes/liveness/type'", "'grpc', 'http'"},
		},
		{
			name: "NATS without fsync on every acknowledgement",
			set:  []string{"nats.config.jetstream.merge.sync_interval=2m"},
			want: []string{"at '/nats/config/jetstream/merge/sync_interval'", "value must be 'always'"},
		},
		{
			name: "an external NATS URL that is not one",
			set:  []string{"externalNats.url=localhost:4222"},
			want: []string{"at '/externalNats/url'"},
		},
		{
			name: "a database variable that is not a RETAIN_* name",
			set:  []string{"services.churnsignal.database.env=churn_db"},
			want: []string{"at '/services/churnsignal/database/env'"},
		},
		{
			name: "a secret setting with a misspelt field",
			set:  []string{"services.notifier.secretEnv.RETAIN_NOTIFIER_SMS_AUTH.secret=sms"},
			want: []string{"at '/services/notifier/secretEnv/RETAIN_NOTIFIER_SMS_AUTH'", "additional properties 'secret' not allowed"},
		},
		{
			name: "a secret setting without its key",
			set:  []string{"services.notifier.secretEnv.RETAIN_NOTIFIER_SMS_AUTH.key="},
			want: []string{"at '/services/notifier/secretEnv/RETAIN_NOTIFIER_SMS_AUTH/key'"},
		},
		{
			name: "an ingress path type Kubernetes does not know",
			set:  []string{"services.notifier.ingress.paths[0].pathType=Regex"},
			want: []string{"at '/services/notifier/ingress/paths/0/pathType'"},
		},
		{
			name: "a public port that is not one",
			set:  []string{"services.notifier.publicPorts={ops}"},
			want: []string{"at '/services/notifier/publicPorts/0'"},
		},
		// Rules across values, checked by the templates.
		{
			name: "a credential in env, which is a ConfigMap",
			set:  []string{"services.notifier.env.RETAIN_NOTIFIER_SMTP_PASSWORD=hunter2"},
			want: []string{"services.notifier.env.RETAIN_NOTIFIER_SMTP_PASSWORD looks like a credential", "secretEnv"},
		},
		{
			name: "a setting both in env and from a Secret",
			set:  []string{"services.notifier.env.RETAIN_NOTIFIER_SMTP_FROM=x@example.com", "services.notifier.secretEnv.RETAIN_NOTIFIER_SMTP_FROM.name=s", "services.notifier.secretEnv.RETAIN_NOTIFIER_SMTP_FROM.key=k"},
			want: []string{"services.notifier.env.RETAIN_NOTIFIER_SMTP_FROM is also in services.notifier.secretEnv"},
		},
		{
			name: "the notifier's ingress without a host",
			set:  []string{"services.notifier.ingress.enabled=true"},
			want: []string{"services.notifier.ingress.host is required"},
		},
		{
			name: "an ingress for campaign, which has no HTTP API",
			set:  []string{"services.campaign.ingress.enabled=true", "services.campaign.ingress.host=c.example.com"},
			want: []string{"services.campaign.ingress.enabled needs services.campaign.ports.http"},
		},
		{
			name: "more stream replicas than bundled NATS servers",
			set:  []string{"nats.enabled=true", "config.streamReplicas=3"},
			want: []string{"config.streamReplicas is 3 but the bundled NATS runs 1 server(s)"},
		},
		{
			name: "bundled NATS without sync_interval",
			set:  []string{"nats.enabled=true", "nats.config.jetstream.merge=null"},
			want: []string{`nats.config.jetstream.merge.sync_interval must be "always"`},
		},
		{
			name: "an ingress without a host",
			set:  []string{"services.ingest.ingress.enabled=true"},
			want: []string{"services.ingest.ingress.host is required"},
		},
		{
			name: "an ingress for a service without an HTTP API",
			set:  []string{"services.metrics.ingress.enabled=true", "services.metrics.ingress.host=m.example.com"},
			want: []string{"services.metrics.ingress.enabled needs services.metrics.ports.http"},
		},
		// Variables: misspelt, another service's, or a stream setting given
		// to one service (the streams are shared: one value for all, config.*).
		{
			name: "a misspelt variable in a service's env",
			set:  []string{"services.ingest.env.RETAIN_INGEST_LINGR=5ms"},
			want: []string{"at '/services/ingest/env'", "additional properties 'RETAIN_INGEST_LINGR' not allowed"},
		},
		{
			name: "another service's variable",
			set:  []string{"services.metrics.env.RETAIN_INGEST_LINGER=5ms"},
			want: []string{"at '/services/metrics/env'", "'RETAIN_INGEST_LINGER' not allowed"},
		},
		{
			name: "a misspelt variable from a Secret",
			set:  []string{"services.notifier.secretEnv.RETAIN_NOTIFIER_SMTP_PASWORD.name=s", "services.notifier.secretEnv.RETAIN_NOTIFIER_SMTP_PASWORD.key=k"},
			want: []string{"at '/services/notifier/secretEnv'", "'RETAIN_NOTIFIER_SMTP_PASWORD' not allowed"},
		},
		{
			name: "a service's variable in the defaults of all",
			set:  []string{"serviceDefaults.env.RETAIN_INGEST_LINGER=5ms"},
			want: []string{"at '/serviceDefaults/env'", "'RETAIN_INGEST_LINGER' not allowed"},
		},
		{
			name: "the streams' max age for one service",
			set:  []string{"services.ingest.env.RETAIN_EVENTS_MAX_AGE=1h"},
			want: []string{"services.ingest.env sets RETAIN_EVENTS_MAX_AGE", "set config.eventsMaxAge instead"},
		},
		{
			name: "the streams' replicas from a Secret",
			set:  []string{"services.metrics.secretEnv.RETAIN_STREAM_REPLICAS.name=s", "services.metrics.secretEnv.RETAIN_STREAM_REPLICAS.key=k"},
			want: []string{"services.metrics.secretEnv sets RETAIN_STREAM_REPLICAS", "config.streamReplicas"},
		},
		{
			name: "the de-duplication window in extraEnv",
			set:  []string{"services.campaign.extraEnv[0].name=RETAIN_DUPLICATE_WINDOW", "services.campaign.extraEnv[0].value=1m"},
			want: []string{"services.campaign.extraEnv sets RETAIN_DUPLICATE_WINDOW", "config.duplicateWindow"},
		},
		// The NATS login: values that would leave a service unable to log in
		// to the bundled NATS, or give it a second login besides the chart's.
		{
			name:  "a service without its user",
			files: []string{"values-dev.yaml"},
			set:   []string{"nats.config.merge.authorization.users[0].user=campaign", "nats.config.merge.authorization.users[0].password=<< $RETAIN_NATS_PASSWORD_CAMPAIGN >>"},
			want:  []string{"nats.config.merge.authorization.users has no {user: churnsignal, password: \"<< $RETAIN_NATS_PASSWORD_CHURNSIGNAL >>\"}"},
		},
		{
			name:  "a password the server reads from another Secret",
			files: []string{"values-dev.yaml"},
			set:   []string{"nats.container.env.RETAIN_NATS_PASSWORD_INGEST.valueFrom.secretKeyRef.name=other"},
			want:  []string{"the services read their NATS passwords from Secret retain-nats-auth (natsAuth.secretName, by default <fullname>-nats-auth), but the bundled NATS from Secret other (nats.container.env.RETAIN_NATS_PASSWORD_INGEST)"},
		},
		{
			name:  "a password the server reads from another key",
			files: []string{"values-dev.yaml"},
			set:   []string{"nats.container.env.RETAIN_NATS_PASSWORD_INGEST.valueFrom.secretKeyRef.key=metrics"},
			want:  []string{"nats.container.env.RETAIN_NATS_PASSWORD_INGEST is not {valueFrom: {secretKeyRef: {name: retain-nats-auth, key: ingest}}}"},
		},
		{
			// The NATS chart's values see the release's name, not this
			// chart's values: the two default names part.
			name:  "the bundled NATS's passwords with a fullnameOverride",
			files: []string{"values-dev.yaml"},
			set:   []string{"fullnameOverride=shop"},
			want:  []string{"from Secret shop-nats-auth (natsAuth.secretName, by default <fullname>-nats-auth), but the bundled NATS from Secret retain-nats-auth", "Set natsAuth.secretName to retain-nats-auth, or the secretKeyRef name of every nats.container.env.RETAIN_NATS_PASSWORD_* to shop-nats-auth"},
		},
		{
			name:  "no login to the bundled NATS",
			files: []string{"values-dev.yaml"},
			set:   []string{"natsAuth.mode=none"},
			want:  []string{"natsAuth.mode is none, but the bundled NATS requires a login"},
		},
		{
			name:  "one service's own login while the chart gives every service one",
			files: []string{"values-dev.yaml"},
			set:   []string{"services.ingest.env.RETAIN_NATS_USER=other"},
			want:  []string{"services.ingest.env sets RETAIN_NATS_USER (or serviceDefaults.env does), which natsAuth sets for every service; natsAuth.mode none lets services log in their own way"},
		},
		{
			name:  "an unknown login mode",
			files: []string{"values-dev.yaml"},
			set:   []string{"natsAuth.mode=token"},
			want:  []string{"at '/natsAuth/mode'"},
		},
		// The APIs' TLS and the revoked tokens: files the chart mounts.
		{
			name: "a gRPC probe, which the kubelet cannot make over TLS",
			set:  []string{"tls.secretName=retain-api-tls", "services.ingest.probes.readiness.type=grpc"},
			want: []string{"services.ingest.probes.readiness.type is grpc (or serviceDefaults.probes.readiness.type is), but tls.secretName is set", "Use type http on the ops port"},
		},
		{
			name: "a TLS Secret name that is not a Kubernetes name",
			set:  []string{"tls.secretName=API_TLS"},
			want: []string{"at '/tls/secretName'"},
		},
		{
			name: "a CA key that is a path",
			set:  []string{"tls.secretName=retain-api-tls", "tls.caKey=../ca.crt"},
			want: []string{"at '/tls/caKey'"},
		},
		{
			name: "the certificate file in a service's env",
			set:  []string{"services.ingest.env.RETAIN_TLS_CERT_FILE=/certs/tls.crt"},
			want: []string{"services.ingest.env sets RETAIN_TLS_CERT_FILE (or serviceDefaults.env does), which the chart sets from tls.secretName (it mounts the files): set tls.secretName instead"},
		},
		{
			name: "the notifier client's CA in campaign's env",
			set:  []string{"services.campaign.env.RETAIN_CAMPAIGN_NOTIFIER_TLS_CA=/certs/ca.crt"},
			want: []string{"services.campaign.env sets RETAIN_CAMPAIGN_NOTIFIER_TLS_CA", "set tls.secretName and tls.caKey instead"},
		},
		{
			name: "revoked tokens from a ConfigMap and a Secret",
			set:  []string{"auth.revokedTokens.configMapName=revoked", "auth.revokedTokens.secretName=revoked"},
			want: []string{"auth.revokedTokens sets both configMapName and secretName"},
		},
		{
			name: "a revoked tokens key that is a path",
			set:  []string{"auth.revokedTokens.configMapName=revoked", "auth.revokedTokens.key=lists/revoked.txt"},
			want: []string{"at '/auth/revokedTokens/key'"},
		},
		{
			name: "the revoked tokens file in extraEnv",
			set:  []string{"services.notifier.extraEnv[0].name=RETAIN_AUTH_REVOKED_FILE", "services.notifier.extraEnv[0].value=/lists/revoked.txt"},
			want: []string{"services.notifier.extraEnv sets RETAIN_AUTH_REVOKED_FILE", "set auth.revokedTokens instead"},
		},
		{
			name:  "a NATS client certificate without the Secret holding it",
			files: []string{"values-dev.yaml"},
			set:   []string{"natsTLS.clientCertificate=true"},
			want:  []string{"natsTLS.clientCertificate needs natsTLS.secretName"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.files, tc.set...)
			if err == nil {
				t.Fatalf("rendered without error; want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}
