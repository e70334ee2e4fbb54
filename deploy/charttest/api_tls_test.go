package charttest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/campaign"
)

// Where the chart mounts the APIs' certificate and the revoked token ids.
const (
	tlsDir         = "/etc/retain/tls"
	authRevokedDir = "/etc/retain/auth-revoked"
)

// testPublicKey is a token public key for settings that must hold one.
const testPublicKey = "2GJJkVfeDutiYCoe3FN1qIT8dz1so8P8KbGDtg97dR4="

// TestAPITLS: with tls.secretName every service mounts the Secret as a
// directory (so the kubelet updates the files the service re-reads) and
// is pointed at its files. Laid out as the kubelet mounts it, with a
// certificate for the names of the chart README's cert-manager example,
// the files pass each service's own settings, and the campaign service
// reaches the notifier at the address the chart gives it, verifying it
// with the Secret's CA.
func TestAPITLS(t *testing.T) {
	const secret = "retain-api-tls"
	r := mustRender(t, nil, "tls.secretName="+secret)

	ca := testenv.NewCA(t)
	issued := ca.Issue(t, readmeCertificateNames(t)...)
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	files := issued.Files()
	files["ca.crt"] = caPEM
	mounted := testenv.NewSecret(t)
	mounted.Update(t, files)
	block, _ := pem.Decode(issued.CertPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range allServices {
		full := "retain-" + name
		t.Run(name, func(t *testing.T) {
			d := deployment(t, r, full)
			checkWorkload(t, r, d)
			v := mountedVolume(t, d.Spec.Template.Spec, tlsDir)
			if v.Secret == nil || v.Secret.SecretName != secret || len(v.Secret.Items) != 0 {
				t.Errorf("%s is %+v, want all of Secret %s", tlsDir, v.VolumeSource, secret)
			}
			env := configMap(t, r, full).Data
			for setting, key := range map[string]string{"RETAIN_TLS_CERT_FILE": "tls.crt", "RETAIN_TLS_KEY_FILE": "tls.key"} {
				if got, want := env[setting], tlsDir+"/"+key; got != want {
					t.Errorf("%s = %q, want the Secret's %s, %s", setting, got, key, want)
				}
			}
			c := sharedSettings(t, name, movedTo(env, tlsDir, mounted.Dir))
			if !c.TLS.Enabled() {
				t.Fatal("the service's settings have no certificate")
			}
			if err := c.Validate(databaseEnv(t, name)); err != nil {
				t.Errorf("the service refuses the mounted certificate: %v", err)
			}
			// Its clients dial the Service by its short and .svc names.
			for _, host := range []string{full, full + "." + namespace + ".svc"} {
				if err := leaf.VerifyHostname(host); err != nil {
					t.Errorf("the README's Certificate does not cover %s: %v", host, err)
				}
			}
		})
	}

	t.Run("campaign reaches the notifier over TLS", func(t *testing.T) {
		env := movedTo(configMap(t, r, "retain-campaign").Data, tlsDir, mounted.Dir)
		c := campaign.DefaultConfig()
		testenv.ParseSettings(t, c.RegisterFlags, env)
		if c.NotifierTLS.CAFile != mounted.Path("ca.crt") {
			t.Errorf("RETAIN_CAMPAIGN_NOTIFIER_TLS_CA = %q, want the Secret's ca.crt", env["RETAIN_CAMPAIGN_NOTIFIER_TLS_CA"])
		}
		creds, err := c.NotifierTLS.TransportCredentials()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := server.LoadCertificate(mounted.Path("tls.crt"), mounted.Path("tls.key"))
		if err != nil {
			t.Fatal(err)
		}
		// As the notifier's gRPC server offers it (gRPC clients require h2).
		serverTLS := cert.ServerConfig().Clone()
		serverTLS.NextProtos = []string{"h2"}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				_ = conn.(*tls.Conn).Handshake()
				conn.Close()
			}
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The notifier's address as the chart gives it (its host names
		// the certificate wanted), reached at the test's listener.
		if _, _, err := creds.ClientHandshake(ctx, c.NotifierAddr, conn); err != nil {
			t.Errorf("campaign cannot verify the notifier at %s (RETAIN_CAMPAIGN_NOTIFIER_ADDR): %v", c.NotifierAddr, err)
		}
	})

	t.Run("a certificate of a public CA", func(t *testing.T) {
		pub := mustRender(t, nil, "tls.secretName="+secret, "tls.caKey=")
		env := configMap(t, pub, "retain-campaign").Data
		if env["RETAIN_CAMPAIGN_NOTIFIER_TLS"] != "true" || env["RETAIN_CAMPAIGN_NOTIFIER_TLS_CA"] != "" {
			t.Errorf("with tls.caKey empty, RETAIN_CAMPAIGN_NOTIFIER_TLS = %q and _TLS_CA = %q, want true and none (the system's roots)",
				env["RETAIN_CAMPAIGN_NOTIFIER_TLS"], env["RETAIN_CAMPAIGN_NOTIFIER_TLS_CA"])
		}
		c := campaign.DefaultConfig()
		testenv.ParseSettings(t, c.RegisterFlags, env)
		if !c.NotifierTLS.On() {
			t.Error("the campaign service's notifier client is not on TLS")
		}
	})

	t.Run("without TLS", func(t *testing.T) {
		plain := mustRender(t, nil)
		for _, name := range allServices {
			env := configMap(t, plain, "retain-"+name).Data
			for _, setting := range []string{"RETAIN_TLS_CERT_FILE", "RETAIN_TLS_KEY_FILE"} {
				if got, ok := env[setting]; ok {
					t.Errorf("%s: %s = %q without tls.secretName", name, setting, got)
				}
			}
			for _, m := range deployment(t, plain, "retain-"+name).Spec.Template.Spec.Containers[0].VolumeMounts {
				if m.MountPath == tlsDir {
					t.Errorf("%s mounts %s without tls.secretName", name, tlsDir)
				}
			}
		}
	})

	t.Run("install notes", func(t *testing.T) {
		for _, want := range []string{secret + ": keys tls.crt and tls.key", "and ca.crt, the CA that signed it", "APIs serve " + secret + "'s tls.crt",
			`get secret ` + secret + ` -o jsonpath='{.data.ca\.crt}' | base64 -d > ca.crt`, "--cacert ca.crt", "https://retain-ingest.retain.svc:8080/v1/events"} {
			if !strings.Contains(r.Notes, want) {
				t.Errorf("NOTES.txt does not mention %q:\n%s", want, r.Notes)
			}
		}
		// An Ingress to a port that serves TLS only needs the controller to
		// speak HTTPS to it: the notes say so until an annotation does.
		const hint = "add nginx.ingress.kubernetes.io/backend-protocol: HTTPS to services.ingest.ingress.annotations"
		ing := []string{"tls.secretName=" + secret, "services.ingest.ingress.enabled=true", "services.ingest.ingress.host=events.example.com"}
		if n := mustRender(t, nil, ing...).Notes; !strings.Contains(n, hint) {
			t.Errorf("NOTES.txt does not say the ingest Ingress needs the backend protocol HTTPS:\n%s", n)
		}
		set := append(ing, `services.ingest.ingress.annotations.nginx\.ingress\.kubernetes\.io/backend-protocol=HTTPS`)
		if n := mustRender(t, nil, set...).Notes; strings.Contains(n, "backend-protocol") {
			t.Errorf("NOTES.txt asks for the backend protocol although the Ingress sets it:\n%s", n)
		}
		if strings.Contains(mustRender(t, nil, ing[1:]...).Notes, "backend-protocol") {
			t.Error("NOTES.txt asks for the backend protocol without tls.secretName")
		}
		// Unsubscribe links straight to the notifier's port need https.
		const https = "links to it must start with https://"
		if n := mustRender(t, nil, "tls.secretName="+secret, "services.notifier.env.RETAIN_NOTIFIER_PUBLIC_URL=http://links.example.com").Notes; !strings.Contains(n, https) {
			t.Errorf("NOTES.txt does not warn of an http:// RETAIN_NOTIFIER_PUBLIC_URL with TLS:\n%s", n)
		}
		if n := mustRender(t, nil, "tls.secretName="+secret, "services.notifier.env.RETAIN_NOTIFIER_PUBLIC_URL=https://links.example.com").Notes; strings.Contains(n, https) {
			t.Errorf("NOTES.txt warns of an https:// RETAIN_NOTIFIER_PUBLIC_URL:\n%s", n)
		}
	})
}

