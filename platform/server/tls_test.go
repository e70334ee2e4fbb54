package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/platform/testenv"
)

// pingService answers GET /v1/ping on the public HTTP server.
type pingService struct{}

func (pingService) Name() string                    { return "ping" }
func (pingService) MethodScopes() map[string]string { return nil }
func (pingService) RegisterGRPC(*grpc.Server)       {}
func (pingService) RegisterHTTP(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "pong") })
}
func (pingService) Ready(context.Context) error { return nil }
func (pingService) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// startTLSHost hosts pingService with the certificate of secret, checked
// for changes every 20ms, its metrics on tel (may be nil), and returns its
// addresses and its log.
func startTLSHost(t *testing.T, secret *testenv.Secret, tel *telemetry.Telemetry) (server.Addrs, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	host, err := server.NewHost(server.HostConfig{
		Addrs:     server.Addrs{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0", Ops: "127.0.0.1:0"},
		TLS:       server.TLSConfig{CertFile: secret.Path("tls.crt"), KeyFile: secret.Path("tls.key"), ReloadInterval: 20 * time.Millisecond},
		Verifier:  authtest.Keys(t).Verifier,
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		Telemetry: tel,
	}, pingService{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host stopped with %v", err)
		}
	})
	if err := host.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return host.Addrs(), logs
}

func caPool(t *testing.T, ca *testenv.CA) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// servedSerial is the serial number of the certificate a new connection
// to addr is served, over TLS verified with ca.
func servedSerial(t *testing.T, addr string, ca *testenv.CA) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: caPool(t, ca), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestHostServesTLS: with a certificate, the gRPC and public HTTP servers
// serve TLS 1.2 or later and refuse plaintext, and the ops server stays
// plaintext. A renewed certificate (the Secret's files replaced) is served
// to new connections without a restart; a broken one is logged once and
// the last good one kept.
func TestHostServesTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	secret := testenv.NewSecret(t)
	first := ca.Issue(t, "retain-ingest.retain.svc", "127.0.0.1")
	secret.Update(t, first.Files())
	addrs, logs := startTLSHost(t, secret, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	health := func(creds credentials.TransportCredentials) (*peer.Peer, error) {
		conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		return &p, err
	}

	t.Run("gRPC over TLS", func(t *testing.T) {
		creds, err := server.ClientTLS{CAFile: ca.File}.TransportCredentials()
		if err != nil {
			t.Fatal(err)
		}
		p, err := health(creds)
		if err != nil {
			t.Fatal(err)
		}
		state := p.AuthInfo.(credentials.TLSInfo).State
		if state.PeerCertificates[0].SerialNumber.Cmp(first.Serial) != 0 {
			t.Errorf("served serial %v, want %v", state.PeerCertificates[0].SerialNumber, first.Serial)
		}
		plain, _ := server.ClientTLS{}.TransportCredentials()
		if _, err := health(plain); err == nil {
			t.Error("a plaintext gRPC client was answered")
		}
	})

	t.Run("public HTTP over TLS", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, ca)}}}
		resp, err := client.Get("https://" + addrs.HTTP + "/v1/ping")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "pong" || resp.TLS == nil {
			t.Errorf("https: %s %q", resp.Status, body)
		}
		resp, err = http.Get("http://" + addrs.HTTP + "/v1/ping")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || string(body) == "pong" {
				t.Errorf("plain http was served: %s %q", resp.Status, body)
			}
		}
	})

	t.Run("below TLS 1.2 refused", func(t *testing.T) {
		for _, addr := range []string{addrs.GRPC, addrs.HTTP} {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: caPool(t, ca), MaxVersion: tls.VersionTLS11})
			if err == nil {
				conn.Close()
				t.Errorf("%s took TLS 1.1", addr)
			}
		}
	})

	t.Run("ops stays plaintext", func(t *testing.T) {
		resp, err := http.Get("http://" + addrs.Ops + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("ops /healthz: %s", resp.Status)
		}
	})

	second := ca.Issue(t, "retain-ingest.retain.svc", "127.0.0.1")
	t.Run("a renewed certificate is served to new connections", func(t *testing.T) {
		secret.Update(t, second.Files())
		for _, addr := range []string{addrs.GRPC, addrs.HTTP} {
			testenv.WaitFor(t, "the renewed certificate served on "+addr, func() bool {
				return servedSerial(t, addr, ca).Cmp(second.Serial) == 0
			})
		}
		logs.WaitFor(t, "TLS certificate reloaded")
		if !strings.Contains(logs.String(), "serial="+second.Serial.Text(16)) {
			t.Errorf("the reload's log line does not name the new serial:\n%s", logs)
		}
	})

	t.Run("a broken certificate keeps the last good one", func(t *testing.T) {
		secret.Update(t, map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": second.KeyPEM})
		logs.WaitFor(t, "TLS certificate not reloaded: still serving the last good one")
		time.Sleep(200 * time.Millisecond) // ten more checks of the files
		if n := strings.Count(logs.String(), "TLS certificate not reloaded"); n != 1 {
			t.Errorf("the broken certificate was logged %d times, want once", n)
		}
		if got := servedSerial(t, addrs.GRPC, ca); got.Cmp(second.Serial) != 0 {
			t.Errorf("served serial %v after a broken update, want the last good %v", got, second.Serial)
		}
		third := ca.Issue(t, "retain-ingest.retain.svc", "127.0.0.1")
		secret.Update(t, third.Files())
		testenv.WaitFor(t, "the fixed certificate served", func() bool {
			return servedSerial(t, addrs.HTTP, ca).Cmp(third.Serial) == 0
		})
	})
}

