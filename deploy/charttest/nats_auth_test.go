package charttest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/service"
)

// natsPodLabels are the labels of the bundled NATS's server pods, as the
// NATS chart (1.x, nats.selectorLabels) sets them for release "retain".
var natsPodLabels = map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": releaseName, "app.kubernetes.io/component": "nats"}

// TestBundledNATSLogin: with the bundled NATS every service logs in as
// its own user, and the server those values configure takes exactly these
// logins. The server is a real nats-server configured as the NATS chart
// would configure it: the authorization of nats.config.merge, formatted as
// the chart formats its config file, the passwords in its environment
// from nats.container.env; each service connects with the settings its
// pod gets (ConfigMap and Secrets).
func TestBundledNATSLogin(t *testing.T) {
	for _, file := range []string{"values-dev.yaml", "values-production.yaml"} {
		t.Run(file, func(t *testing.T) {
			r := mustRender(t, []string{file})
			sec, ok := r.get("Secret", "retain-nats-auth")
			if !ok {
				t.Fatalf("no chart-created Secret retain-nats-auth: %v", names(r.all("Secret")))
			}
			passwords := sec.Obj.(*corev1.Secret).StringData
			url, _ := startBundledNATS(t, r)
			for _, name := range allServices {
				full := "retain-" + name
				if got := configMap(t, r, full).Data["RETAIN_NATS_USER"]; got != name {
					t.Errorf("%s: RETAIN_NATS_USER = %q, want %q", name, got, name)
				}
				if ref := secretRef(t, r, full, "RETAIN_NATS_PASSWORD"); ref.Name != "retain-nats-auth" || ref.Key != name {
					t.Errorf("%s: RETAIN_NATS_PASSWORD from %s/%s, want retain-nats-auth/%s", name, ref.Name, ref.Key, name)
				}
				if p := passwords[name]; len(p) < 32 || !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]+$`).MatchString(p) {
					t.Errorf("%s's generated password has %d characters, want 32 or more letters and digits starting with a letter", name, len(p))
				}
				env := podEnv(t, r, full)
				env["RETAIN_NATS_URL"] = url
				if err := connectWith(t, name, env); err != nil {
					t.Errorf("%s cannot log in to the bundled NATS: %v", name, err)
				}
			}
			// Anyone else is refused: no login, or a known user with another's password.
			if err := connectWith(t, "ingest", map[string]string{"RETAIN_NATS_URL": url}); err == nil || !strings.Contains(err.Error(), "refused the login") {
				t.Errorf("a client without a login: %v, want refused", err)
			}
			wrong := map[string]string{"RETAIN_NATS_URL": url, "RETAIN_NATS_USER": "notifier", "RETAIN_NATS_PASSWORD": passwords["campaign"]}
			if err := connectWith(t, "notifier", wrong); err == nil || !strings.Contains(err.Error(), "refused the login") {
				t.Errorf("the notifier user with campaign's password: %v, want refused", err)
			}
		})
	}
}

// TestNATSAuthSecretPerRelease: two releases in one namespace have a
// NATS login Secret each, <fullname>-nats-auth, which the services and
// the bundled NATS (through the NATS chart's $tplYaml) both read, and with
// which every service logs in. A name given in natsAuth.secretName is
// kept, once the NATS values name it too.
func TestNATSAuthSecretPerRelease(t *testing.T) {
	secretOf := func(r *release, fullname string) string {
		t.Helper()
		var names []string
		for _, s := range r.all("Secret") {
			names = append(names, s.Meta.Name)
		}
		if len(names) != 1 {
			t.Fatalf("release %s renders Secrets %v, want the NATS logins only", r.Name, names)
		}
		for _, name := range allServices {
			if ref := secretRef(t, r, fullname+"-"+name, "RETAIN_NATS_PASSWORD"); ref.Name != names[0] {
				t.Errorf("release %s: %s reads its password from %s, the chart creates %s", r.Name, name, ref.Name, names[0])
			}
		}
		for v, e := range r.NATSValues["container"].(map[string]any)["env"].(map[string]any) {
			if ref := e.(map[string]any)["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any); ref["name"] != names[0] {
				t.Errorf("release %s: the bundled NATS reads %s from Secret %v, the chart creates %s", r.Name, v, ref["name"], names[0])
			}
		}
		return names[0]
	}
	seen := map[string]string{}
	for _, tc := range []struct{ release, fullname, secret string }{
		{"retain", "retain", "retain-nats-auth"}, // as before: an upgrade keeps its passwords
		{"shop", "shop-retain", "shop-retain-nats-auth"},
		{"retain-staging", "retain-staging", "retain-staging-nats-auth"},
	} {
		r, err := renderRelease(t, tc.release, []string{"values-dev.yaml"})
		if err != nil {
			t.Fatalf("release %s: %v", tc.release, err)
		}
		if got := secretOf(r, tc.fullname); got != tc.secret {
			t.Errorf("release %s: Secret %s, want %s", tc.release, got, tc.secret)
		} else if other, ok := seen[got]; ok {
			t.Errorf("releases %s and %s share Secret %s", tc.release, other, got)
		}
		seen[tc.secret] = tc.release
		url, _ := startBundledNATS(t, r)
		for _, name := range allServices {
			env := podEnv(t, r, tc.fullname+"-"+name)
			env["RETAIN_NATS_URL"] = url
			if err := connectWith(t, name, env); err != nil {
				t.Errorf("release %s: %s cannot log in to the bundled NATS: %v", tc.release, name, err)
			}
		}
	}

	// Release shop keeping the Secret it had (upgraded from a chart
	// whose default was retain-nats-auth): both sides name it.
	set := []string{"natsAuth.secretName=retain-nats-auth"}
	for _, name := range allServices {
		set = append(set, "nats.container.env.RETAIN_NATS_PASSWORD_"+strings.ToUpper(name)+".valueFrom.secretKeyRef.name=retain-nats-auth")
	}
	r, err := renderRelease(t, "shop", []string{"values-dev.yaml"}, set...)
	if err != nil {
		t.Fatal(err)
	}
	if got := secretOf(r, "shop-retain"); got != "retain-nats-auth" {
		t.Errorf("natsAuth.secretName retain-nats-auth: Secret %s", got)
	}
	_, err = renderRelease(t, "shop", []string{"values-dev.yaml"}, set[0])
	if err == nil || !strings.Contains(err.Error(), "Set natsAuth.secretName to shop-retain-nats-auth, or the secretKeyRef name of every nats.container.env.RETAIN_NATS_PASSWORD_* to retain-nats-auth") {
		t.Errorf("natsAuth.secretName alone, the NATS values naming another Secret: %v, want refused with both names", err)
	}
}

// startBundledNATS starts a nats-server with JetStream from the values r
// passes to the NATS chart and returns its URL and the server. The NATS chart (1.x) writes its config
// as JSON (toPrettyRawJson) and unquotes every "<< ... >>" string
// (nats.formatConfig), which is how a value becomes a variable that NATS
// resolves from its environment. That rendering is reproduced here, since
// the NATS chart itself is not fetched offline.
func startBundledNATS(t *testing.T, r *release) (string, *server.Server) {
	t.Helper()
	nats := r.NATSValues
	merge := nats["config"].(map[string]any)["merge"]
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(merge); err != nil {
		t.Fatal(err)
	}
	conf := regexp.MustCompile(`"<<\s+(.*)\s+>>"`).ReplaceAllString(b.String(), "${1}")
	for name, v := range nats["container"].(map[string]any)["env"].(map[string]any) {
		ref := v.(map[string]any)["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any)
		t.Setenv(name, secretValue(t, r, ref["name"].(string), ref["key"].(string)))
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("the NATS configuration of the values does not parse: %v\n%s", err, conf)
	}
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	// The NATS chart writes the jetstream block from config.jetstream.
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return "nats://" + srv.Addr().String(), srv
}

// secretValue is a key of a Secret the chart renders.
func secretValue(t *testing.T, r *release, name, key string) string {
	t.Helper()
	s, ok := r.get("Secret", name)
	if !ok {
		t.Fatalf("Secret %s is not rendered", name)
	}
	v, ok := s.Obj.(*corev1.Secret).StringData[key]
	if !ok {
		t.Fatalf("Secret %s has no key %s", name, key)
	}
	return v
}

// podEnv is the environment a Deployment's container gets: its ConfigMap,
// plain values, and the keys of the Secrets the chart renders.
func podEnv(t *testing.T, r *release, name string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, v := range configMap(t, r, name).Data {
		env[k] = v
	}
	for _, e := range deployment(t, r, name).Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			if _, ok := r.get("Secret", e.ValueFrom.SecretKeyRef.Name); ok {
				env[e.Name] = secretValue(t, r, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
		}
	}
	return env
}

// connectWith connects as service does with the RETAIN_NATS_* settings
// of env (bus.Config's flags, which every service registers).
func connectWith(t *testing.T, svc string, env map[string]string) error {
	t.Helper()
	c, err := parseNATSConfig(svc, env)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, c, nil)
	if err != nil {
		return err
	}
	b.Close()
	return nil
}

// parseNATSConfig is the bus.Config service reads from the RETAIN_NATS_*
// settings of env: its defaults (the connection's name, which names its
// inboxes) with the settings over them.
func parseNATSConfig(svc string, env map[string]string) (bus.Config, error) {
	c := service.DefaultConfig(svc).NATS
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	c.RegisterFlags(fs)
	err := config.Parse(fs, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return c, err
}

// natsConfig is parseNATSConfig, failing the test on an error.
func natsConfig(t *testing.T, svc string, env map[string]string) bus.Config {
	t.Helper()
	c, err := parseNATSConfig(svc, env)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBundledNATSNetworkPolicy: the bundled NATS's client port is open to
// the release's Retain pods only (and nats-box and the extra clients when
// configured), its cluster port to the NATS servers, and the exporter's
// port to monitoring; nothing else reaches the NATS pods.
func TestBundledNATSNetworkPolicy(t *testing.T) {
	r := mustRender(t, []string{"values-production.yaml"}, "nats.promExporter.enabled=true", "nats.natsBox.enabled=true",
		"networkPolicy.nats.clients[0].podSelector.matchLabels.retain\\.io/nats-client=true")
	np := networkPolicy(t, r, "retain-nats")
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(natsPodLabels)) {
		t.Errorf("the policy selects %v, not the NATS server pods %v", np.Spec.PodSelector.MatchLabels, natsPodLabels)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes = %v, want Ingress", np.Spec.PolicyTypes)
	}
	retainPod := deployment(t, r, "retain-ingest").Spec.Template.Labels
	natsBox := map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": releaseName, "app.kubernetes.io/component": "nats-box"}
	for _, tc := range []struct {
		port    int
		pod     map[string]string
		allowed bool
	}{
		{4222, retainPod, true},
		{4222, natsBox, true},
		{4222, map[string]string{"retain.io/nats-client": "true"}, true},
		{4222, map[string]string{"app": "anything-else"}, false},
		{4222, natsPodLabels, false},
		{6222, natsPodLabels, true},
		{6222, retainPod, false},
		{8222, retainPod, false},
	} {
		if got := ingressAllows(np, tc.port, tc.pod, nil); got != tc.allowed {
			t.Errorf("port %d from a pod %v of the namespace: allowed %v, want %v", tc.port, tc.pod, got, tc.allowed)
		}
	}
	monitoring := map[string]string{"kubernetes.io/metadata.name": "monitoring"}
	if !ingressAllows(np, 7777, map[string]string{}, monitoring) || ingressAllows(np, 4222, map[string]string{}, monitoring) {
		t.Error("the monitoring namespace should reach the exporter's port 7777 and not the client port")
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Errorf("rule %+v opens the NATS pods to any peer or port", rule)
		}
	}

	// Without the exporter, nats-box or a cluster, their ports stay closed.
	np = networkPolicy(t, mustRender(t, []string{"values-dev.yaml"}), "retain-nats")
	for _, port := range []int{6222, 7777} {
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port.IntValue() == port {
					t.Errorf("values-dev.yaml opens port %d of the NATS pods", port)
				}
			}
		}
	}
	if ingressAllows(np, 4222, natsBox, nil) {
		t.Error("nats-box, disabled, may reach the client port")
	}
	for _, set := range [][]string{{"networkPolicy.enabled=false"}, {"nats.enabled=false"}} {
		if _, ok := mustRender(t, []string{"values-dev.yaml"}, set...).get("NetworkPolicy", "retain-nats"); ok {
			t.Errorf("a NetworkPolicy for the bundled NATS with %v", set)
		}
	}
}

// ingressAllows reports whether a rule of np lets a pod with labels pod,
// in the policy's namespace or in one labelled ns (nil: the same one),
// reach TCP port.
func ingressAllows(np *networkingv1.NetworkPolicy, port int, pod, ns map[string]string) bool {
	for _, rule := range np.Spec.Ingress {
		portOK := false
		for _, p := range rule.Ports {
			portOK = portOK || p.Port.IntValue() == port
		}
		if !portOK {
			continue
		}
		for _, peer := range rule.From {
			podOK := peer.PodSelector == nil || labels.SelectorFromSet(peer.PodSelector.MatchLabels).Matches(labels.Set(pod))
			nsOK := (peer.NamespaceSelector == nil && ns == nil) ||
				(peer.NamespaceSelector != nil && ns != nil && labels.SelectorFromSet(peer.NamespaceSelector.MatchLabels).Matches(labels.Set(ns)))
			if podOK && nsOK && peer.IPBlock == nil {
				return true
			}
		}
	}
	return false
}

// TestNATSLoginFiles: with a credentials file per service and mutual TLS
// (your own NATS), each service reads exactly its own credentials file and
// the TLS files from mounted Secrets, at the paths its settings name; no
// password is involved. Your own NATS without a login is warned about.
func TestNATSLoginFiles(t *testing.T) {
	r := mustRender(t, nil, "natsAuth.mode=creds", "natsAuth.secretName=nats-creds",
		"natsTLS.secretName=nats-client-tls", "natsTLS.clientCertificate=true")
	for _, name := range allServices {
		full := "retain-" + name
		t.Run(full, func(t *testing.T) { checkWorkload(t, r, deployment(t, r, full)) })
		cm := configMap(t, r, full)
		pod := deployment(t, r, full).Spec.Template.Spec
		want := map[string][2]string{ // variable: Secret, key
			"RETAIN_NATS_CREDS":    {"nats-creds", name},
			"RETAIN_NATS_TLS_CA":   {"nats-client-tls", "ca.crt"},
			"RETAIN_NATS_TLS_CERT": {"nats-client-tls", "tls.crt"},
			"RETAIN_NATS_TLS_KEY":  {"nats-client-tls", "tls.key"},
		}
		for env, src := range want {
			secret, key, ok := mountedFile(pod, cm.Data[env])
			if !ok || secret != src[0] || key != src[1] {
				t.Errorf("%s: %s = %q is key %q of Secret %q, want key %q of %q", name, env, cm.Data[env], key, secret, src[1], src[0])
			}
		}
		for _, v := range pod.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "nats-creds" && len(v.Secret.Items) != 1 {
				t.Errorf("%s mounts %d keys of the credentials Secret, want only its own", name, len(v.Secret.Items))
			}
		}
		env := podEnv(t, r, full)
		for _, v := range []string{"RETAIN_NATS_USER", "RETAIN_NATS_PASSWORD"} {
			if _, ok := env[v]; ok {
				t.Errorf("%s: %s is set with natsAuth.mode creds", name, v)
			}
		}
	}
	for _, want := range []string{"create secret generic nats-creds", "--from-file=ingest=ingest.creds", "nats-client-tls: key ca.crt"} {
		if !strings.Contains(r.Notes, want) {
			t.Errorf("NOTES.txt does not mention %q:\n%s", want, r.Notes)
		}
	}

	open := mustRender(t, nil)
	if _, ok := configMap(t, open, "retain-ingest").Data["RETAIN_NATS_USER"]; ok || !strings.Contains(open.Notes, "log in to NATS without credentials") {
		t.Errorf("your own NATS by default: want no login and a warning in NOTES.txt:\n%s", open.Notes)
	}
	own := mustRender(t, nil, "natsAuth.mode=password", "natsAuth.createSecret=false")
	if ref := secretRef(t, own, "retain-ingest", "RETAIN_NATS_PASSWORD"); ref.Name != "retain-nats-auth" || ref.Key != "ingest" {
		t.Errorf("RETAIN_NATS_PASSWORD from %s/%s, want the Secret you create, retain-nats-auth/ingest", ref.Name, ref.Key)
	}
	if _, ok := own.get("Secret", "retain-nats-auth"); ok || !strings.Contains(own.Notes, `--from-literal=ingest="p$(openssl rand -hex 24)"`) {
		t.Errorf("natsAuth.createSecret false: want no Secret rendered and its creation in NOTES.txt:\n%s", own.Notes)
	}
}

// mountedFile is the Secret and key a container's file path comes from.
func mountedFile(pod corev1.PodSpec, file string) (secret, key string, ok bool) {
	for _, m := range pod.Containers[0].VolumeMounts {
		rel, found := strings.CutPrefix(file, m.MountPath+"/")
		if !found {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, item := range v.Secret.Items {
				if path.Clean(item.Path) == rel {
					return v.Secret.SecretName, item.Key, true
				}
			}
		}
	}
	return "", "", false
}

// TestNATSLoginSettingsRefused: every login and TLS setting of the bus
// (but the URL) is the chart's once natsAuth and natsTLS set them, so a
// service's own is refused (the other refusals are in TestValuesRejected).
func TestNATSLoginSettingsRefused(t *testing.T) {
	// A setting the bus gains that the chart's list
	// (retain.natsClientSettings) lacks fails here.
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	new(bus.Config).RegisterFlags(fs)
	for _, env := range config.EnvNames(fs) {
		if env == "RETAIN_NATS_URL" {
			continue
		}
		_, err := render(t, []string{"values-dev.yaml"}, "natsTLS.secretName=nats-tls",
			"services.metrics.secretEnv."+env+".name=s", "services.metrics.secretEnv."+env+".key=k")
		if err == nil || !strings.Contains(err.Error(), "services.metrics.secretEnv sets "+env) {
			t.Errorf("%s in a service's secretEnv beside the chart's login and TLS: %v; want it refused", env, err)
		}
	}
}