// TestRevokedTokens: auth.revokedTokens mounts the ConfigMap or Secret as
// a directory in every service and points RETAIN_AUTH_REVOKED_FILE at its
// key, which the service's settings read.
func TestRevokedTokens(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		set       []string
		want      func(corev1.VolumeSource) bool
		notes     string
	}{
		{
			name: "from a ConfigMap", key: "revoked.txt",
			set: []string{"auth.revokedTokens.configMapName=retain-revoked-tokens"},
			want: func(v corev1.VolumeSource) bool {
				return v.ConfigMap != nil && v.ConfigMap.Name == "retain-revoked-tokens" && len(v.ConfigMap.Items) == 0
			},
			notes: "create configmap retain-revoked-tokens --from-file=revoked.txt=revoked.txt",
		},
		{
			name: "from a Secret", key: "jti",
			set: []string{"auth.revokedTokens.secretName=revoked", "auth.revokedTokens.key=jti"},
			want: func(v corev1.VolumeSource) bool {
				return v.Secret != nil && v.Secret.SecretName == "revoked" && len(v.Secret.Items) == 0
			},
			notes: "create secret generic revoked --from-file=jti=revoked.txt",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, nil, tc.set...)
			mounted := t.TempDir()
			if err := os.WriteFile(filepath.Join(mounted, tc.key), []byte("# leaked\nQX4T7MZK3VNB2RLJ5WHYC6DPEA\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, name := range allServices {
				full := "retain-" + name
				d := deployment(t, r, full)
				if v := mountedVolume(t, d.Spec.Template.Spec, authRevokedDir); !tc.want(v.VolumeSource) {
					t.Errorf("%s: %s is %+v", name, authRevokedDir, v.VolumeSource)
				}
				env := configMap(t, r, full).Data
				if got, want := env["RETAIN_AUTH_REVOKED_FILE"], authRevokedDir+"/"+tc.key; got != want {
					t.Errorf("%s: RETAIN_AUTH_REVOKED_FILE = %q, want %q", name, got, want)
				}
				c := sharedSettings(t, name, movedTo(env, authRevokedDir, mounted))
				if err := c.Validate(databaseEnv(t, name)); err != nil {
					t.Errorf("%s refuses the mounted list: %v", name, err)
				}
				if list, err := auth.LoadRevocations(c.AuthRevokedFile); err != nil || !list.Revoked("QX4T7MZK3VNB2RLJ5WHYC6DPEA") {
					t.Errorf("%s: the list at %s does not revoke the id in the key: %v", name, c.AuthRevokedFile, err)
				}
			}
			if !strings.Contains(r.Notes, tc.notes) {
				t.Errorf("NOTES.txt does not say how to create it (%q):\n%s", tc.notes, r.Notes)
			}
		})
	}
	r := mustRender(t, nil)
	for _, name := range allServices {
		if got, ok := configMap(t, r, "retain-"+name).Data["RETAIN_AUTH_REVOKED_FILE"]; ok {
			t.Errorf("%s: RETAIN_AUTH_REVOKED_FILE = %q without auth.revokedTokens", name, got)
		}
	}
}

