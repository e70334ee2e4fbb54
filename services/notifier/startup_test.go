package notifier_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/retainhq/retain/services/notifier"
)

// TestStartupWarnsOfUnconfiguredChannels: a notifier without providers
// starts (a shop may not use every channel) but says, per channel, that
// its deliveries will fail and what to set.
func TestStartupWarnsOfUnconfiguredChannels(t *testing.T) {
	s := setup(t, func(c *notifier.Config) {
		c.SMTP.Addr, c.SMS.URL, c.Webhook.URL = "", "", ""
	})
	out := s.logs.String()
	for _, want := range []string{
		`channel=email set="RETAIN_NOTIFIER_SMTP_ADDR and RETAIN_NOTIFIER_SMTP_FROM, or RETAIN_NOTIFIER_OUTBOX_DIR to write messages to files"`,
		`channel=sms set="RETAIN_NOTIFIER_SMS_URL (and RETAIN_NOTIFIER_SMS_AUTH for the provider's credential), or RETAIN_NOTIFIER_OUTBOX_DIR to write messages to files"`,
		`channel=webhook set="RETAIN_NOTIFIER_WEBHOOK_URL and RETAIN_NOTIFIER_WEBHOOK_SECRET, or RETAIN_NOTIFIER_OUTBOX_DIR to write messages to files"`,
	} {
		re := regexp.MustCompile(`level=WARN msg="notification channel not configured: every delivery to it will be FAILED channel_not_configured" service=notifier ` + regexp.QuoteMeta(want))
		if !re.MatchString(out) {
			t.Errorf("no start-up warning %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "channel not configured"); n != 3 {
		t.Errorf("%d warnings, want one per channel:\n%s", n, out)
	}
}
