package bus_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// TestConnectClientCertificateRefused: a server that verifies clients
// and refuses the client's certificate, or its lack of one, stops
// Connect with the client certificate settings to fix, instead of being
// retried until the context ends. With TLS 1.2 and 1.3: with 1.3 the client
// learns of the refusal only after its handshake, and a connection the
// server closed first is retried until the refusal itself comes.
func TestConnectClientCertificateRefused(t *testing.T) {
	ca := testenv.NewCA(t)
	serverCert := ca.Issue(t, "nats", "127.0.0.1")
	pair, err := tls.X509KeyPair(serverCert.CertPEM, serverCert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool, caFile := ca.Pool(), ca.File
	strangerCert := testenv.NewCA(t).Issue(t, "stranger")
	stranger := map[string]string{"RETAIN_NATS_TLS_CERT": writeFile(t, "stranger.pem", string(strangerCert.CertPEM)), "RETAIN_NATS_TLS_KEY": writeFile(t, "stranger.key", string(strangerCert.KeyPEM))}

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		addr := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSTimeout: 2,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
				MinVersion: version, MaxVersion: version}})
		for _, tc := range []struct {
			name string
			env  map[string]string
			want []string
		}{
			{"no client certificate", map[string]string{},
				[]string{"NATS requires a client certificate", "set RETAIN_NATS_TLS_CERT (-nats-tls-cert) and RETAIN_NATS_TLS_KEY (-nats-tls-key)"}},
			{"a certificate of another CA", stranger,
				[]string{"NATS refused the client certificate", "unknown certificate authority", "check RETAIN_NATS_TLS_CERT (-nats-tls-cert) and RETAIN_NATS_TLS_KEY (-nats-tls-key)"}},
		} {
			if version == tls.VersionTLS12 && len(tc.env) == 0 {
				// Go's server answers a missing certificate with TLS 1.2's
				// "handshake failure", which says nothing of certificates
				// (a cipher suite mismatch sends it too): retried.
				continue
			}
			t.Run(tls.VersionName(version)+"/"+tc.name, func(t *testing.T) {
				cfg := configFromEnv(t, with(with(tc.env, "RETAIN_NATS_TLS_CA", caFile), "RETAIN_NATS_URL", "tls://"+addr))
				// Many times, to meet the race of TLS 1.3.
				for range 20 {
					var logs testenv.SyncBuffer
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					_, err := bus.Connect(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
					stopped := ctx.Err() == nil
					cancel()
					if err == nil || !stopped {
						t.Fatalf("Connect: %v (stopped before its context ended: %v), want the refusal\n%s", err, stopped, logs.String())
					}
					for _, w := range tc.want {
						if !strings.Contains(err.Error(), w) {
							t.Fatalf("error does not name %q: %v", w, err)
						}
					}
				}
			})
		}
	}
}
