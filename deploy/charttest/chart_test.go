package charttest

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/retainhq/retain/platform/config"
)

// allServices are the services values.yaml ships, by component.
var allServices = []string{"campaign", "churnsignal", "ingest", "metrics", "notifier"}

// consumers are the internal services that consume JetStream streams: gRPC
// and ops ports only, a fixed replica count.
var consumers = []string{"campaign", "churnsignal", "metrics"}

// streamConsumers are every service that consumes a JetStream stream: the
// internal consumers and the notifier (which also serves public HTTP). All
// run a fixed replica count, never a CPU-based HPA.
var streamConsumers = append(slices.Clone(consumers), "notifier")

// TestChartRenders renders the chart for each shipped values file (and one
// file that turns every optional part on and overrides the services' values
// blocks), decodes every manifest strictly and checks every workload.
func TestChartRenders(t *testing.T) {
	cases := []struct {
		name  string
		files []string
		// wantServices are the Deployments expected, by component.
		wantServices []string
		check        func(t *testing.T, r *release)
	}{
		{
			name:         "default values",
			wantServices: allServices,
			check: func(t *testing.T, r *release) {
				cm := configMap(t, r, "retain-ingest")
				if got := cm.Data["RETAIN_NATS_URL"]; got != "nats://nats:4222" {
					t.Errorf("RETAIN_NATS_URL = %q, want the external default nats://nats:4222", got)
				}
				if len(r.all("Secret")) != 0 {
					t.Errorf("the defaults create Secrets %v; they should reference existing ones", names(r.all("Secret")))
				}
				for _, want := range []string{"retain-auth", "retain-ingest-database", "retain-metrics-database", "retain-churnsignal-database",
					"retain-campaign-database", "retain-notifier-database", "/retain_metrics'", "/retain_churnsignal'",
					"/retain_campaign'", "/retain_notifier'", "retain tokens keygen", "/v1/events", "Content-Type: application/json",
					"retain-notifier-secrets", "--from-literal=unsubscribeSecret=", "key smtpPassword: RETAIN_NOTIFIER_SMTP_PASSWORD (optional",
					"http://127.0.0.1:8080/v1/unsubscribe", "WARNING"} {
					if !strings.Contains(r.Notes, want) {
						t.Errorf("NOTES.txt does not mention %q:\n%s", want, r.Notes)
					}
				}
				for _, name := range consumers {
					checkConsumer(t, r, name)
				}
				checkNotifier(t, r)
				if _, ok := r.get("Ingress", "retain-notifier"); ok {
					t.Error("the defaults render an Ingress for the notifier (it needs a host)")
				}
				checkEnvDefaults(t, r)
				if got := configMap(t, r, "retain-campaign").Data["RETAIN_CAMPAIGN_NOTIFIER_ADDR"]; got != "retain-notifier:9090" {
					t.Errorf("campaign's RETAIN_CAMPAIGN_NOTIFIER_ADDR = %q, want the notifier Service's gRPC port retain-notifier:9090", got)
				}
				if !egressTo(networkPolicy(t, r, "retain-campaign"), 9090, "app.kubernetes.io/component") {
					t.Error("campaign's NetworkPolicy lets it not reach the notifier's gRPC port")
				}
				// Without tls.secretName the notifier serves plaintext.
				for env, want := range map[string]string{"RETAIN_CAMPAIGN_NOTIFIER_TLS": "false", "RETAIN_CAMPAIGN_NOTIFIER_TLS_CA": ""} {
					if got, ok := configMap(t, r, "retain-campaign").Data[env]; !ok || got != want {
						t.Errorf("campaign's %s = %q (set %v), want %q", env, got, ok, want)
					}
				}
				noNotifier := mustRender(t, nil, "services.notifier.enabled=false")
				for _, env := range []string{"RETAIN_CAMPAIGN_NOTIFIER_ADDR", "RETAIN_CAMPAIGN_NOTIFIER_TLS", "RETAIN_CAMPAIGN_NOTIFIER_TLS_CA"} {
					if got, ok := configMap(t, noNotifier, "retain-campaign").Data[env]; ok {
						t.Errorf("without a notifier, campaign's %s = %q, want it unset", env, got)
					}
				}
				if len(r.all("HorizontalPodAutoscaler")) != 0 {
					t.Errorf("the defaults render HorizontalPodAutoscalers %v", names(r.all("HorizontalPodAutoscaler")))
				}
			},
		},
		{
			name:         "dev values",
			files:        []string{"values-dev.yaml"},
			wantServices: allServices,
			check: func(t *testing.T, r *release) {
				for _, name := range allServices {
					d := deployment(t, r, "retain-"+name)
					if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
						t.Errorf("dev %s replicas = %v, want 1", name, d.Spec.Replicas)
					}
				}
				cm := configMap(t, r, "retain-ingest")
				if got := cm.Data["RETAIN_NATS_URL"]; got != "nats://retain-nats.retain.svc:4222" {
					t.Errorf("RETAIN_NATS_URL = %q, want the bundled NATS", got)
				}
				if got := cm.Data["RETAIN_LOG_FORMAT"]; got != "text" {
					t.Errorf("RETAIN_LOG_FORMAT = %q, want text", got)
				}
				checkNotifier(t, r)
				if got := configMap(t, r, "retain-notifier").Data["RETAIN_NOTIFIER_OUTBOX_DIR"]; !strings.HasPrefix(got, "/tmp/") {
					t.Errorf("dev RETAIN_NOTIFIER_OUTBOX_DIR = %q, want a directory under the writable /tmp", got)
				}
				if strings.Contains(r.Notes, "WARNING") {
					t.Errorf("dev NOTES warn about the unsubscribe URL although values-dev.yaml sets it:\n%s", r.Notes)
				}
				if len(r.all("PodDisruptionBudget")) != 0 {
					t.Error("dev values render a PodDisruptionBudget")
				}
				natsSyncAlways(t, r)
			},
		},
		{
			name:         "production values",
			files:        []string{"values-production.yaml"},
			wantServices: allServices,
			check: func(t *testing.T, r *release) {
				cm := configMap(t, r, "retain-ingest")
				if got := cm.Data["RETAIN_STREAM_REPLICAS"]; got != "3" {
					t.Errorf("RETAIN_STREAM_REPLICAS = %q, want 3", got)
				}
				if got := cm.Data["RETAIN_NATS_URL"]; got != "nats://retain-nats.retain.svc:4222" {
					t.Errorf("RETAIN_NATS_URL = %q, want the bundled NATS", got)
				}
				natsSyncAlways(t, r)
				nats := r.Values["nats"].(map[string]any)["config"].(map[string]any)
				if c := nats["cluster"].(map[string]any); c["enabled"] != true || fmt.Sprint(c["replicas"]) != "3" {
					t.Errorf("production NATS cluster = %v, want enabled with 3 replicas", c)
				}
				if _, ok := r.get("HorizontalPodAutoscaler", "retain-ingest"); !ok {
					t.Error("production values render no HorizontalPodAutoscaler for ingest")
				}
				if _, ok := r.get("ServiceMonitor", "retain-ingest"); !ok {
					t.Error("production values render no ServiceMonitor for ingest")
				}
				if _, ok := r.get("PodDisruptionBudget", "retain-ingest"); !ok {
					t.Error("production values render no PodDisruptionBudget for ingest")
				}
				d := deployment(t, r, "retain-ingest")
				if len(d.Spec.Template.Spec.TopologySpreadConstraints) != 2 {
					t.Errorf("topology spread constraints = %d, want 2 (zone and node)", len(d.Spec.Template.Spec.TopologySpreadConstraints))
				}
				for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
					if c.LabelSelector == nil || c.LabelSelector.MatchLabels["app.kubernetes.io/component"] != "ingest" {
						t.Errorf("spread constraint %s has no selector of the ingest pods: %v", c.TopologyKey, c.LabelSelector)
					}
				}
				np := networkPolicy(t, r, "retain-ingest")
				if !egressTo(np, 5432, "cnpg.io/cluster") {
					t.Errorf("production egress to Postgres is not narrowed to the CloudNativePG pods: %+v", np.Spec.Egress)
				}
				if !egressTo(np, 4222, "app.kubernetes.io/name") {
					t.Errorf("production egress to NATS is not narrowed to the bundled NATS pods: %+v", np.Spec.Egress)
				}
				for _, name := range consumers {
					checkConsumer(t, r, name)
				}
				checkNotifier(t, r)
				checkNotifierIngress(t, r, "links.retain.example.com", true)
				// The providers are on the internet: egress to them does not
				// reach into the cluster or the private network.
				np = networkPolicy(t, r, "retain-notifier")
				for _, port := range []int{587, 465, 443} {
					if !egressToPublicOnly(np, port) {
						t.Errorf("production notifier egress on %d is not limited to public addresses: %+v", port, np.Spec.Egress)
					}
				}
				for _, name := range streamConsumers {
					full := "retain-" + name
					if _, ok := r.get("HorizontalPodAutoscaler", full); ok {
						t.Errorf("production values autoscale %s, a JetStream consumer, on CPU", name)
					}
					if d := deployment(t, r, full); d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
						t.Errorf("production %s replicas = %v, want 3", name, d.Spec.Replicas)
					}
					for _, kind := range []string{"ServiceMonitor", "PodDisruptionBudget"} {
						if _, ok := r.get(kind, full); !ok {
							t.Errorf("production values render no %s for %s", kind, name)
						}
					}
					np := networkPolicy(t, r, full)
					if !egressTo(np, 5432, "cnpg.io/cluster") || !egressTo(np, 4222, "app.kubernetes.io/name") {
						t.Errorf("production egress of %s is not narrowed to the CloudNativePG and NATS pods: %+v", name, np.Spec.Egress)
					}
				}
			},
		},
		{
			name:         "every option on, chart-created secrets, and overridden service blocks",
			files:        []string{"testdata/everything-values.yaml"},
			wantServices: allServices,
			check: func(t *testing.T, r *release) {
				sec, ok := r.get("Secret", "retain-auth")
				if !ok || sec.Obj.(*corev1.Secret).StringData["publicKey"] == "" {
					t.Errorf("no chart-created retain-auth Secret with publicKey: %v", names(r.all("Secret")))
				}
				for _, name := range allServices {
					name := "retain-" + name + "-database"
					if s, ok := r.get("Secret", name); !ok || !strings.HasPrefix(s.Obj.(*corev1.Secret).StringData["url"], "postgres://") {
						t.Errorf("no chart-created Secret %s with the database URL", name)
					}
				}
				if strings.Contains(r.Notes, "create secret generic retain-auth") || strings.Contains(r.Notes, "-database \\") {
					t.Errorf("NOTES.txt asks to create Secrets the chart created:\n%s", r.Notes)
				}
				// The notifier's credentials are never chart-created: the
				// notes name the Secrets to create, the overridden one too.
				for _, want := range []string{"create secret generic retain-notifier-secrets", "create secret generic mail-provider", "--from-literal=password="} {
					if !strings.Contains(r.Notes, want) {
						t.Errorf("NOTES.txt does not mention %q:\n%s", want, r.Notes)
					}
				}
				for _, s := range r.all("Secret") {
					for k := range s.Obj.(*corev1.Secret).StringData {
						if k != "url" && k != "publicKey" {
							t.Errorf("Secret %s holds %s: the chart creates only database URL and public key Secrets", s.Meta.Name, k)
						}
					}
				}
				checkNotifier(t, r)
				checkNotifierIngress(t, r, "links.example.com", true)
				if ref := secretRef(t, r, "retain-notifier", "RETAIN_NOTIFIER_SMTP_PASSWORD"); ref.Name != "mail-provider" || ref.Key != "password" || (ref.Optional != nil && *ref.Optional) {
					t.Errorf("RETAIN_NOTIFIER_SMTP_PASSWORD from %+v, want the overriding mail-provider/password, required", ref)
				}
				checkConsumer(t, r, "campaign")
				ing, ok := r.get("Ingress", "retain-ingest")
				if !ok {
					t.Fatal("no Ingress for ingest")
				}
				rule := ing.Obj.(*networkingv1.Ingress).Spec.Rules[0]
				if rule.Host != "events.example.com" || rule.HTTP.Paths[0].Backend.Service.Port.Name != "http" {
					t.Errorf("ingress rule = %+v, want events.example.com to the http port", rule)
				}
				if _, ok := r.get("Ingress", "retain-metrics"); ok {
					t.Error("an Ingress for metrics, which has no HTTP API")
				}
				metrics := deployment(t, r, "retain-metrics")
				if img := metrics.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/retain/retain-metrics@sha256:"+strings.Repeat("ab", 32) {
					t.Errorf("metrics image = %q", img)
				}
				for _, p := range metrics.Spec.Template.Spec.Containers[0].Ports {
					if p.Name == "http" {
						t.Error("metrics has an http port although ports.http is 0")
					}
				}
				if cm := configMap(t, r, "retain-metrics"); cm.Data["RETAIN_HTTP_ADDR"] != "" {
					t.Errorf("metrics gets RETAIN_HTTP_ADDR %q", cm.Data["RETAIN_HTTP_ADDR"])
				}
				// metrics is internal: gRPC only from the release and the allowed clients.
				np := networkPolicy(t, r, "retain-metrics")
				grpcRule := np.Spec.Ingress[0]
				if len(grpcRule.From) != 2 || grpcRule.From[0].PodSelector.MatchLabels["app.kubernetes.io/instance"] != releaseName {
					t.Errorf("metrics gRPC ingress = %+v, want the release's pods and the grpcClients peer", grpcRule.From)
				}
				if !egressTo(np, 4317, "") {
					t.Errorf("no egress to the OTLP collector although otel.endpoint is set: %+v", np.Spec.Egress)
				}
				// serviceDefaults turn autoscaling on; churnsignal's block keeps
				// it off, metrics' block in this file turns it back on.
				hpa := names(r.all("HorizontalPodAutoscaler"))
				slices.Sort(hpa)
				if !slices.Equal(hpa, []string{"retain-ingest", "retain-metrics"}) {
					t.Errorf("HorizontalPodAutoscalers = %v, want ingest and metrics (churnsignal's block keeps it off)", hpa)
				}
				if cm := configMap(t, r, "retain-metrics"); cm.Data["RETAIN_METRICS_CONSUMERS"] != "4" || cm.Data["RETAIN_METRICS_BATCH_SIZE"] != "500" {
					t.Errorf("metrics env = %v, want the file's RETAIN_METRICS_CONSUMERS over values.yaml's block", cm.Data)
				}
				checkConsumer(t, r, "churnsignal")
				if len(r.all("ServiceMonitor")) != len(allServices) {
					t.Errorf("ServiceMonitors = %v, want one per service", names(r.all("ServiceMonitor")))
				}
				pdb, _ := r.get("PodDisruptionBudget", "retain-metrics")
				if mu := pdb.Obj.(*policyv1.PodDisruptionBudget).Spec; mu.MinAvailable == nil || mu.MinAvailable.String() != "50%" || mu.MaxUnavailable != nil {
					t.Errorf("metrics PDB = %+v, want minAvailable 50%% only", mu)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.files)
			var got []string
			for _, o := range r.all("Deployment") {
				got = append(got, o.Meta.Labels["app.kubernetes.io/component"])
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.wantServices) {
				t.Fatalf("Deployments for %v, want %v", got, tc.wantServices)
			}
			checkNamesAndLabels(t, r)
			for _, o := range r.all("Deployment") {
				t.Run(o.Meta.Name, func(t *testing.T) { checkWorkload(t, r, o.Obj.(*appsv1.Deployment)) })
			}
			checkDefaultDeny(t, r)
			tc.check(t, r)
		})
	}
}

