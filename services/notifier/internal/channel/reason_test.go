package channel

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/emersion/go-smtp"
)

// Credentials of the requests below, which the provider echoes.
const (
	pathSecret   = "acct-7f3c9e21b"
	querySecret  = "k3y-5ECRET-value"
	bearerSecret = "tok-5ECRET-abcdef"
	// Not the request's: a credential-like string of the provider's own.
	foreignSecret = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
)

// echoServer answers every request with status and the body write makes
// from the request (its Authorization header, its path and query, its
// Retain-Signature), as a provider that echoes what it refuses does.
func echoServer(t *testing.T, status int, write func(r *http.Request) string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, write(r))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestProviderErrorReasons: an HTTP provider's error answer is shown in
// the delivery's reason by its status and the message and code of its
// documented error format, or else a short excerpt, on one printable
// line; what the request carried as credentials (URL path and query,
// header values), URLs' paths and queries, and anything credential-like
// in the answer are not in it, however the provider echoes them.
func TestProviderErrorReasons(t *testing.T) {
	auth := func(r *http.Request) string { return r.Header.Get("Authorization") }
	for _, tc := range []struct {
		name   string
		status int
		body   func(r *http.Request) string
		want   string // the whole reason; empty: only the general checks
	}{
		{"twilio", 400, func(*http.Request) string {
			return `{"code": 21211, "message": "The 'To' number +15005550001 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}`
		}, "HTTP 400 Bad Request: The 'To' number +15005550001 is not a valid phone number. (code 21211)"},
		{"problem details", 401, func(r *http.Request) string {
			return fmt.Sprintf(`{"type": "https://developer.vonage.com/api-errors#unauthorized", "title": "Unauthorized", "detail": "credentials '%s' were refused"}`, auth(r))
		}, "HTTP 401 Unauthorized: credentials '[redacted]' were refused"},
		{"errors list", 422, func(*http.Request) string {
			return `{"errors": [{"code": 2, "description": "Request not allowed (incorrect access_key)", "parameter": "access_key"}]}`
		}, "HTTP 422 Unprocessable Entity: Request not allowed (incorrect access_key) (code 2)"},
		{"nested error", 403, func(r *http.Request) string {
			return fmt.Sprintf(`{"error": {"code": 403, "message": "API key %s not valid; see https://console.example/keys/%s", "status": "PERMISSION_DENIED"}}`,
				r.URL.Query().Get("api_key"), foreignSecret)
		}, "HTTP 403 Forbidden: API key [redacted] not valid; see https://console.example (code 403)"},
		{"oauth", 401, func(*http.Request) string {
			return `{"error": "invalid_client", "error_description": "Client authentication failed"}`
		}, "HTTP 401 Unauthorized: Client authentication failed (code invalid_client)"},
		{"error string", 400, func(*http.Request) string {
			return `{"api_id": "97a1c4b8", "error": "invalid 'dst' parameter"}`
		}, "HTTP 400 Bad Request: invalid 'dst' parameter"},
		{"text echo", 503, func(r *http.Request) string {
			return fmt.Sprintf("upstream failed\r\nPOST %s\r\nAuthorization: %s\r\nRetain-Signature: %s\r\nX-Api-Key: %s\x1b[31m\u202e\x00done",
				r.URL.RequestURI(), auth(r), r.Header.Get(HeaderSignature), foreignSecret)
		}, // The SMS request has no signature: its empty value is followed
			// by the API key's name, taken for the value.
			"HTTP 503 Service Unavailable: upstream failed POST [path] Authorization: [redacted] Retain-Signature: [redacted] [redacted] [31m done"},
		{"json escaped echo", 400, func(r *http.Request) string {
			escaped := strings.ReplaceAll(r.URL.Path, "/", `\/`)
			return fmt.Sprintf(`{"received": {"path": "%s", "authorization": "%s"}}`, escaped, strings.Replace(auth(r), "B", `\u0042`, 1))
		}, `HTTP 400 Bad Request: {"received":{"authorization":"[redacted]","path":"[path]"}}`},
		{"html page", 502, func(*http.Request) string {
			return "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>\n"
		}, "HTTP 502 Bad Gateway: <html> <head><title>502 Bad Gateway</title></head> <body> <center><h1>502 Bad Gateway</h1></center> </body> </html>"},
		{"empty", 500, func(*http.Request) string { return "" }, "HTTP 500 Internal Server Error"},
		{"long", 400, func(r *http.Request) string {
			return strings.Repeat("é", 150) + " " + auth(r) + strings.Repeat(" the rest", 5000)
		}, ""},
		{"long message", 400, func(*http.Request) string {
			return `{"message": "` + strings.Repeat("word ", 500) + `"}`
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := echoServer(t, tc.status, tc.body)
			sms := NewSMS(SMSConfig{URL: url + "/v1/" + pathSecret + "/send?api_key=" + querySecret, AuthValue: "Bearer " + bearerSecret, Timeout: 5 * time.Second})
			hook := NewWebhook(WebhookConfig{URL: url + "/hooks/" + pathSecret + "?token=" + querySecret, Secret: "0123456789abcdef", Timeout: 5 * time.Second})
			for name, s := range map[string]Sender{"sms": sms, "webhook": hook} {
				_, err := s.Send(context.Background(), testMessage(1))
				if err == nil {
					t.Fatalf("%s: no error", name)
				}
				reason := err.Error()
				if tc.want != "" && name == "sms" && reason != tc.want {
					t.Errorf("%s: reason\n%q, want\n%q", name, reason, tc.want)
				}
				checkReason(t, name, reason)
				if got, want := Classify(err).Permanent, tc.status < 500; got != want {
					t.Errorf("%s: permanent %v, want %v", name, got, want)
				}
			}
		})
	}
}

