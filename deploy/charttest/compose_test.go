package charttest

import (
	"bufio"
	"context"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"
)

const (
	composeFile = "../docker-compose.yml"
	envExample  = "../.env.example"
)

// loadCompose loads docker-compose.yml as `docker compose` would with
// .env.example as its .env and every profile on, validating it against the
// Compose specification.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory(".."),
		cli.WithEnvFiles(envExample),
		cli.WithDotEnv,
		cli.WithProfiles([]string{"observability", "tools"}),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %s: %v", composeFile, err)
	}
	return p
}

// retainServices are the compose services that run a Retain service image
// (the `retain` command is a tool, not a service).
func retainServices(p *types.Project) []string {
	var out []string
	for name, s := range p.Services {
		if strings.Contains(s.Image, "/retain-") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	for _, want := range []string{"nats", "postgres", "ingest", "metrics", "churnsignal", "campaign", "notifier", "retain", "otel-collector", "jaeger", "prometheus"} {
		if _, ok := p.Services[want]; !ok {
			t.Errorf("no %s service", want)
		}
	}
	for _, name := range []string{"otel-collector", "jaeger", "prometheus"} {
		if s := p.Services[name]; !slices.Contains(s.Profiles, "observability") {
			t.Errorf("%s is not in the observability profile (profiles %v)", name, s.Profiles)
		}
	}
	services := retainServices(p)
	if !slices.Equal(services, allServices) {
		t.Errorf("Retain services in compose = %v, want %v", services, allServices)
	}

	t.Run("services run like the chart runs them", func(t *testing.T) {
		for _, name := range append(services, "retain") {
			s := p.Services[name]
			if !s.ReadOnly {
				t.Errorf("%s: root file system is writable", name)
			}
			if s.User != "65532:65532" {
				t.Errorf("%s: user %q, want the image's non-root 65532:65532", name, s.User)
			}
			if !slices.Contains(s.CapDrop, "ALL") {
				t.Errorf("%s: capabilities not dropped", name)
			}
			if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("%s: no-new-privileges not set", name)
			}
			if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" || s.Build.Args["SERVICE"] == nil {
				t.Errorf("%s: not built from deploy/Dockerfile with a SERVICE argument", name)
			}
		}
		for _, name := range services {
			s := p.Services[name]
			if want := "ghcr.io/retainhq/retain-" + name + ":dev"; s.Image != want {
				t.Errorf("%s: image %q, want %q (the chart's <image.registry>/retain-<service>)", name, s.Image, want)
			}
			if got := *s.Build.Args["SERVICE"]; got != name {
				t.Errorf("%s: built with SERVICE=%s", name, got)
			}
			for _, dep := range []string{"nats", "postgres"} {
				if d, ok := s.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("%s does not wait for %s to be healthy", name, dep)
				}
			}
		}
	})

	t.Run("the same variables as the chart, all read by the service", func(t *testing.T) {
		r := mustRender(t, []string{"testdata/everything-values.yaml"})
		for _, name := range services {
			composeEnv := map[string]bool{}
			for k := range p.Services[name].Environment {
				composeEnv[k] = true
			}
			chartEnv := chartContainerEnv(t, r, "retain-"+name)
			if !maps.Equal(composeEnv, chartEnv) {
				t.Errorf("%s: compose and chart set different variables:\n  only compose: %v\n  only chart:   %v",
					name, missing(composeEnv, chartEnv), missing(chartEnv, composeEnv))
			}
			known, ok := knownEnv(t, name)
			if !ok {
				t.Fatalf("%s: register its flags in serviceEnv", name)
			}
			for k := range composeEnv {
				if !known[k] {
					t.Errorf("%s: compose sets %s, which the binary does not read", name, k)
				}
			}
		}
	})

	t.Run("the same defaults as the chart", func(t *testing.T) {
		// Each service's own settings (RETAIN_<SERVICE>_*), as compose reads
		// them with .env.example, equal the chart's defaults (which equal
		// the flags' defaults, TestChartRenders).
		r := mustRender(t, nil)
		for _, name := range services {
			cm := configMap(t, r, "retain-"+name)
			prefix := strings.TrimSuffix(databaseEnv(t, name), "DATABASE_URL")
			for k, v := range p.Services[name].Environment {
				want, ok := cm.Data[k]
				if !ok || !strings.HasPrefix(k, prefix) || derivedEnv[k] {
					continue
				}
				if !sameSetting(deref(v), want) {
					t.Errorf("%s: compose sets %s=%q, the chart %q", name, k, deref(v), want)
				}
			}
		}
	})

	t.Run(".env.example is read as intended", func(t *testing.T) {
		for svc, vars := range map[string]map[string]string{
			"ingest": {
				"RETAIN_LOG_LEVEL":            "info",
				"RETAIN_INGEST_LINGER":        "1ms",
				"RETAIN_INGEST_DATABASE_URL":  "postgres://retain:retain@postgres:5432/retain_ingest?sslmode=disable",
				"RETAIN_NATS_URL":             "nats://nats:4222",
				"RETAIN_HTTP_ADDR":            ":8080",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "",
			},
			"metrics": {
				"RETAIN_LOG_LEVEL":            "info",
				"RETAIN_METRICS_DATABASE_URL": "postgres://retain:retain@postgres:5432/retain_metrics?sslmode=disable",
				"RETAIN_METRICS_BATCH_SIZE":   "500",
				"RETAIN_METRICS_CONSUMERS":    "1",
				"RETAIN_METRICS_CACHE_BYTES":  "134217728",
				"RETAIN_NATS_URL":             "nats://nats:4222",
			},
			"churnsignal": {
				"RETAIN_LOG_LEVEL":              "info",
				"RETAIN_CHURN_DATABASE_URL":     "postgres://retain:retain@postgres:5432/retain_churnsignal?sslmode=disable",
				"RETAIN_CHURN_RESCORE_INTERVAL": "1h",
				"RETAIN_CHURN_HORIZON_WEEKS":    "13",
				"RETAIN_NATS_URL":               "nats://nats:4222",
			},
			"campaign": {
				"RETAIN_CAMPAIGN_DATABASE_URL":    "postgres://retain:retain@postgres:5432/retain_campaign?sslmode=disable",
				"RETAIN_CAMPAIGN_BATCH_SIZE":      "500",
				"RETAIN_CAMPAIGN_TIMER_INTERVAL":  "1s",
				"RETAIN_CAMPAIGN_MAX_TRIGGER_AGE": "168h",
				"RETAIN_NATS_URL":                 "nats://nats:4222",
			},
			"notifier": {
				"RETAIN_NOTIFIER_DATABASE_URL":       "postgres://retain:retain@postgres:5432/retain_notifier?sslmode=disable",
				"RETAIN_HTTP_ADDR":                   ":8080",
				"RETAIN_NOTIFIER_PUBLIC_URL":         "http://127.0.0.1:8081",
				"RETAIN_NOTIFIER_UNSUBSCRIBE_SECRET": "",
				"RETAIN_NOTIFIER_QUIET_START":        "21:00",
				"RETAIN_NOTIFIER_QUIET_END":          "09:00",
				"RETAIN_NOTIFIER_CAP_WINDOW":         "168h",
				"RETAIN_NOTIFIER_SMTP_ADDR":          "",
				"RETAIN_NOTIFIER_SMTP_FROM":          "",
				"RETAIN_NOTIFIER_SMTP_TLS":           "opportunistic",
				"RETAIN_NOTIFIER_SMS_AUTH_HEADER":    "Authorization",
				"RETAIN_NOTIFIER_WEBHOOK_SECRET":     "",
			},
		} {
			env := p.Services[svc].Environment
			for k, want := range vars {
				if got := env[k]; got == nil || *got != want {
					t.Errorf("%s %s = %v, want %q", svc, k, deref(got), want)
				}
			}
		}
	})

	t.Run("only the public HTTP APIs are published, on loopback", func(t *testing.T) {
		// Email recipients follow the notifier's unsubscribe links: its HTTP
		// port is published where RETAIN_NOTIFIER_PUBLIC_URL points; its
		// gRPC API is internal, like campaign's.
		published := map[string][]string{}
		for _, name := range services {
			for _, p := range p.Services[name].Ports {
				published[name] = append(published[name], p.HostIP+":"+p.Published+"->"+strconv.Itoa(int(p.Target)))
				if p.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes %d on %q, not loopback only", name, p.Target, p.HostIP)
				}
			}
		}
		if got := published["notifier"]; !slices.Equal(got, []string{"127.0.0.1:8081->8080"}) {
			t.Errorf("notifier publishes %v, want its HTTP port only (127.0.0.1:8081->8080)", got)
		}
		if url := deref(p.Services["notifier"].Environment["RETAIN_NOTIFIER_PUBLIC_URL"]); url != "http://127.0.0.1:8081" {
			t.Errorf("RETAIN_NOTIFIER_PUBLIC_URL = %q, want the published http://127.0.0.1:8081", url)
		}
		for _, name := range consumers {
			if got := published[name]; len(got) > 0 {
				t.Errorf("%s, an internal service, publishes %v", name, got)
			}
		}
	})

	t.Run("every database a service reads is created", func(t *testing.T) {
		b, err := os.ReadFile("../postgres/init-databases.sh")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range services {
			url := deref(p.Services[name].Environment[databaseEnv(t, name)])
			db := regexp.MustCompile(`/([a-z_]+)\?`).FindStringSubmatch(url)
			if db == nil {
				t.Errorf("%s: no database in %s=%q", name, databaseEnv(t, name), url)
			} else if !regexp.MustCompile(`\b` + db[1] + `\b`).Match(b) {
				t.Errorf("%s reads database %s, which init-databases.sh does not create", name, db[1])
			}
		}
	})
}