// checkNamesAndLabels: every object has a valid name, the release's labels,
// and lives in the release namespace.
func checkNamesAndLabels(t *testing.T, r *release) {
	t.Helper()
	for _, o := range r.Objects {
		if errs := validation.IsDNS1123Subdomain(o.Meta.Name); len(errs) > 0 {
			t.Errorf("%s %q: invalid name: %v", o.Kind, o.Meta.Name, errs)
		}
		if o.Kind == "Service" {
			if errs := validation.IsDNS1035Label(o.Meta.Name); len(errs) > 0 {
				t.Errorf("Service %q: invalid name: %v", o.Meta.Name, errs)
			}
		}
		if o.Meta.Namespace != namespace {
			t.Errorf("%s %s: namespace %q, want the release's %q", o.Kind, o.Meta.Name, o.Meta.Namespace, namespace)
		}
		checkLabels(t, fmt.Sprintf("%s %s", o.Kind, o.Meta.Name), o.Meta.Labels)
	}
}

func checkLabels(t *testing.T, what string, l map[string]string) {
	t.Helper()
	want := map[string]string{
		"app.kubernetes.io/name":       "retain",
		"app.kubernetes.io/instance":   releaseName,
		"app.kubernetes.io/managed-by": "Helm",
		"app.kubernetes.io/part-of":    "retain",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s: label %s = %q, want %q", what, k, l[k], v)
		}
	}
	for _, k := range []string{"app.kubernetes.io/version", "helm.sh/chart"} {
		if l[k] == "" {
			t.Errorf("%s: no %s label", what, k)
		}
	}
	for k, v := range l {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("%s: label key %q: %v", what, k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("%s: label %s value %q: %v", what, k, v, errs)
		}
	}
}

