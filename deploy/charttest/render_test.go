package charttest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/services/ingest"
	"github.com/retainhq/retain/services/metrics"
)

const (
	chartDir    = "../../charts/retain"
	releaseName = "retain"
	namespace   = "retain"
)

// kubeVersion is what the chart is rendered for: its kubeVersion constraint
// (>= 1.27, native gRPC probes) must admit it.
var kubeVersion = &chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}

// object is one rendered manifest, strictly decoded.
type object struct {
	Source string // template that produced it
	Kind   string
	Meta   metav1.ObjectMeta
	Obj    any // *appsv1.Deployment, *corev1.Service, ...
}

// release is one rendering of the chart.
type release struct {
	Name    string // the release's name
	Objects []object
	Notes   string
	Values  map[string]any // the chart's defaults with the given values over them
	// NATSValues are Values["nats"] as the NATS chart reads them: every
	// {$tplYaml: template} rendered (natsTplYaml).
	NATSValues map[string]any
}

func (r *release) all(kind string) []object {
	var out []object
	for _, o := range r.Objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r *release) get(kind, name string) (object, bool) {
	for _, o := range r.Objects {
		if o.Kind == kind && o.Meta.Name == name {
			return o, true
		}
	}
	return object{}, false
}

// decoders are the kinds the chart may render, each with the Go type of
// its API version. A kind missing here fails the test: add its type rather
// than skip the strict check.
var decoders = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":            func() any { return &networkingv1.Ingress{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
}

var (
	loadOnce  sync.Once
	loadedErr error
	loaded    *chart.Chart
)

// loadChart loads the chart directory once. The NATS dependency is declared
// in Chart.yaml but fetched only by `helm dependency build` (network), so
// charts/ is usually empty: the SDK renders the chart's own templates
// either way, and the NATS chart's manifests are then simply absent.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	loadOnce.Do(func() { loaded, loadedErr = loader.Load(chartDir) })
	if loadedErr != nil {
		t.Fatalf("load chart: %v", loadedErr)
	}
	return loaded
}

// render renders the chart as `helm install --dry-run` would, with the
// values files (relative to the chart directory, or testdata/...) and
// --set style overrides, and strictly decodes every manifest.
func render(t *testing.T, files []string, set ...string) (*release, error) {
	t.Helper()
	return renderRelease(t, releaseName, files, set...)
}

// renderRelease is render for a release of another name.
func renderRelease(t *testing.T, name string, files []string, set ...string) (*release, error) {
	t.Helper()
	ch := loadChart(t)
	var paths []string
	for _, f := range files {
		if strings.HasPrefix(f, "testdata/") {
			paths = append(paths, f)
		} else {
			paths = append(paths, filepath.Join(chartDir, f))
		}
	}
	vals, err := (&values.Options{ValueFiles: paths, Values: set}).MergeValues(getter.Providers{})
	if err != nil {
		t.Fatalf("read values %v: %v", files, err)
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = name
	inst.Namespace = namespace
	inst.KubeVersion = kubeVersion
	rel, err := inst.RunWithContext(context.Background(), ch, vals)
	if err != nil {
		return nil, err
	}
	merged, err := chartutil.CoalesceValues(ch, rel.Config)
	if err != nil {
		t.Fatalf("coalesce values: %v", err)
	}
	natsValues, _ := merged["nats"].(map[string]any)
	out := &release{Name: name, Notes: rel.Info.Notes, Values: merged, NATSValues: natsTplYaml(t, name, natsValues, natsValues).(map[string]any)}
	manifests := releaseutil.SplitManifests(rel.Manifest)
	keys := make([]string, 0, len(manifests))
	for k := range manifests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		doc := manifests[k]
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("manifest is not YAML: %v\n%s", err, doc)
		}
		if head.Kind == "" {
			continue // a template that rendered to nothing but comments
		}
		source := ""
		if m := regexp.MustCompile(`(?m)^# Source: (.*)$`).FindStringSubmatch(doc); m != nil {
			source = m[1]
		}
		newObj, ok := decoders[head.APIVersion+"/"+head.Kind]
		if !ok {
			t.Fatalf("%s renders %s %s, which the test cannot decode strictly: add its API type to decoders", source, head.APIVersion, head.Kind)
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %s does not decode strictly into the Kubernetes type (unknown or mistyped field?): %v\n%s", source, head.Kind, err, doc)
		}
		meta := metaOf(obj)
		out.Objects = append(out.Objects, object{Source: source, Kind: head.Kind, Meta: meta, Obj: obj})
	}
	return out, nil
}

