package channel

import (
	"context"
	"net"
	"strings"
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
// scheme, host and path only.
func TestProviderURLCredentialsStayOutOfErrors(t *testing.T) {
	addr := closedAddr(t)
	for _, tc := range []struct{ url, shown string }{
		{"http://sid:hunter2@" + addr + "/v1/send?api_key=SECRET", "http://" + addr + "/v1/send"},
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