// checkWorkload checks one service's Deployment and everything wired to it.
func checkWorkload(t *testing.T, r *release, d *appsv1.Deployment) {
	component := d.Labels["app.kubernetes.io/component"]
	if component == "" {
		t.Fatal("no app.kubernetes.io/component label")
	}
	wantSelector := map[string]string{
		"app.kubernetes.io/name":      "retain",
		"app.kubernetes.io/instance":  releaseName,
		"app.kubernetes.io/component": component,
	}
	if !maps.Equal(d.Spec.Selector.MatchLabels, wantSelector) {
		t.Errorf("selector = %v, want %v", d.Spec.Selector.MatchLabels, wantSelector)
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(podLabels) {
		t.Errorf("pod labels %v do not match the selector", podLabels)
	}
	checkLabels(t, "pod template", d.Spec.Template.Labels)

	pod := d.Spec.Template.Spec
	// Pod security.
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	} else {
		if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("pod runAsUser = %v, want a non-root uid", psc.RunAsUser)
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("pod seccompProfile = %v, want RuntimeDefault", psc.SeccompProfile)
		}
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; the services never call the API")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: Kubernetes would inject RETAIN_*_PORT variables")
	}
	if sa, ok := r.get("ServiceAccount", pod.ServiceAccountName); !ok {
		t.Errorf("serviceAccountName %q is not rendered", pod.ServiceAccountName)
	} else if a := sa.Obj.(*corev1.ServiceAccount).AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("ServiceAccount %s automounts its token", pod.ServiceAccountName)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	// Container security.
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities = %+v, want drop ALL and add none", sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container runAsNonRoot is not true")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container seccompProfile = %v, want RuntimeDefault", sc.SeccompProfile)
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged")
	}
	if strings.HasSuffix(c.Image, ":") || !strings.Contains(c.Image, "retain-"+component) {
		t.Errorf("image %q is not retain-%s with a tag or digest", c.Image, component)
	}

	// Resources.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests = %v, want cpu and memory", c.Resources.Requests)
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resource limits = %v, want a memory limit", c.Resources.Limits)
	}

	// Ports and probes.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc"] == 0 || ports["ops"] == 0 {
		t.Fatalf("container ports = %v, want grpc and ops", ports)
	}
	// Readiness on the ops port, as gRPC health (which the kubelet cannot
	// ask over TLS) would say it.
	if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.String() != "ops" {
		t.Errorf("readiness probe = %+v, want GET /readyz on the ops port", rp)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s probe = %+v, want GET /healthz on the ops port", name, p)
		}
	}
	if sp := c.StartupProbe; sp != nil && sp.PeriodSeconds*sp.FailureThreshold < 120 {
		t.Errorf("startup probe allows %ds; migrations waiting for another replica's lock need minutes", sp.PeriodSeconds*sp.FailureThreshold)
	}

	// Environment: settings from the service's ConfigMap, credentials from Secrets.
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil {
		t.Fatalf("envFrom = %+v, want the service's ConfigMap", c.EnvFrom)
	}
	cm := configMap(t, r, c.EnvFrom[0].ConfigMapRef.Name)
	env := map[string]bool{}
	for k := range cm.Data {
		env[k] = true
	}
	for _, e := range c.Env {
		env[e.Name] = true
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			if s, ok := r.get("Secret", ref.SecretKeyRef.Name); ok {
				if _, ok := s.Obj.(*corev1.Secret).StringData[ref.SecretKeyRef.Key]; !ok {
					t.Errorf("%s: Secret %s has no key %s", e.Name, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key)
				}
			} else if !strings.Contains(r.Notes, ref.SecretKeyRef.Name) {
				t.Errorf("%s comes from Secret %s, which is neither rendered nor named in NOTES.txt", e.Name, ref.SecretKeyRef.Name)
			}
		}
		if e.Value != "" && credentialEnv.MatchString(e.Name) {
			t.Errorf("%s is a plain value; credentials must come from a Secret", e.Name)
		}
	}
	for k := range cm.Data {
		if credentialEnv.MatchString(k) {
			t.Errorf("%s is in the ConfigMap; credentials must come from a Secret", k)
		}
	}
	// The variable the binary's -database-url flag reads.
	dbEnv := databaseEnv(t, component)
	for _, v := range []string{"RETAIN_NATS_URL", "RETAIN_AUTH_PUBLIC_KEY", dbEnv, "RETAIN_GRPC_ADDR", "RETAIN_OPS_ADDR"} {
		if !env[v] {
			t.Errorf("%s is not set", v)
		}
	}
	for _, e := range c.Env {
		if e.Name == "RETAIN_AUTH_PUBLIC_KEY" || e.Name == dbEnv {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s does not come from a Secret", e.Name)
			}
		}
	}
	if got, want := cm.Data["RETAIN_GRPC_ADDR"], fmt.Sprintf(":%d", ports["grpc"]); got != want {
		t.Errorf("RETAIN_GRPC_ADDR = %q, want %q (the grpc container port)", got, want)
	}
	if got, want := cm.Data["RETAIN_OPS_ADDR"], fmt.Sprintf(":%d", ports["ops"]); got != want {
		t.Errorf("RETAIN_OPS_ADDR = %q, want %q (the ops container port)", got, want)
	}
	if p, ok := ports["http"]; ok {
		if got, want := cm.Data["RETAIN_HTTP_ADDR"], fmt.Sprintf(":%d", p); got != want {
			t.Errorf("RETAIN_HTTP_ADDR = %q, want %q (the http container port)", got, want)
		}
	}
	if known, ok := knownEnv(t, component); ok {
		for v := range env {
			if !known[v] && !kubernetesOnlyEnv[v] {
				t.Errorf("the chart sets %s, which the %s binary does not read (misspelt?)", v, component)
			}
		}
	} else if exists(fmt.Sprintf("../../services/%s/cmd/%s", component, component)) {
		t.Errorf("%s has a command but is not registered in serviceEnv: its variables are not checked against its flags", component)
	} else {
		t.Logf("%s: no binary registered in serviceEnv; variable names not checked against its flags", component)
	}

	// Graceful shutdown fits in the grace period.
	shutdown, err := time.ParseDuration(cm.Data["RETAIN_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Errorf("RETAIN_SHUTDOWN_TIMEOUT %q: %v", cm.Data["RETAIN_SHUTDOWN_TIMEOUT"], err)
	} else if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not longer than RETAIN_SHUTDOWN_TIMEOUT %s", g, shutdown)
	}

	// The Service in front of it.
	svcObj, ok := r.get("Service", d.Name)
	if !ok {
		t.Fatalf("no Service %s", d.Name)
	}
	svc := svcObj.Obj.(*corev1.Service)
	if !maps.Equal(svc.Spec.Selector, wantSelector) {
		t.Errorf("Service selector = %v, want %v", svc.Spec.Selector, wantSelector)
	}
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok || p.Name != p.TargetPort.String() {
			t.Errorf("Service port %s targets %s, which the container does not expose", p.Name, p.TargetPort.String())
		}
	}

	// Autoscaling, disruption budget, monitoring: all aimed at these pods.
	if h, ok := r.get("HorizontalPodAutoscaler", d.Name); ok {
		hpa := h.Obj.(*autoscalingv2.HorizontalPodAutoscaler)
		if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("HPA targets %+v", hpa.Spec.ScaleTargetRef)
		}
		if d.Spec.Replicas != nil {
			t.Error("the Deployment sets replicas although an HPA owns them (every upgrade would reset the scale)")
		}
	} else if d.Spec.Replicas == nil {
		t.Error("no replicas and no HPA")
	}
	if p, ok := r.get("PodDisruptionBudget", d.Name); ok {
		sel := p.Obj.(*policyv1.PodDisruptionBudget).Spec.Selector
		if sel == nil || !labels.SelectorFromSet(sel.MatchLabels).Matches(podLabels) {
			t.Errorf("PDB selector %v does not select the pods", sel)
		}
	}
	if m, ok := r.get("ServiceMonitor", d.Name); ok {
		sm := m.Obj.(*monitoringv1.ServiceMonitor)
		if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
			t.Errorf("ServiceMonitor selector %v does not select Service %s", sm.Spec.Selector.MatchLabels, svc.Name)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "ops" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints = %+v, want /metrics on the ops port", sm.Spec.Endpoints)
		}
	}

	// Its NetworkPolicy.
	np := networkPolicy(t, r, d.Name)
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(podLabels) {
		t.Errorf("NetworkPolicy selects %v, not the pods", np.Spec.PodSelector.MatchLabels)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("policy types = %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.String() == "" {
				t.Errorf("ingress rule %+v opens every port", rule)
			} else if _, ok := ports[p.Port.String()]; !ok {
				t.Errorf("ingress rule names port %s, which the container does not expose", p.Port.String())
			}
		}
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %+v opens every port", rule)
		}
	}
	opsOpen := false
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 1 && rule.Ports[0].Port.String() == "ops" {
			opsOpen = len(rule.From) > 0
		}
	}
	if !opsOpen {
		t.Error("the ops port is not restricted to the monitoring peers")
	}
	for _, port := range []int{53, 4222, 5432} {
		if !egressTo(np, port, "") {
			t.Errorf("no egress to port %d (DNS, NATS, Postgres)", port)
		}
	}
	for _, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("egress rule %+v opens every port", rule)
		}
	}
}