// natsTplYaml is v, a part of the values the NATS chart gets (all of
// them: natsValues), with every map of the one key $tplYaml replaced as
// the NATS chart (1.x) replaces it: its string rendered as a template of
// the NATS chart, in release name, then read as YAML. The NATS chart is
// not fetched offline, so a chart named nats holding only that template
// renders it, with Helm's own engine.
func natsTplYaml(t *testing.T, name string, natsValues map[string]any, v any) any {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if tpl, ok := v["$tplYaml"].(string); ok && len(v) == 1 {
			ch := &chart.Chart{
				Metadata:  &chart.Metadata{APIVersion: "v2", Name: "nats", Version: "1.3.0"},
				Templates: []*chart.File{{Name: "templates/value", Data: []byte(tpl)}},
			}
			vals, err := chartutil.ToRenderValues(ch, natsValues, chartutil.ReleaseOptions{Name: name, Namespace: namespace}, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := engine.Render(ch, vals)
			if err != nil {
				t.Fatalf("the NATS chart would not render %q: %v", tpl, err)
			}
			var res any
			if err := yaml.Unmarshal([]byte(out["nats/templates/value"]), &res); err != nil {
				t.Fatalf("%q renders to %q, not YAML: %v", tpl, out["nats/templates/value"], err)
			}
			return res
		}
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = natsTplYaml(t, name, natsValues, e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = natsTplYaml(t, name, natsValues, e)
		}
		return l
	}
	return v
}

func metaOf(obj any) metav1.ObjectMeta {
	if o, ok := obj.(interface{ GetObjectMeta() metav1.Object }); ok {
		m := o.GetObjectMeta()
		return metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), Labels: m.GetLabels(), Annotations: m.GetAnnotations()}
	}
	panic(fmt.Sprintf("%T has no object meta", obj))
}

func mustRender(t *testing.T, files []string, set ...string) *release {
	t.Helper()
	r, err := render(t, files, set...)
	if err != nil {
		t.Fatalf("render with %v %v: %v", files, set, err)
	}
	return r
}

// serviceEnv registers, per service with a command (services/<name>/cmd/<name>),
// the flags its binary parses: the service's own DefaultConfig and
// RegisterFlags, exactly as its main does, so a renamed or misspelt variable
// fails here. TestEveryCommandRegistered keeps this complete; a service
// whose module the tests cannot import registers itself from its own file
// (env_<service>_test.go) so that it can be dropped alone.
var serviceEnv = map[string]func(fs *flag.FlagSet){
	"ingest":  func(fs *flag.FlagSet) { c := ingest.DefaultConfig(); c.RegisterFlags(fs) },
	"metrics": func(fs *flag.FlagSet) { c := metrics.DefaultConfig(); c.RegisterFlags(fs) },
}

// knownEnv lists the environment variables a service's binary reads: every
// flag bound to a RETAIN_* variable plus the OpenTelemetry variables the
// telemetry package reads itself. ok is false for a service not in
// serviceEnv.
func knownEnv(t *testing.T, service string) (known map[string]bool, ok bool) {
	t.Helper()
	fs, ok := serviceFlags(t, service)
	if !ok {
		return nil, false
	}
	known = map[string]bool{
		"OTEL_EXPORTER_OTLP_ENDPOINT": true,
		"OTEL_RESOURCE_ATTRIBUTES":    true,
	}
	for _, name := range config.EnvNames(fs) {
		known[name] = true
	}
	return known, true
}

// databaseEnv is the variable a service's binary reads its database URL
// from: the one its -database-url flag is bound to (e.g. churnsignal reads
// RETAIN_CHURN_DATABASE_URL, not RETAIN_CHURNSIGNAL_DATABASE_URL). For a
// service not in serviceEnv it is the chart's default name.
func databaseEnv(t *testing.T, service string) string {
	t.Helper()
	fs, ok := serviceFlags(t, service)
	if !ok {
		return "RETAIN_" + strings.ToUpper(service) + "_DATABASE_URL"
	}
	env := config.Env(fs.Lookup("database-url"))
	if env == "" {
		t.Fatalf("%s has no -database-url flag bound to a variable", service)
	}
	return env
}

func serviceFlags(t *testing.T, service string) (*flag.FlagSet, bool) {
	t.Helper()
	register, ok := serviceEnv[service]
	if !ok {
		return nil, false
	}
	fs := flag.NewFlagSet(service, flag.ContinueOnError)
	register(fs)
	return fs, true
}

// kubernetesOnlyEnv are set by the chart for the pod itself (to build
// OTEL_RESOURCE_ATTRIBUTES), not read by the services.
var kubernetesOnlyEnv = map[string]bool{"POD_NAME": true, "POD_NAMESPACE": true}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
