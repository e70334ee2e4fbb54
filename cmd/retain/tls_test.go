package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/notifier"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestTLSBetweenCLICampaignAndNotifier: the notifier and the campaign
// service each serve TLS from a certificate of their own, as two pods of
// the chart do. The CLI reaches the campaign service with --tls-ca (and
// --tls-server-name, the certificate being for the Service's name, not
// 127.0.0.1) or their variables, and the campaign service looks a
// campaign's templates up in the notifier over TLS with
// RETAIN_CAMPAIGN_NOTIFIER_TLS_CA, the caller's token with each lookup.
// A plaintext client of either is refused.
func TestTLSBetweenCLICampaignAndNotifier(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	natsURL := testenv.NATS(t).URL()
	keys := authtest.Keys(t)
	pub := keys.Public
	token, err := keys.Signer.Issue(auth.Claims{Tenant: "acme", Scopes: []string{auth.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	tel := servertest.Telemetry(t, "retain-tls-test")
	ca := testenv.NewCA(t)
	host := func(svc interface {
		server.Service
		Verifier() *auth.Verifier
	}, hosts ...string) string {
		t.Helper()
		secret := testenv.NewSecret(t)
		secret.Update(t, ca.Issue(t, hosts...).Files())
		h, err := server.NewHost(server.HostConfig{
			Addrs:     server.Addrs{GRPC: "127.0.0.1:0"},
			TLS:       server.TLSConfig{CertFile: secret.Path("tls.crt"), KeyFile: secret.Path("tls.key")},
			Telemetry: tel, Verifier: svc.Verifier(),
		}, svc)
		if err != nil {
			t.Fatal(err)
		}
		hctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(hctx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("host stopped with %v", err)
			}
		})
		if err := h.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		return h.Addrs().GRPC
	}

	ncfg := notifier.DefaultConfig()
	ncfg.NATS.URL, ncfg.AuthPublicKey, ncfg.DatabaseURL = natsURL, pub, testenv.Postgres(t)
	ncfg.UnsubscribeSecret = strings.Repeat("u", 32)
	notifierSvc, err := notifier.New(ctx, ncfg, tel)
	if err != nil {
		t.Fatal(err)
	}
	// The campaign service dials the notifier at the address it is given,
	// which its certificate names.
	notifierAddr := host(notifierSvc, "retain-notifier.retain.svc", "127.0.0.1")

	ccfg := campaign.DefaultConfig()
	ccfg.NATS.URL, ccfg.AuthPublicKey, ccfg.DatabaseURL = natsURL, pub, testenv.Postgres(t)
	ccfg.FactsExclusive = false
	ccfg.NotifierAddr, ccfg.NotifierTLS = notifierAddr, server.ClientTLS{CAFile: ca.File}
	campaignSvc, err := campaign.New(ctx, ccfg, tel)
	if err != nil {
		t.Fatal(err)
	}
	// Reached through a port-forward: the certificate is for the
	// Service's name only.
	campaignAddr := host(campaignSvc, "retain-campaign.retain.svc")

	cli := func(t *testing.T, vars map[string]string, addr string, args ...string) (string, error) {
		t.Helper()
		env, out, errOut := testEnv(vars)
		err := run(ctx, env, append(args, "--addr", addr, "--token", token))
		return out.String() + errOut.String(), err
	}
	write := func(name, body string) string {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	campaignFile := write("campaign.yaml", `
id: thanks-vip
name: Thank the big spenders
trigger: {event: order.placed}
steps:
  - {id: thanks, send: {channel: CHANNEL_EMAIL, template_key: big_spender_thanks}}
`)
	tls := []string{"--tls-ca", ca.File, "--tls-server-name", "retain-campaign.retain.svc"}

	t.Run("a plaintext CLI is refused", func(t *testing.T) {
		if got, err := cli(t, nil, campaignAddr, "campaigns", "list"); err == nil {
			t.Fatalf("campaigns list without TLS was answered:\n%s", got)
		}
	})
	t.Run("the certificate must be for the name asked for", func(t *testing.T) {
		got, err := cli(t, nil, campaignAddr, "campaigns", "list", "--tls-ca", ca.File)
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("a certificate for retain-campaign.retain.svc taken for 127.0.0.1: %v\n%s", err, got)
		}
	})
	t.Run("a CA file that cannot be read is named", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "ca.crt")
		if _, err := cli(t, nil, campaignAddr, "campaigns", "list", "--tls-ca", missing); err == nil || !strings.Contains(err.Error(), `--tls-ca (RETAIN_TLS_CA): cannot read "`+missing+`"`) {
			t.Fatalf("--tls-ca %s: %v", missing, err)
		}
		if _, err := cli(t, map[string]string{"RETAIN_TLS": "yes please"}, campaignAddr, "campaigns", "list"); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), `RETAIN_TLS: want true or false, got "yes please"`) {
			t.Fatalf("RETAIN_TLS=yes please: %v", err)
		}
	})
	t.Run("the campaign service looks templates up in the notifier over TLS", func(t *testing.T) {
		got, err := cli(t, nil, campaignAddr, append([]string{"campaigns", "apply", "-f", campaignFile}, tls...)...)
		if err == nil || !strings.Contains(err.Error(), `the notifier has no email template "big_spender_thanks"`) {
			t.Fatalf("a campaign sending a template the notifier lacks: %v\n%s", err, got)
		}
		tmpl := write("template.yaml", `
key: big_spender_thanks
channel: email
variants:
  - locale: ""
    subject: Thank you, {{.customer.first_name}}
    text: Your order made our day.
`)
		// The notifier's certificate names 127.0.0.1: the CA alone does.
		if got, err := cli(t, map[string]string{"RETAIN_TLS_CA": ca.File}, notifierAddr, "templates", "apply", "-f", tmpl); err != nil {
			t.Fatalf("templates apply over TLS: %v\n%s", err, got)
		}
		vars := map[string]string{"RETAIN_TLS_CA": ca.File, "RETAIN_TLS_SERVER_NAME": "retain-campaign.retain.svc"}
		if got, err := cli(t, vars, campaignAddr, "campaigns", "apply", "-f", campaignFile); err != nil || !strings.Contains(got, "campaign thanks-vip created: version 1") {
			t.Fatalf("with the template in the notifier: %v\n%s", err, got)
		}
	})
	t.Run("a plaintext notifier client is refused", func(t *testing.T) {
		if err := campaignSvc.SetNotifierAddr(notifierAddr); err != nil {
			t.Fatal(err)
		}
		another := write("another.yaml", strings.Replace(mustRead(t, campaignFile), "id: thanks-vip", "id: thanks-again", 1))
		got, err := cli(t, nil, campaignAddr, append([]string{"campaigns", "apply", "-f", another}, tls...)...)
		if err == nil || !strings.Contains(err.Error(), "cannot check the campaign's templates in the notifier") {
			t.Fatalf("templates looked up in plaintext from a TLS notifier: %v\n%s", err, got)
		}
	})
}