// checkDefaultDeny: one policy selects every Retain pod of the release and
// allows nothing.
func checkDefaultDeny(t *testing.T, r *release) {
	t.Helper()
	o, ok := r.get("NetworkPolicy", "retain-default-deny")
	if !ok {
		t.Fatal("no default-deny NetworkPolicy")
	}
	np := o.Obj.(*networkingv1.NetworkPolicy)
	if len(np.Spec.Ingress) > 0 || len(np.Spec.Egress) > 0 || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("default deny allows something: %+v", np.Spec)
	}
	for _, d := range r.all("Deployment") {
		pl := labels.Set(d.Obj.(*appsv1.Deployment).Spec.Template.Labels)
		if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(pl) {
			t.Errorf("default deny does not select %s's pods", d.Meta.Name)
		}
	}
	if _, ok := np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"]; ok || len(np.Spec.PodSelector.MatchLabels) == 0 {
		t.Errorf("default deny selects %v; want every Retain pod of the release and nothing else", np.Spec.PodSelector.MatchLabels)
	}
}

// egressTo reports whether a rule allows TCP/UDP port; with a label key,
// only a rule whose peers select pods by that label counts.
func egressTo(np *networkingv1.NetworkPolicy, port int, podLabel string) bool {
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.IntValue() != port {
				continue
			}
			if podLabel == "" {
				return true
			}
			for _, peer := range rule.To {
				if peer.PodSelector != nil {
					if _, ok := peer.PodSelector.MatchLabels[podLabel]; ok {
						return true
					}
				}
			}
		}
	}
	return false
}