// TestHostReportsCertificateExpiry: the serving certificate's expiry is
// the gauge retain.tls.certificate.expiry (its NotAfter in Unix seconds,
// by the certificate's name), which follows a renewal. A certificate
// expiring within 14 days, or expired, is logged at warn level once when
// loaded, not at each check of the files; one far from it is not.
func TestHostReportsCertificateExpiry(t *testing.T) {
	ca := testenv.NewCA(t)
	secret := testenv.NewSecret(t)
	far := ca.IssueUntil(t, time.Now().Add(90*24*time.Hour), "retain-ingest.retain.svc", "127.0.0.1")
	secret.Update(t, far.Files())
	reader := sdkmetric.NewManualReader()
	tel := &telemetry.Telemetry{
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		TracerProvider: tracenoop.NewTracerProvider(),
		Propagator:     propagation.TraceContext{},
	}
	addrs, logs := startTLSHost(t, secret, tel)

	const gauge = "retain.tls.certificate.expiry"
	expiry := func(name string) (float64, bool) {
		v, ok := testenv.Gauges(t, reader, "certificate="+name)[gauge]
		return v, ok
	}
	testenv.WaitFor(t, "the expiry gauge of the first certificate", func() bool {
		_, ok := expiry("retain-ingest.retain.svc")
		return ok
	})
	if got, _ := expiry("retain-ingest.retain.svc"); got != float64(far.NotAfter.Unix()) {
		t.Errorf("%s = %v, want the NotAfter %v (%v)", gauge, got, far.NotAfter.Unix(), far.NotAfter)
	}

	near := ca.IssueUntil(t, time.Now().Add(3*24*time.Hour), "retain-notifier.retain.svc", "127.0.0.1")
	secret.Update(t, near.Files())
	testenv.WaitFor(t, "the renewed certificate served", func() bool {
		return servedSerial(t, addrs.GRPC, ca).Cmp(near.Serial) == 0
	})
	testenv.WaitFor(t, "the expiry gauge of the renewed certificate", func() bool {
		got, ok := expiry("retain-notifier.retain.svc")
		return ok && got == float64(near.NotAfter.Unix())
	})
	if got, ok := expiry("retain-ingest.retain.svc"); ok {
		t.Errorf("the replaced certificate still has its series: %v", got)
	}
	const soon = "TLS certificate expires within 14 days: renew it"
	logs.WaitFor(t, soon)
	time.Sleep(200 * time.Millisecond) // ten more checks of the files
	if n := strings.Count(logs.String(), soon); n != 1 {
		t.Errorf("the near expiry was logged %d times, want once (and the far one never):\n%s", n, logs)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, soon) && !(strings.Contains(line, "level=WARN") && strings.Contains(line, "serial="+near.Serial.Text(16))) {
			t.Errorf("the warning is not at warn level or does not name the certificate: %s", line)
		}
	}

	expired := ca.IssueUntil(t, time.Now().Add(-time.Minute), "retain-notifier.retain.svc", "127.0.0.1")
	secret.Update(t, expired.Files())
	logs.WaitFor(t, "TLS certificate has expired")
	testenv.WaitFor(t, "the expiry gauge of the expired certificate", func() bool {
		got, _ := expiry("retain-notifier.retain.svc")
		return got == float64(expired.NotAfter.Unix())
	})
}