// checkReason fails unless reason is one bounded line of printable
// characters without any of the tests' credentials or URL paths.
func checkReason(t *testing.T, name, reason string) {
	t.Helper()
	for _, bad := range []string{pathSecret, querySecret, bearerSecret, foreignSecret, "5ECRET", "/v1/", "/hooks/", "t=", "v1=", "twilio.com/docs", "/keys"} {
		if strings.Contains(reason, bad) {
			t.Errorf("%s: the reason %q shows %q", name, reason, bad)
		}
	}
	if i := strings.IndexFunc(reason, func(r rune) bool { return !unicode.IsPrint(r) }); i >= 0 {
		t.Errorf("%s: the reason %q has an unprintable character at byte %d", name, reason, i)
	}
	// "HTTP 415 Unsupported Media Type: " and a 200-byte excerpt.
	if len(reason) > 240 {
		t.Errorf("%s: the reason is %d bytes: %q", name, len(reason), reason)
	}
}

// TestSMTPReplyReasons: an SMTP server's refusal is shown by its code and
// text on one line, without the AUTH password or anything credential-like
// it echoes.
func TestSMTPReplyReasons(t *testing.T) {
	srv := newSink(t, nil, false)
	srv.password = "s3cret-passw0rd"
	srv.rcptErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "mailbox unavailable\nsession of mailer (password s3cret-passw0rd) token=" + foreignSecret + "\nsee https://mail.example/help/550?u=mailer"}
	s := NewSMTP(SMTPConfig{Addr: srv.addr, From: "Shop <news@shop.example>", TLS: TLSNone, Username: "mailer", Password: "s3cret-passw0rd",
		PoolSize: 1, Timeout: 5 * time.Second})
	defer s.Close()
	_, err := s.Send(context.Background(), testMessage(1))
	if err == nil {
		t.Fatal("no error")
	}
	// A multi-line reply's enhanced code is on its last line.
	want := "before DATA: SMTP RCPT TO: 550 mailbox unavailable session of mailer (password [redacted]) token=[redacted] 5.1.1 see https://mail.example"
	if got := err.Error(); got != want {
		t.Errorf("reason\n%q, want\n%q", got, want)
	}
	if ce := Classify(err); !ce.Permanent || ce.Code != "provider_rejected" {
		t.Errorf("want a permanent provider_rejected failure, got %+v", ce)
	}
}