// chartContainerEnv: the variables the chart gives a service's container
// (its ConfigMap and env entries), without the pod-only helpers.
func chartContainerEnv(t *testing.T, r *release, name string) map[string]bool {
	t.Helper()
	d := deployment(t, r, name)
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]bool{}
	for k := range configMap(t, r, c.EnvFrom[0].ConfigMapRef.Name).Data {
		env[k] = true
	}
	for _, e := range c.Env {
		if !kubernetesOnlyEnv[e.Name] && e.Name != "OTEL_RESOURCE_ATTRIBUTES" {
			env[e.Name] = true
		}
	}
	return env
}

// TestEnvExampleDocumentsCompose: every variable docker-compose.yml reads is
// in .env.example, and .env.example lists nothing the compose file ignores.
func TestEnvExampleDocumentsCompose(t *testing.T) {
	compose, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(string(compose), -1) {
		used[m[1]] = true
	}
	f, err := os.Open(envExample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]bool{}
	line := regexp.MustCompile(`^#?\s*([A-Z_][A-Z0-9_]*)=`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			documented[m[1]] = true
		}
	}
	for v := range used {
		if !documented[v] {
			t.Errorf("docker-compose.yml reads %s, which .env.example does not document", v)
		}
	}
	for v := range documented {
		if !used[v] && v != "COMPOSE_PROFILES" {
			t.Errorf(".env.example documents %s, which docker-compose.yml does not read", v)
		}
	}
}