// TestTLSConfigErrors: a certificate without its key (or the reverse) is
// a configuration error naming the setting; files that cannot be read or
// do not make a pair name the path and the problem, in the settings'
// check and when a host starts. The key itself, given where its file's
// path goes, is not shown back.
func TestTLSConfigErrors(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, other := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	cert, key := write("tls.crt", good.CertPEM), write("tls.key", good.KeyPEM)
	otherKey := write("other.key", other.KeyPEM)
	junk := write("junk.crt", []byte("-----BEGIN NOTHING-----"))
	missing := filepath.Join(dir, "nope.crt")

	if err := (server.TLSConfig{}).Validate(); err != nil {
		t.Errorf("no TLS: %v", err)
	}
	if err := (server.TLSConfig{CertFile: cert, KeyFile: key}).Validate(); err != nil {
		t.Errorf("a good pair: %v", err)
	}
	for _, tt := range []struct {
		name string
		cfg  server.TLSConfig
		want []string
	}{
		{"certificate alone", server.TLSConfig{CertFile: cert}, []string{"RETAIN_TLS_CERT_FILE (-tls-cert-file): needs RETAIN_TLS_KEY_FILE (-tls-key-file)"}},
		{"key alone", server.TLSConfig{KeyFile: key}, []string{"RETAIN_TLS_KEY_FILE (-tls-key-file): needs RETAIN_TLS_CERT_FILE (-tls-cert-file)"}},
		{"certificate missing", server.TLSConfig{CertFile: missing, KeyFile: key}, []string{"RETAIN_TLS_CERT_FILE (-tls-cert-file): cannot read " + fmt.Sprintf("%q", missing) + ": no such file or directory"}},
		{"key missing", server.TLSConfig{CertFile: cert, KeyFile: missing}, []string{"RETAIN_TLS_KEY_FILE (-tls-key-file): cannot read " + fmt.Sprintf("%q", missing)}},
		{"another certificate's key", server.TLSConfig{CertFile: cert, KeyFile: otherKey}, []string{"RETAIN_TLS_CERT_FILE (-tls-cert-file): certificate " + fmt.Sprintf("%q with key %q", cert, otherKey), "private key does not match public key"}},
		{"no certificate in the file", server.TLSConfig{CertFile: junk, KeyFile: key}, []string{junk, "failed to find any PEM data in certificate input"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want it to contain %q", err, w)
				}
			}
			if tt.cfg.CertFile == "" || tt.cfg.KeyFile == "" {
				return
			}
			// A host given the same files refuses to start, naming them.
			_, err = server.NewHost(server.HostConfig{Addrs: server.Addrs{GRPC: "127.0.0.1:0"}, TLS: tt.cfg, Verifier: authtest.Keys(t).Verifier}, pingService{})
			if err == nil || !strings.Contains(err.Error(), dir) {
				t.Errorf("NewHost = %v, want an error naming the file", err)
			}
		})
	}

	t.Run("the key given for its file", func(t *testing.T) {
		// Base64 has "/" as a path does: the second key always holds one.
		for _, keyPEM := range []string{strings.TrimSpace(string(good.KeyPEM)), "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG/yqGSM49+gEGCCqG\n-----END PRIVATE KEY-----"} {
			err := (server.TLSConfig{CertFile: cert, KeyFile: keyPEM}).Validate()
			want := fmt.Sprintf("RETAIN_TLS_KEY_FILE (-tls-key-file): cannot read the file its value names (%d bytes, not shown", len(keyPEM))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, want)
			}
			for _, line := range strings.Split(keyPEM, "\n") {
				if strings.Contains(err.Error(), line) {
					t.Fatalf("Validate shows the key (%q):\n%v", line, err)
				}
			}
		}
	})
}