// natsSyncAlways: the values handed to the NATS chart keep fsync always.
func natsSyncAlways(t *testing.T, r *release) {
	t.Helper()
	js := r.Values["nats"].(map[string]any)["config"].(map[string]any)["jetstream"].(map[string]any)
	if got := js["merge"].(map[string]any)["sync_interval"]; got != "always" {
		t.Errorf("nats jetstream sync_interval = %v, want always", got)
	}
	if fs := js["fileStore"].(map[string]any); fs["enabled"] != true {
		t.Errorf("nats jetstream fileStore = %v, want enabled", fs)
	}
}

func deployment(t *testing.T, r *release, name string) *appsv1.Deployment {
	t.Helper()
	o, ok := r.get("Deployment", name)
	if !ok {
		t.Fatalf("no Deployment %s", name)
	}
	return o.Obj.(*appsv1.Deployment)
}

func configMap(t *testing.T, r *release, name string) *corev1.ConfigMap {
	t.Helper()
	o, ok := r.get("ConfigMap", name)
	if !ok {
		t.Fatalf("no ConfigMap %s", name)
	}
	return o.Obj.(*corev1.ConfigMap)
}

func networkPolicy(t *testing.T, r *release, name string) *networkingv1.NetworkPolicy {
	t.Helper()
	o, ok := r.get("NetworkPolicy", name)
	if !ok {
		t.Fatalf("no NetworkPolicy %s", name)
	}
	return o.Obj.(*networkingv1.NetworkPolicy)
}

