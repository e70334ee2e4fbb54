package notifier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/notifier"
)

// validSettings are the settings a notifier needs to start, as KEY=VALUE.
func validSettings(t *testing.T) []string {
	t.Helper()
	pub := authtest.Keys(t).Public
	return []string{
		"RETAIN_AUTH_PUBLIC_KEY=" + pub, "RETAIN_NOTIFIER_DATABASE_URL=postgres://retain@db/notifier",
		"RETAIN_NOTIFIER_UNSUBSCRIBE_SECRET=" + strings.Repeat("k", 32),
	}
}

// parseSettings reads environ as the binary's main does.
func parseSettings(environ []string) (notifier.Config, error) {
	cfg := notifier.DefaultConfig()
	_, err := service.Parse("notifier", &cfg, nil, environ)
	return cfg, err
}

// buildNotifier wires a notifier from cfg, as `retain dev` and tests do.
func buildNotifier(cfg notifier.Config) error {
	_, err := notifier.New(context.Background(), cfg, nil)
	return err
}

// TestConfigMessages: a bad notifier setting is reported as a bad shared
// one is (the first case), by the check the binary's main runs
// (service.Parse) and by New: variable and flag, the form wanted, the
// value; a secret by its length only, and a provider URL without its
// userinfo and query.
func TestConfigMessages(t *testing.T) {
	testenv.ConfigMessages(t, validSettings(t), parseSettings, buildNotifier,
		[]testenv.ConfigCase{
			{Env: []string{"RETAIN_LOG_LEVEL=loud"}, Want: `RETAIN_LOG_LEVEL (-log-level): must be one of debug, info, warn, error, got "loud"`},
			{Env: []string{"RETAIN_NOTIFIER_PUBLIC_URL=retain.shop.example"}, Want: `RETAIN_NOTIFIER_PUBLIC_URL (-public-url): want an http(s) URL such as https://retain.shop.example, got "retain.shop.example"`},
			{Env: []string{"RETAIN_NOTIFIER_UNSUBSCRIBE_SECRET=short-s3cret"}, Want: "RETAIN_NOTIFIER_UNSUBSCRIBE_SECRET (-unsubscribe-secret): must be at least 32 bytes, got 12"},
			{Env: []string{"RETAIN_NOTIFIER_CAP_MAX=-1"}, Want: "RETAIN_NOTIFIER_CAP_MAX (-cap-max): must not be negative (0: no cap), got -1"},
			{Env: []string{"RETAIN_NOTIFIER_CAP_WINDOW=0s"}, Want: "RETAIN_NOTIFIER_CAP_WINDOW (-cap-window): must be positive, such as 168h, got 0s"},
			{Env: []string{"RETAIN_NOTIFIER_QUIET_START=9pm"}, Want: `RETAIN_NOTIFIER_QUIET_START (-quiet-start): want a time of day (HH:MM) such as 21:00, got "9pm"`},
			{Env: []string{"RETAIN_NOTIFIER_QUIET_END=25:00"}, Want: `RETAIN_NOTIFIER_QUIET_END (-quiet-end): want a time of day (HH:MM) such as 09:00, got "25:00"`},
			{Env: []string{"RETAIN_NOTIFIER_DEFAULT_TIME_ZONE=Mars/Olympus"}, Want: `RETAIN_NOTIFIER_DEFAULT_TIME_ZONE (-default-time-zone): want an IANA time zone such as Europe/Berlin, got "Mars/Olympus"`},
			{Env: []string{"RETAIN_NOTIFIER_DEFAULT_TTL=0s"}, Want: "RETAIN_NOTIFIER_DEFAULT_TTL (-default-ttl): must be positive, such as 72h, got 0s"},
			{Env: []string{"RETAIN_NOTIFIER_MAX_ATTEMPTS=0"}, Want: "RETAIN_NOTIFIER_MAX_ATTEMPTS (-max-attempts): must be 1-100, got 0"},
			{Env: []string{"RETAIN_NOTIFIER_RETRY_MAX=10s"}, Want: "RETAIN_NOTIFIER_RETRY_MAX (-retry-max): must be at least RETAIN_NOTIFIER_RETRY_INITIAL (30s), got 10s"},
			{Env: []string{"RETAIN_NOTIFIER_SEND_LEASE=30s"}, Want: "RETAIN_NOTIFIER_SEND_LEASE (-send-lease): must exceed RETAIN_NOTIFIER_SEND_TIMEOUT (30s) so that an attempt still running is not reconciled, got 30s"},
			{Env: []string{"RETAIN_NOTIFIER_SEND_BATCH=0"}, Want: "RETAIN_NOTIFIER_SEND_BATCH (-send-batch): must be 1-10000, got 0"},
			{Env: []string{"RETAIN_NOTIFIER_SEND_WORKERS=1001"}, Want: "RETAIN_NOTIFIER_SEND_WORKERS (-send-workers): must be 1-1000, got 1001"},
			{Env: []string{"RETAIN_NOTIFIER_BATCH_SIZE=0"}, Want: "RETAIN_NOTIFIER_BATCH_SIZE (-batch-size): must be 1-10000, got 0"},
			{Env: []string{"RETAIN_NOTIFIER_SMS_RATE=-1"}, Want: "RETAIN_NOTIFIER_SMS_RATE (-sms-rate): must not be negative (0: unlimited), got -1"},
			{Env: []string{"RETAIN_NOTIFIER_POLL_INTERVAL=0s"}, Want: "RETAIN_NOTIFIER_POLL_INTERVAL (-poll-interval): must be positive, such as 1s, got 0s"},
			{Env: []string{"RETAIN_NOTIFIER_SMTP_ADDR=smtp:587", "RETAIN_NOTIFIER_SMTP_FROM=Shop <news@shop.example>", "RETAIN_NOTIFIER_SMTP_TLS=ssl"},
				Want: `RETAIN_NOTIFIER_SMTP_TLS (-smtp-tls): must be one of starttls, opportunistic, tls, none, got "ssl"`},
			{Env: []string{"RETAIN_NOTIFIER_SMTP_ADDR=smtp:587"}, Want: `RETAIN_NOTIFIER_SMTP_FROM (-smtp-from): must be set with RETAIN_NOTIFIER_SMTP_ADDR: the sender, such as "Shop <news@shop.example>"`},
			{Env: []string{"RETAIN_NOTIFIER_SMS_URL=ftp://sid:t0ken@sms.example/send?api_key=k3y"}, Want: `RETAIN_NOTIFIER_SMS_URL (-sms-url): want an http(s) URL, got "ftp://sms.example"`},
			{Env: []string{"RETAIN_NOTIFIER_WEBHOOK_URL=https://hooks.example/retain", "RETAIN_NOTIFIER_WEBHOOK_SECRET=s3cret"},
				Want: "RETAIN_NOTIFIER_WEBHOOK_SECRET (-webhook-secret): must be at least 16 bytes with RETAIN_NOTIFIER_WEBHOOK_URL, got 6"},
		}...)
}

// TestConfigPairsReportedTogether: when the first of a pair of settings
// that bound each other is bad, the second is still checked on its own,
// so both are reported at once.
func TestConfigPairsReportedTogether(t *testing.T) {
	cfg := notifier.DefaultConfig()
	cfg.RetryInitial, cfg.RetryMax = 0, -time.Second
	cfg.SendTimeout, cfg.Lease = 0, 0
	err := cfg.Validate()
	for _, want := range []string{
		"RETAIN_NOTIFIER_RETRY_INITIAL (-retry-initial): must be positive",
		"RETAIN_NOTIFIER_RETRY_MAX (-retry-max): must be positive",
		"RETAIN_NOTIFIER_SEND_TIMEOUT (-send-timeout): must be positive",
		"RETAIN_NOTIFIER_SEND_LEASE (-send-lease): must be positive",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v\nwant %s", err, want)
		}
	}
}