// TestFileSettingsRefused: the certificate, the notifier client's TLS and
// the revocation list are the chart's (it mounts the files), so a
// service's own setting of any is refused; a TLS setting the services gain
// that the chart's list (retain.fileSettings) lacks fails here.
func TestFileSettingsRefused(t *testing.T) {
	fs := flag.NewFlagSet("tls", flag.ContinueOnError)
	new(server.TLSConfig).RegisterFlags(fs)
	settings := map[string]string{"RETAIN_AUTH_REVOKED_FILE": "metrics"}
	for _, env := range config.EnvNames(fs) {
		settings[env] = "metrics"
	}
	camp := flag.NewFlagSet("campaign", flag.ContinueOnError)
	c := campaign.DefaultConfig()
	c.RegisterFlags(camp)
	for _, env := range config.EnvNames(camp) {
		if strings.HasPrefix(env, "RETAIN_CAMPAIGN_NOTIFIER_TLS") {
			settings[env] = "campaign"
		}
	}
	if len(settings) < 5 {
		t.Fatalf("found only %v", settings)
	}
	for env, svc := range settings {
		for _, where := range []string{"env", "secretEnv"} {
			set := []string{"services." + svc + ".env." + env + "=/x"}
			if where == "secretEnv" {
				set = []string{"services." + svc + ".secretEnv." + env + ".name=s", "services." + svc + ".secretEnv." + env + ".key=k"}
			}
			_, err := render(t, nil, set...)
			if err == nil || !regexp.MustCompile(`services\.`+svc+`\.`+where+` sets `+env+` .*which the chart sets from`).MatchString(err.Error()) {
				t.Errorf("%s in services.%s.%s: %v; want it refused", env, svc, where, err)
			}
		}
	}
}