// TestNATSConfig: the compose NATS configuration parses as nats-server
// parses it, with JetStream on disk and an fsync before every
// acknowledgement.
func TestNATSConfig(t *testing.T) {
	opts, err := server.ProcessConfigFile("../nats/nats.conf")
	if err != nil {
		t.Fatalf("nats.conf: %v", err)
	}
	if !opts.JetStream {
		t.Error("JetStream is off")
	}
	if !opts.SyncAlways {
		t.Error("sync_interval is not always: acknowledged writes could be lost")
	}
	if opts.StoreDir != "/data" {
		t.Errorf("store_dir = %q, want /data (the compose volume)", opts.StoreDir)
	}
	p := loadCompose(t)
	mounted := false
	for _, v := range p.Services["nats"].Volumes {
		if v.Target == opts.StoreDir && v.Type == types.VolumeTypeVolume {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("the JetStream store %s is not on a named volume", opts.StoreDir)
	}
}

// TestObservabilityWiring: Prometheus scrapes every Retain service's ops
// port, and the collector forwards traces to the compose Jaeger.
func TestObservabilityWiring(t *testing.T) {
	p := loadCompose(t)
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			MetricsPath   string `json:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	readYAML(t, "../prometheus/prometheus.yml", &prom)
	targets := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	for _, name := range retainServices(p) {
		ops := strings.TrimPrefix(deref(p.Services[name].Environment["RETAIN_OPS_ADDR"]), ":")
		if !targets[name+":"+ops] {
			t.Errorf("Prometheus does not scrape %s:%s (targets %v)", name, ops, targets)
		}
	}

	var col struct {
		Receivers map[string]any `json:"receivers"`
		Exporters map[string]struct {
			Endpoint string `json:"endpoint"`
		} `json:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Receivers  []string `json:"receivers"`
				Processors []string `json:"processors"`
				Exporters  []string `json:"exporters"`
			} `json:"pipelines"`
		} `json:"service"`
	}
	readYAML(t, "../otel/collector.yaml", &col)
	traces, ok := col.Service.Pipelines["traces"]
	if !ok || !slices.Contains(traces.Receivers, "otlp") {
		t.Fatalf("no traces pipeline from OTLP: %+v", col.Service.Pipelines)
	}
	for _, e := range traces.Exporters {
		ex, ok := col.Exporters[e]
		if !ok {
			t.Errorf("pipeline exporter %s is not defined", e)
			continue
		}
		host := strings.Split(ex.Endpoint, ":")[0]
		if _, ok := p.Services[host]; !ok {
			t.Errorf("exporter %s sends to %s, which is not a compose service", e, ex.Endpoint)
		}
	}
	// The endpoint .env.example suggests is the collector's OTLP/gRPC port.
	b, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317") {
		t.Error(".env.example does not show how to send traces to the compose collector")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func missing(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func deref(s *string) string {
	if s == nil {
		return "<unset>"
	}
	return *s
}
