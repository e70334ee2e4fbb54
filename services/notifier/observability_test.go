package notifier_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
)

// TestOutcomesCountedOnceWhenCommitted: each outcome event on
// RETAIN_DELIVERIES is counted once in retain.notifier.deliveries, by
// outcome, channel and reason, whichever transaction decided it (the
// requests consumer's batch, the timers, the sender), also when the
// batch that decided it first failed at COMMIT and was redelivered.
func TestOutcomesCountedOnceWhenCommitted(t *testing.T) {
	s := setup(t, func(c *notifier.Config) { c.SMS.URL = "" })
	ctx := context.Background()
	// tokyo: 21:00 there, quiet hours; no: without marketing consent.
	s.customers(t, "shop",
		customer{id: "ok", email: "ok@example.com", phone: "+4915112345678", emailConsent: granted},
		customer{id: "tokyo", email: "tokyo@example.com", tz: "Asia/Tokyo", emailConsent: granted},
		customer{id: "no", email: "no@example.com"},
	)
	// The requests are on the stream when the consumer starts, so they
	// come in one batch, and the first COMMIT of a batch fails (a deferred
	// trigger; a sequence, unlike a row, survives the rollback).
	s.stop()
	if _, err := s.db.Exec(ctx, `
		CREATE SEQUENCE fail_once;
		CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('fail_once') = 1 THEN RAISE EXCEPTION 'injected: the first commit of a requests batch fails'; END IF;
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER fail_once AFTER INSERT ON deliveries DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW EXECUTE FUNCTION fail_once();`); err != nil {
		t.Fatal(err)
	}
	sms := marketingEmail("shop", "sms", "ok", "")
	sms.Channel, sms.Category = notifierv1.Channel_CHANNEL_SMS, notifierv1.Category_CATEGORY_TRANSACTIONAL
	for _, r := range []*notifierv1.NotificationRequested{
		marketingEmail("shop", "sent", "ok", "winback"),
		marketingEmail("shop", "quiet", "tokyo", "winback"),
		marketingEmail("shop", "no-consent", "no", "winback"),
		marketingEmail("shop", "ghost", "nobody", "winback"),
		sms,
	} {
		s.request(t, r, "")
	}
	s.start(t)
	s.delivery(t, "shop", "sent", "sent")
	s.delivery(t, "shop", "quiet", "deferred")
	s.delivery(t, "shop", "no-consent", "suppressed")
	s.delivery(t, "shop", "ghost", "failed")
	s.delivery(t, "shop", "sms", "failed")
	var calls int64
	if err := s.db.QueryRow(ctx, `SELECT last_value FROM fail_once`).Scan(&calls); err != nil || calls < 2 {
		t.Fatalf("the injected commit failure did not happen and pass (%d trigger calls, %v)", calls, err)
	}
	// Past 09:00 in Tokyo the timers send the deferred one.
	s.clock.Advance(13 * time.Hour)
	s.delivery(t, "shop", "quiet", "sent")

	const name = "retain.notifier.deliveries"
	want := map[string]int64{
		"outcome=sent channel=email":                                   2,
		"outcome=deferred channel=email reason=quiet_hours":            1,
		"outcome=suppressed channel=email reason=no_consent":           1,
		"outcome=failed channel=email reason=unknown_customer":         1,
		"outcome=failed channel=sms reason=channel_not_configured":     1,
		"outcome=failed channel=webhook reason=channel_not_configured": 0,
	}
	for attrs, n := range want {
		if got := testenv.CounterSum(t, s.metrics, name, strings.Fields(attrs)...); got != n {
			t.Errorf("%s{%s} = %d, want %d", name, attrs, got, n)
		}
	}
	var events int
	for _, id := range []string{"sent", "quiet", "no-consent", "ghost", "sms"} {
		events += len(s.outcomes(t, id))
	}
	if got := testenv.CounterSum(t, s.metrics, name); got != 6 || events != 6 {
		t.Errorf("%d outcomes counted for %d outcome events, want 6 of each", got, events)
	}
	if got := testenv.CounterSum(t, s.metrics, "retain.notifier.provider.attempts", "channel=email", "result=accepted"); got != 2 {
		t.Errorf("%d accepted email provider calls counted, want 2", got)
	}
	// Started twice, warned twice: of sms only.
	warning := `level=WARN msg="notification channel not configured: every delivery to it will be FAILED channel_not_configured" service=notifier channel=sms set="RETAIN_NOTIFIER_SMS_URL `
	if n, sms := strings.Count(s.logs.String(), "notification channel not configured"), strings.Count(s.logs.String(), warning); n != 2 || sms != 2 {
		t.Errorf("%d start-up warnings, %d of them about sms; want one about sms per start:\n%s", n, sms, s.logs.String())
	}
}