func names(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Meta.Name)
	}
	return out
}

// checkConsumer: an internal RETAIN_EVENTS consumer has no public HTTP API,
// no Ingress, and takes gRPC only from the release and the allowed clients.
func checkConsumer(t *testing.T, r *release, name string) {
	t.Helper()
	full := "retain-" + name
	d := deployment(t, r, full)
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == "http" {
			t.Errorf("%s exposes an http port; it has no public HTTP API", name)
		}
	}
	if cm := configMap(t, r, full); cm.Data["RETAIN_HTTP_ADDR"] != "" {
		t.Errorf("%s gets RETAIN_HTTP_ADDR %q", name, cm.Data["RETAIN_HTTP_ADDR"])
	}
	if _, ok := r.get("Ingress", full); ok {
		t.Errorf("an Ingress for %s, which has no HTTP API", name)
	}
	np := networkPolicy(t, r, full)
	grpc := np.Spec.Ingress[0]
	if len(grpc.Ports) != 1 || grpc.Ports[0].Port.String() != "grpc" || len(grpc.From) == 0 ||
		grpc.From[0].PodSelector == nil || grpc.From[0].PodSelector.MatchLabels["app.kubernetes.io/instance"] != releaseName {
		t.Errorf("%s gRPC ingress = %+v, want the grpc port from the release's pods (and grpcClients)", name, grpc)
	}
}

// TestEveryCommandDeployed: every service with a command
// (services/<name>/cmd/<name>, what `make images` builds) has its flags
// registered in serviceEnv, a block in values.yaml and a compose service.
func TestEveryCommandDeployed(t *testing.T) {
	cmds, err := filepath.Glob("../../services/*/cmd/*")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range cmds {
		if filepath.Base(c) == filepath.Base(filepath.Dir(filepath.Dir(c))) {
			want = append(want, filepath.Base(c))
		}
	}
	slices.Sort(want)
	if !slices.Equal(want, allServices) {
		t.Errorf("services with a command = %v, but the tests expect %v (allServices)", want, allServices)
	}
	r := mustRender(t, nil)
	blocks := r.Values["services"].(map[string]any)
	p := loadCompose(t)
	for _, name := range want {
		if _, ok := serviceEnv[name]; !ok {
			t.Errorf("%s: register its flags in serviceEnv", name)
		}
		if _, ok := blocks[name]; !ok {
			t.Errorf("%s: no block under services in values.yaml", name)
		}
		if _, ok := p.Services[name]; !ok {
			t.Errorf("%s: no service in docker-compose.yml", name)
		}
	}
}

