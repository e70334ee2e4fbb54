package channel

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// closedAddr is a local address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestProviderURLCredentialsStayOutOfErrors: a provider URL often holds
// its credential (https://user:pass@..., ?api_key=...); a failed call's
// error, which becomes a delivery's reason and a log line, shows the
// scheme and host only: Slack-, Discord- and Zapier-style webhooks carry
// theirs in the path.
func TestProviderURLCredentialsStayOutOfErrors(t *testing.T) {
	addr := closedAddr(t)
	for _, tc := range []struct{ url, shown string }{
		{"http://sid:hunter2@" + addr + "/v1/send?api_key=SECRET", "http://" + addr},
		{"http://" + addr + "/services/T0/B0/SECRET", "http://" + addr},
		{"http://sid:hunter2@[::1/v1/send?api_key=SECRET", "URL"}, // does not parse
	} {
		m := testMessage(1)
		_, smsErr := NewSMS(SMSConfig{URL: tc.url, Timeout: 5 * time.Second}).Send(context.Background(), m)
		_, hookErr := NewWebhook(WebhookConfig{URL: tc.url, Secret: "0123456789abcdef", Timeout: 5 * time.Second}).Send(context.Background(), m)
		for _, err := range []error{smsErr, hookErr} {
			if err == nil {
				t.Fatalf("%s: no error", tc.url)
			}
			if msg := err.Error(); strings.Contains(msg, "hunter2") || strings.Contains(msg, "SECRET") || strings.Contains(msg, "sid") || !strings.Contains(msg, tc.shown) {
				t.Errorf("error %q, want it to show %s and no credential", msg, tc.shown)
			}
		}
	}
}

// TestRedirectsAreNotFollowed: a provider or webhook endpoint answering
// with a redirect could send the notifier to an internal address (the
// ops port, a cloud metadata service) and have part of the answer shown
// in the delivery's reason. A 3xx fails, naming where it points.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var internalCalls atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		internalCalls.Add(1)
		fmt.Fprint(w, "internal-credential-0451")
	}))
	defer internal.Close()
	target := internal.URL + "/latest/meta-data?token=abc"
	bouncer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	}))
	defer bouncer.Close()
	m := testMessage(1)
	_, smsErr := NewSMS(SMSConfig{URL: bouncer.URL, Timeout: 5 * time.Second}).Send(context.Background(), m)
	_, hookErr := NewWebhook(WebhookConfig{URL: bouncer.URL, Secret: "0123456789abcdef", Timeout: 5 * time.Second}).Send(context.Background(), m)
	for _, err := range []error{smsErr, hookErr} {
		ce := Classify(err)
		if err == nil || !ce.Permanent || ce.Code != "provider_misconfigured" {
			t.Fatalf("want a permanent provider_misconfigured failure, got %v", err)
		}
		host := strings.TrimPrefix(internal.URL, "http://")
		if msg := err.Error(); !strings.Contains(msg, "HTTP 307") || !strings.Contains(msg, host) || strings.Contains(msg, "token=abc") || strings.Contains(msg, "meta-data") {
			t.Errorf("error %q, want the status and the host it redirects to, %s, only", msg, host)
		}
	}
	if n := internalCalls.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
}

// TestWebhookNamesTheTenant: one endpoint receives every shop's webhooks,
// so each names its shop: in a header, and in the body the signature
// covers.
func TestWebhookNamesTheTenant(t *testing.T) {
	type received struct {
		header http.Header
		body   []byte
	}
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- received{r.Header.Clone(), b}
	}))
	defer srv.Close()
	m := testMessage(1)
	m.Tenant, m.Body = "shop-7", `{"tenant_id": "shop-7", "type": "alert"}`
	if _, err := NewWebhook(WebhookConfig{URL: srv.URL, Secret: "0123456789abcdef", Timeout: 5 * time.Second}).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.header.Get(HeaderTenant) != "shop-7" || string(r.body) != m.Body {
		t.Fatalf("%s: %q, body %s", HeaderTenant, r.header.Get(HeaderTenant), r.body)
	}
	if err := Verify("0123456789abcdef", r.header.Get(HeaderSignature), r.body, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
}