// TestProviderFailuresLoggedAggregated: a webhook endpoint that is down
// fails 40 calls (20 requests, each retried once) in two minutes; the log
// says so in 3 lines, not 40: the first failure with the provider's
// answer, one count a minute later, the recovery. The metrics count every
// call.
func TestProviderFailuresLoggedAggregated(t *testing.T) {
	s := setup(t, func(c *notifier.Config) { c.RetryInitial, c.RetryMax = time.Minute, time.Minute })
	ctx := context.Background()
	s.customers(t, "shop", customer{id: "c", email: "c@example.com"})
	s.hook.mu.Lock()
	s.hook.down = 503
	s.hook.mu.Unlock()
	const n = 20
	for i := range n {
		s.request(t, &notifierv1.NotificationRequested{RequestId: fmt.Sprintf("alert-%d", i), TenantId: "shop", CustomerId: "c",
			Channel: notifierv1.Channel_CHANNEL_WEBHOOK, Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, TemplateKey: "detractor_support_alert",
			Variables: map[string]*notifierv1.TemplateValue{"score": {Value: &notifierv1.TemplateValue_Integer{Integer: 2}}}}, "")
	}
	attempted := func(attempts int) {
		t.Helper()
		testenv.WaitFor(t, fmt.Sprintf("%d failed attempts each", attempts), func() bool {
			var k int
			_ = s.db.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE status = 'queued' AND attempts = $1`, attempts).Scan(&k)
			return k == n
		})
	}
	lines := func(msg string) []string {
		var out []string
		for _, l := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(l, `msg="`+msg) {
				out = append(out, l)
			}
		}
		return out
	}
	attempted(1)
	first := lines("notification provider failing")
	if len(first) != 1 || !regexp.MustCompile(`level=WARN .* channel=webhook failures=1 tenant=shop request_id=alert-\d+ attempt=1 reason=provider_unavailable will_retry=true error="HTTP 503 Service Unavailable: provider down for maintenance"`).MatchString(first[0]) {
		t.Fatalf("after %d failures, want one line with the first one's request and the provider's answer, got:\n%s", n, s.logs.String())
	}
	s.clock.Advance(2 * time.Minute) // the retries come due
	attempted(2)
	if still := lines("notification provider still failing"); len(still) != 1 || !strings.Contains(still[0], "failures=20 ") || !strings.Contains(still[0], "failing_for=2m0s") {
		t.Fatalf("after the retries failed, want one line counting the failures since the first, got:\n%s", s.logs.String())
	}
	s.hook.mu.Lock()
	s.hook.down = 0
	s.hook.mu.Unlock()
	s.clock.Advance(2 * time.Minute)
	for i := range n {
		s.delivery(t, "shop", fmt.Sprintf("alert-%d", i), "sent")
	}
	if up := lines("notification provider accepts messages again"); len(up) != 1 || !strings.Contains(up[0], "level=INFO") ||
		!strings.Contains(up[0], "channel=webhook failures=40 failing_for=4m0s") {
		t.Errorf("want one recovery line counting all 40 failures, got:\n%s", s.logs.String())
	}
	if got := len(lines("notification provider")); got != 3 {
		t.Errorf("%d provider lines for 40 failures, want 3:\n%s", got, s.logs.String())
	}
	for attrs, want := range map[string]int64{
		"channel=webhook result=retried reason=provider_unavailable": 2 * n,
		"channel=webhook result=accepted":                            n,
	} {
		if got := testenv.CounterSum(t, s.metrics, "retain.notifier.provider.attempts", strings.Fields(attrs)...); got != want {
			t.Errorf("retain.notifier.provider.attempts{%s} = %d, want %d", attrs, got, want)
		}
	}
	if got := testenv.CounterSum(t, s.metrics, "retain.notifier.deliveries", "outcome=sent", "channel=webhook"); got != n {
		t.Errorf("%d webhook deliveries counted sent, want %d", got, n)
	}
	if strings.Contains(s.logs.String(), "channel not configured") {
		t.Errorf("start-up warned of a channel not configured, though all are:\n%s", s.logs.String())
	}
}
