package notifier_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/testenv"
)

// TestProviderSettingsRefused: the SMTP pool and timeout and the SMS
// credential's header, which were used as given (or quietly replaced) and
// failed every message at the provider call, refuse start-up, named as
// every setting is, with every other bad setting at once; a header that
// may hold the credential is described, never shown.
func TestProviderSettingsRefused(t *testing.T) {
	valid := append(validSettings(t),
		"RETAIN_NOTIFIER_SMTP_ADDR=smtp:587", "RETAIN_NOTIFIER_SMTP_FROM=Shop <news@shop.example>",
		"RETAIN_NOTIFIER_SMS_URL=https://sms.example/v1/send", "RETAIN_NOTIFIER_SMS_AUTH=Bearer sk_live_0451")
	parse := func(env ...string) error {
		_, err := parseSettings(slices.Concat(valid, env))
		return err
	}
	const pool, timeout = "RETAIN_NOTIFIER_SMTP_POOL_SIZE (-smtp-pool-size): ", "RETAIN_NOTIFIER_SMTP_TIMEOUT (-smtp-timeout): "
	const header, value = "RETAIN_NOTIFIER_SMS_AUTH_HEADER (-sms-auth-header): ", "RETAIN_NOTIFIER_SMS_AUTH (-sms-auth): "
	const wantName = "want a header name such as Authorization (letters, digits and !#$%&'*+-.^_`|~), got "
	// The messages are matched whole, so none shows the credential.
	testenv.ConfigMessages(t, valid, parseSettings, buildNotifier,
		[]testenv.ConfigCase{
			{Env: []string{"RETAIN_NOTIFIER_SMTP_POOL_SIZE=0"}, Want: pool + "must be 1-1000, got 0"},
			{Env: []string{"RETAIN_NOTIFIER_SMTP_POOL_SIZE=-3"}, Want: pool + "must be 1-1000, got -3"},
			{Env: []string{"RETAIN_NOTIFIER_SMTP_POOL_SIZE=100000"}, Want: pool + "must be 1-1000, got 100000"},
			{Env: []string{"RETAIN_NOTIFIER_SMTP_TIMEOUT=0s"}, Want: timeout + "must be positive and at most 10m (RFC 5321's longest command timeout), such as 30s, got 0s"},
			{Env: []string{"RETAIN_NOTIFIER_SMTP_TIMEOUT=-5s"}, Want: timeout + "must be positive and at most 10m (RFC 5321's longest command timeout), such as 30s, got -5s"},
			{Env: []string{"RETAIN_NOTIFIER_SMTP_TIMEOUT=30m"}, Want: timeout + "must be positive and at most 10m (RFC 5321's longest command timeout), such as 30s, got 30m0s"},
			{Env: []string{"RETAIN_NOTIFIER_SMS_AUTH_HEADER=Authorization: Bearer sk_live_0451"},
				Want: header + wantName + "34 bytes with a colon at byte 13: the header's value goes in RETAIN_NOTIFIER_SMS_AUTH (not shown: it may hold the credential)"},
			{Env: []string{"RETAIN_NOTIFIER_SMS_AUTH_HEADER=X-Api-Key\r\nX-Injected: 1"},
				Want: header + wantName + "24 bytes with a line break (CR or LF) at byte 9 (not shown: it may hold the credential)"},
			{Env: []string{"RETAIN_NOTIFIER_SMS_AUTH_HEADER=X Api Key"}, Want: header + wantName + "9 bytes with a space at byte 1 (not shown: it may hold the credential)"},
			{Env: []string{"RETAIN_NOTIFIER_SMS_AUTH_HEADER="}, Want: header + "must be set with RETAIN_NOTIFIER_SMS_AUTH: the header carrying it, such as Authorization"},
			{Env: []string{"RETAIN_NOTIFIER_SMS_AUTH=Bearer sk_live_0451\r\nX-Injected: 1"},
				Want: value + "must be one line without control characters (a header value), got 34 bytes with a line break (CR or LF) at byte 19 (not shown: it is the credential)"},
			{Env: []string{"RETAIN_NOTIFIER_SMS_AUTH=Bearer sk_live_0451\x00"}, Want: value + "must be one line without control characters (a header value), got 20 bytes with the control character U+0000 at byte 19 (not shown: it is the credential)"},
		}...)
	// Every bad setting at once, with the others'.
	err := parse("RETAIN_NOTIFIER_SMTP_POOL_SIZE=0", "RETAIN_NOTIFIER_SMTP_TIMEOUT=0s", "RETAIN_NOTIFIER_SMS_AUTH_HEADER=Authorization:",
		"RETAIN_NOTIFIER_SMS_AUTH=x\n", "RETAIN_NOTIFIER_CAP_MAX=-1")
	for _, want := range []string{"invalid configuration (5 problems):", "\n  - RETAIN_NOTIFIER_CAP_MAX", "\n  - " + pool, "\n  - " + timeout, "\n  - " + header, "\n  - " + value} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse = %v\nwant it to list %q", err, want)
		}
	}
	// With an outbox directory nothing is sent: the providers' settings
	// are not used, and not checked.
	if err := parse("RETAIN_NOTIFIER_OUTBOX_DIR=/tmp/outbox", "RETAIN_NOTIFIER_SMTP_POOL_SIZE=0", "RETAIN_NOTIFIER_SMS_AUTH_HEADER=Authorization:"); err != nil {
		t.Errorf("with an outbox directory: %v", err)
	}
}