// readmeCertificateNames are the dnsNames of the cert-manager Certificate
// the chart README shows.
func readmeCertificateNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(apiVersion: cert-manager.io/v1\nkind: Certificate\n.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("the chart README shows no cert-manager Certificate")
	}
	var c struct {
		Spec struct {
			DNSNames []string `json:"dnsNames"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(m[1], &c); err != nil || len(c.Spec.DNSNames) == 0 {
		t.Fatalf("the chart README's Certificate: %v, names %v", err, c.Spec.DNSNames)
	}
	return c.Spec.DNSNames
}

// mountedVolume is the volume mounted at dir in the pod's container, which
// must be mounted whole (a subPath mount is never updated by the kubelet)
// and read-only.
func mountedVolume(t *testing.T, pod corev1.PodSpec, dir string) corev1.Volume {
	t.Helper()
	for _, m := range pod.Containers[0].VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		if m.SubPath != "" || m.SubPathExpr != "" || !m.ReadOnly {
			t.Errorf("%s is mounted with subPath %q, read-only %v; want the whole volume, read-only", dir, m.SubPath+m.SubPathExpr, m.ReadOnly)
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name {
				return v
			}
		}
		t.Fatalf("%s mounts volume %s, which the pod lacks", dir, m.Name)
	}
	t.Fatalf("nothing is mounted at %s", dir)
	return corev1.Volume{}
}

// movedTo is env with the paths under dir moved to local, where the test
// lays the mounted files out.
func movedTo(env map[string]string, dir, local string) map[string]string {
	out := maps.Clone(env)
	for k, v := range out {
		if rest, ok := strings.CutPrefix(v, dir+"/"); ok {
			out[k] = filepath.Join(local, rest)
		}
	}
	return out
}

// sharedSettings are the settings every service reads (service.Config),
// parsed from env as the service's main parses them, with the token key
// and database URL that come from Secrets.
func sharedSettings(t *testing.T, name string, env map[string]string) service.Config {
	t.Helper()
	env = maps.Clone(env)
	dbEnv := databaseEnv(t, name)
	env["RETAIN_AUTH_PUBLIC_KEY"] = testPublicKey
	env[dbEnv] = "postgres://retain:secret@pg.example:5432/retain_" + name
	c := service.DefaultConfig(name)
	testenv.ParseSettings(t, func(fs *flag.FlagSet) { c.RegisterFlags(fs, dbEnv, "database") }, env)
	return c
}
