package charttest

import (
	"strings"
	"testing"
)

// TestValuesRejected: a misspelt or wrong value stops the install with a
// message that names the value, before anything reaches the cluster.
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
		// Rules across values, checked by the templates.
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
