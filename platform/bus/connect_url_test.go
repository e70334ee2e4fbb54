package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// TestConnectBadURL: a URL nats.go cannot use is a configuration error,
// reported at once (no retries) naming RETAIN_NATS_URL, and neither the error
// nor the log shows the credentials in it, even when the URL does not parse.
func TestConnectBadURL(t *testing.T) {
	tests := []struct {
		name, url, secret, want string
	}{
		{name: "unparseable port", url: "nats://user:natspw@:::bad", secret: "natspw", want: `invalid port`},
		{name: "unparseable without scheme", url: "user:natspw@:::bad", secret: "natspw", want: `invalid port`},
		{name: "bad escape in password", url: "nats://user:nat%zzspw@127.0.0.1:4222", secret: "nat%zzspw", want: "invalid user name or password"},
		{name: "token in unparseable URL", url: "nats://s3cr3ttoken@[::1", secret: "s3cr3ttoken", want: "not a valid URL"},
		{name: "unsupported scheme", url: "http://user:natspw@127.0.0.1:4222", secret: "natspw", want: `unsupported scheme "http"`},
		{name: "bad URL in a list", url: "nats://127.0.0.1:4222, nats://u:natspw@bad host:4222", secret: "natspw", want: "not a valid URL"},
		{name: "mixed websocket", url: "nats://127.0.0.1:4222,ws://u:natspw@127.0.0.1:8080", secret: "natspw", want: "cannot be mixed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verr := bus.Config{URL: tt.url}.Validate()
			if verr == nil {
				t.Fatalf("Validate(%q) = nil, want an error", tt.url)
			}
			var logs testenv.SyncBuffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			b, err := bus.Connect(ctx, bus.Config{URL: tt.url}, log)
			if err == nil {
				b.Close()
				t.Fatalf("Connect(%q) succeeded", tt.url)
			}
			if took := time.Since(start); took > 2*time.Second || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Connect retried a malformed URL for %s: %v", took, err)
			}
			for _, e := range []error{verr, err} {
				msg := e.Error()
				if !strings.Contains(msg, "RETAIN_NATS_URL") || !strings.Contains(msg, tt.want) {
					t.Errorf("error %q does not name RETAIN_NATS_URL and %q", msg, tt.want)
				}
				if strings.Contains(msg, tt.secret) {
					t.Errorf("error leaks the secret %q: %s", tt.secret, msg)
				}
			}
			if strings.Contains(logs.String(), tt.secret) {
				t.Errorf("log leaks the secret %q:\n%s", tt.secret, logs.String())
			}
			if strings.Contains(logs.String(), "retrying") {
				t.Errorf("Connect retried a malformed URL:\n%s", logs.String())
			}
		})
	}
}

// TestConfigValidateURL: URLs nats.go accepts stay valid.
func TestConfigValidateURL(t *testing.T) {
	for _, u := range []string{
		"", "nats://127.0.0.1:4222", "127.0.0.1:4222", "nats://a:4222, nats://b:4222,", "tls://user:pw@nats.example:4222",
		"nats://token@nats.example", "ws://a:8080,wss://b:443", "NATS://A:4222",
	} {
		if err := (bus.Config{URL: u}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", u, err)
		}
	}
}

// TestConnectUnreachableRedacted: an unreachable server is still retried
// until the context ends, and neither the retry log lines nor the final error
// show the password or the token of the URL. The log names the URL,
// redacted, and its setting, once rather than at every retry.
func TestConnectUnreachableRedacted(t *testing.T) {
	srv := testenv.NATS(t)
	hostPort := strings.TrimPrefix(srv.URL(), "nats://")
	srv.Shutdown()
	for _, tt := range []struct{ url, secret string }{
		{url: "nats://user:natspw@" + hostPort, secret: "natspw"},
		{url: "nats://s3cr3ttoken@" + hostPort, secret: "s3cr3ttoken"},
		{url: "user:natspw@" + hostPort + ",nats://other:pw2@" + hostPort, secret: "natspw"},
	} {
		var logs testenv.SyncBuffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		_, err := bus.Connect(ctx, bus.Config{URL: tt.url}, log)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Connect(%q) = %v, want retries until context.DeadlineExceeded", tt.url, err)
		}
		if n := strings.Count(logs.String(), "retrying"); n != 1 || !strings.Contains(logs.String(), "setting=RETAIN_NATS_URL") ||
			!strings.Contains(logs.String(), "xxxxx@") {
			t.Fatalf("want one retry line naming the redacted URL and RETAIN_NATS_URL for an unreachable server, got %d:\n%s", n, logs.String())
		}
		if strings.Contains(err.Error(), tt.secret) || strings.Contains(logs.String(), tt.secret) {
			t.Fatalf("secret %q leaked:\nerror: %v\nlog:\n%s", tt.secret, err, logs.String())
		}
		if !strings.Contains(err.Error(), "xxxxx@") {
			t.Fatalf("error %q does not show the redacted URL", err)
		}
	}
}