// credentialEnv are variable names that hold credentials: never in a
// ConfigMap or a plain env value (the chart refuses them in env too).
var credentialEnv = credentialName{regexp.MustCompile(`(DATABASE_URL|KEY|_SECRET|_PASSWORD|_AUTH|_TOKEN)$`)}

// credentialName matches credential variable names, except those that
// hold the path of a mounted file rather than the credential itself.
type credentialName struct{ re *regexp.Regexp }

func (c credentialName) MatchString(name string) bool {
	switch name {
	case "RETAIN_NATS_TLS_KEY", "RETAIN_NATS_NKEY": // paths of mounted files
		return false
	}
	return c.re.MatchString(name)
}

// notifierSecrets are the notifier's credentials, each from a Secret; only
// the unsubscribe secret is required for the pod to start.
var notifierSecrets = map[string]bool{
	"RETAIN_NOTIFIER_UNSUBSCRIBE_SECRET": true,
	"RETAIN_NOTIFIER_SMTP_PASSWORD":      false,
	"RETAIN_NOTIFIER_SMS_AUTH":           false,
	"RETAIN_NOTIFIER_WEBHOOK_SECRET":     false,
}

// unsubscribePath is the notifier's public HTTP route, read from its source
// (an internal package the tests cannot import), so a renamed route fails
// here rather than in recipients' mail clients.
func unsubscribePath(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../services/notifier/internal/app/app.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`UnsubscribePath\s*=\s*"([^"]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no UnsubscribePath constant in services/notifier/internal/app/app.go")
	}
	return string(m[1])
}

// secretRef is where a service's container reads a variable from; it fails
// the test unless that is a Secret.
func secretRef(t *testing.T, r *release, name, env string) *corev1.SecretKeySelector {
	t.Helper()
	for _, e := range deployment(t, r, name).Spec.Template.Spec.Containers[0].Env {
		if e.Name == env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
				t.Fatalf("%s: %s = %+v, want a secretKeyRef", name, env, e)
			}
			return e.ValueFrom.SecretKeyRef
		}
	}
	t.Fatalf("%s: %s is not set", name, env)
	return nil
}

// checkNotifier: the notifier reads its credentials from Secrets (never
// from its ConfigMap), serves its HTTP port to the public and gRPC only
// inside (the release and grpcClients), can reach the email, SMS and
// webhook providers, and runs a fixed replica count.
func checkNotifier(t *testing.T, r *release) {
	t.Helper()
	const full = "retain-notifier"
	d := deployment(t, r, full)
	cm := configMap(t, r, full)
	for env, required := range notifierSecrets {
		ref := secretRef(t, r, full, env)
		if optional := ref.Optional != nil && *ref.Optional; ref.Name == "retain-notifier-secrets" && optional == required {
			t.Errorf("%s from Secret %s: optional = %v; want only the unsubscribe secret required", env, ref.Name, optional)
		}
		if _, ok := cm.Data[env]; ok {
			t.Errorf("%s is in the ConfigMap %s", env, full)
		}
	}
	if _, ok := r.get("Secret", "retain-notifier-secrets"); ok {
		t.Error("the chart creates retain-notifier-secrets; credentials come from existing Secrets only")
	}
	http := int32(0)
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == "http" {
			http = p.ContainerPort
		}
	}
	if http == 0 || cm.Data["RETAIN_HTTP_ADDR"] != fmt.Sprintf(":%d", http) {
		t.Errorf("notifier http port %d, RETAIN_HTTP_ADDR %q: want the unsubscribe endpoint served", http, cm.Data["RETAIN_HTTP_ADDR"])
	}
	np := networkPolicy(t, r, full)
	for _, rule := range np.Spec.Ingress {
		var ports []string
		for _, p := range rule.Ports {
			ports = append(ports, p.Port.String())
		}
		switch {
		case slices.Contains(ports, "grpc"):
			if len(ports) != 1 || len(rule.From) == 0 || rule.From[0].PodSelector == nil ||
				rule.From[0].PodSelector.MatchLabels["app.kubernetes.io/instance"] != releaseName {
				t.Errorf("notifier gRPC ingress = %+v, want the grpc port from the release's pods (and grpcClients) only", rule)
			}
		case slices.Contains(ports, "http"):
			if len(ports) != 1 {
				t.Errorf("notifier public ingress opens %v, want http only", ports)
			}
			publicFrom, _ := r.Values["networkPolicy"].(map[string]any)["publicFrom"].([]any)
			if len(rule.From) != len(publicFrom) {
				t.Errorf("notifier http ingress from %+v, want networkPolicy.publicFrom %v", rule.From, publicFrom)
			}
		}
	}
	for _, port := range []int{587, 465, 443} {
		if !egressTo(np, port, "") {
			t.Errorf("notifier has no egress on %d (SMTP submission, HTTPS to the SMS provider and webhooks): %+v", port, np.Spec.Egress)
		}
	}
	if _, ok := r.get("HorizontalPodAutoscaler", full); ok {
		t.Error("the notifier, a JetStream consumer, is autoscaled on CPU")
	}
	if d.Spec.Replicas == nil {
		t.Error("the notifier has no fixed replica count")
	}
}

// checkNotifierIngress: the notifier's Ingress routes exactly the
// unsubscribe route to its http port, and the links in emails are built on
// the Ingress's URL.
func checkNotifierIngress(t *testing.T, r *release, host string, tls bool) {
	t.Helper()
	o, ok := r.get("Ingress", "retain-notifier")
	if !ok {
		t.Fatal("no Ingress for the notifier's unsubscribe links")
	}
	ing := o.Obj.(*networkingv1.Ingress)
	if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != host {
		t.Fatalf("notifier ingress rules = %+v, want host %s", ing.Spec.Rules, host)
	}
	paths := ing.Spec.Rules[0].HTTP.Paths
	want := unsubscribePath(t)
	if len(paths) != 1 || paths[0].Path != want || paths[0].PathType == nil || *paths[0].PathType != networkingv1.PathTypeExact ||
		paths[0].Backend.Service.Name != "retain-notifier" || paths[0].Backend.Service.Port.Name != "http" {
		t.Errorf("notifier ingress paths = %+v, want only %s (Exact) to retain-notifier's http port", paths, want)
	}
	if tls != (len(ing.Spec.TLS) == 1 && slices.Contains(ing.Spec.TLS[0].Hosts, host)) {
		t.Errorf("notifier ingress TLS = %+v, want TLS %v for %s", ing.Spec.TLS, tls, host)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	if got, want := configMap(t, r, "retain-notifier").Data["RETAIN_NOTIFIER_PUBLIC_URL"], scheme+"://"+host; got != want {
		t.Errorf("RETAIN_NOTIFIER_PUBLIC_URL = %q, want the Ingress's %q (unsubscribe links)", got, want)
	}
	if !strings.Contains(r.Notes, scheme+"://"+host+want) {
		t.Errorf("NOTES.txt does not show the unsubscribe URL %s:\n%s", scheme+"://"+host+want, r.Notes)
	}
}

// egressToPublicOnly reports whether every rule allowing port sends it to
// ipBlocks that exclude the private ranges (and there is one).
func egressToPublicOnly(np *networkingv1.NetworkPolicy, port int) bool {
	found := false
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.IntValue() != port {
				continue
			}
			if len(rule.To) == 0 {
				return false
			}
			for _, peer := range rule.To {
				if peer.IPBlock == nil || !slices.Contains(peer.IPBlock.Except, "10.0.0.0/8") ||
					!slices.Contains(peer.IPBlock.Except, "172.16.0.0/12") || !slices.Contains(peer.IPBlock.Except, "192.168.0.0/16") {
					return false
				}
			}
			found = true
		}
	}
	return found
}

// checkEnvDefaults: with the default values, each service's own settings
// (RETAIN_<SERVICE>_*, from its values block) carry the defaults of the
// flags its binary registers, and every such setting is given: in the
// ConfigMap, from a Secret, or derived (derivedEnv). So a default changed
// or a flag added in a service shows up here.
func checkEnvDefaults(t *testing.T, r *release) {
	t.Helper()
	derived := derivedEnv
	for _, name := range allServices {
		fs, ok := serviceFlags(t, name)
		if !ok {
			continue
		}
		full := "retain-" + name
		cm := configMap(t, r, full)
		fromSecret := map[string]bool{}
		for _, e := range deployment(t, r, full).Spec.Template.Spec.Containers[0].Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				fromSecret[e.Name] = true
			}
		}
		dbEnv := databaseEnv(t, name)
		prefix := strings.TrimSuffix(dbEnv, "DATABASE_URL")
		fs.VisitAll(func(f *flag.Flag) {
			env := config.Env(f)
			if !strings.HasPrefix(env, prefix) || env == dbEnv {
				return
			}
			got, inConfigMap := cm.Data[env]
			switch {
			case fromSecret[env]:
				if inConfigMap {
					t.Errorf("%s: %s is in the ConfigMap and from a Secret", name, env)
				}
			case derived[env]:
			case !inConfigMap:
				t.Errorf("%s: %s (flag -%s, default %q) is not in its values block", name, env, f.Name, f.DefValue)
			case !sameSetting(got, f.DefValue):
				t.Errorf("%s: values.yaml sets %s=%q, but the service's default is %q", name, env, got, f.DefValue)
			}
		})
	}
}

// derivedEnv are the settings the chart derives from the release rather
// than from a values block: the notifier's public URL from its Ingress
// (ingress.urlEnv), and the notifier's in-cluster gRPC address for the
// campaign service's template check.
var derivedEnv = map[string]bool{"RETAIN_NOTIFIER_PUBLIC_URL": true, "RETAIN_CAMPAIGN_NOTIFIER_ADDR": true}

// sameSetting compares a values.yaml setting with a flag default, as
// durations when both parse as durations (1h and 1h0m0s are the same).
func sameSetting(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	if errA == nil && errB == nil {
		return da == db
	}
	ia, errA := strconv.Atoi(a)
	ib, errB := strconv.Atoi(b)
	return errA == nil && errB == nil && ia == ib
}
