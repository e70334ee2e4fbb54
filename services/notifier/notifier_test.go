package notifier_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
)

const (
	granted = eventsv1.ConsentState_CONSENT_STATE_GRANTED
	revoked = eventsv1.ConsentState_CONSENT_STATE_REVOKED
)

func TestOptedOutAndSuppressedCustomersGetNothing(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	s.customers(t, "shop",
		customer{id: "ok", email: "ok@example.com", emailConsent: granted},
		customer{id: "revoked", email: "revoked@example.com", emailConsent: revoked},
		customer{id: "never", email: "never@example.com"},
		customer{id: "bounced", email: "Bounced@Example.com", emailConsent: granted},
	)
	if _, err := s.client().AddSuppression(ctx, &notifierv1.AddSuppressionRequest{Suppression: &notifierv1.Suppression{
		Channel: notifierv1.Channel_CHANNEL_EMAIL, Address: "bounced@example.com", Reason: "hard_bounce"}}, s.token(t, "shop", auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"ok", "revoked", "never", "bounced"} {
		s.request(t, marketingEmail("shop", "r-"+c, c, "winback"), "")
	}
	want := map[string]string{"revoked": "consent_revoked", "never": "no_consent", "bounced": "suppressed_hard_bounce"}
	for c, code := range want {
		d := s.delivery(t, "shop", "r-"+c, "suppressed")
		if d.GetReasonCode() != code || len(d.GetDecisions()) == 0 {
			t.Errorf("%s: %s %q trail %v", c, d.GetStatus(), d.GetReasonCode(), d.GetDecisions())
		}
		if os := s.outcomes(t, "r-"+c); len(os) != 1 || os[0].GetOutcome() != notifierv1.Outcome_OUTCOME_SUPPRESSED || os[0].GetReasonCode() != code || os[0].GetOrigin().GetCampaignId() != "winback" {
			t.Errorf("%s: outcomes %v", c, os)
		}
	}
	d := s.delivery(t, "shop", "r-ok", "sent")
	stages := []string{}
	for _, x := range d.GetDecisions() {
		stages = append(stages, x.GetStage()+":"+x.GetVerdict())
	}
	if got := strings.Join(stages, " "); got != "consent:pass suppression:pass frequency_cap:pass quiet_hours:pass send:send send:sent" {
		t.Errorf("decision trail %s", got)
	}
	if os := s.outcomes(t, "r-ok"); len(os) != 1 || os[0].GetOutcome() != notifierv1.Outcome_OUTCOME_SENT || !strings.HasPrefix(os[0].GetProviderMessageId(), "<") {
		t.Errorf("outcomes %v", os)
	}
	if s.mail.count() != 1 || len(s.mail.to("ok@example.com")) != 1 {
		t.Fatalf("mailbox holds %d messages", s.mail.count())
	}
}

func TestRedeliveredAndDuplicatedRequestsSendOnce(t *testing.T) {
	s := setup(t)
	s.customers(t, "shop", customer{id: "c", email: "c@example.com", emailConsent: granted})
	r := marketingEmail("shop", "camp/enr-1/step-1", "c", "winback")
	s.request(t, r, "")
	s.request(t, r, "")                       // inside the stream's dedupe window
	s.request(t, r, "shop/republished-later") // beyond it: a new message, the same request id
	s.delivery(t, "shop", r.RequestId, "sent")
	time.Sleep(300 * time.Millisecond) // give a double send the chance to happen
	if n := s.mail.count(); n != 1 {
		t.Fatalf("%d emails for one request", n)
	}
	if os := s.outcomes(t, r.RequestId); len(os) != 1 {
		t.Fatalf("outcomes %v", os)
	}
}

func TestFrequencyCapHoldsAcrossCampaigns(t *testing.T) {
	s := setup(t)
	s.customers(t, "shop", customer{id: "c", email: "c@example.com", emailConsent: granted})
	s.request(t, marketingEmail("shop", "a", "c", "winback"), "")
	s.request(t, marketingEmail("shop", "b", "c", "loyalty"), "")
	s.delivery(t, "shop", "a", "sent")
	s.delivery(t, "shop", "b", "sent")
	normal := marketingEmail("shop", "n", "c", "vip")
	low := marketingEmail("shop", "l", "c", "nudge")
	low.Priority = notifierv1.Priority_PRIORITY_LOW
	normal.ExpiresAt = timestamppb.New(s.clock.Now().Add(10 * 24 * time.Hour)) // outlives the deferral
	s.request(t, normal, "")
	s.request(t, low, "")
	if d := s.delivery(t, "shop", "l", "suppressed"); d.GetReasonCode() != "frequency_cap" {
		t.Errorf("low: %v", d)
	}
	d := s.delivery(t, "shop", "n", "deferred")
	if d.GetReasonCode() != "frequency_cap" || !d.GetDueAt().AsTime().Equal(s.clock.Now().Add(7*24*time.Hour)) {
		t.Errorf("normal: %s until %s", d.GetReasonCode(), d.GetDueAt().AsTime())
	}
	os := s.outcomes(t, "n")
	if len(os) != 1 || os[0].GetOutcome() != notifierv1.Outcome_OUTCOME_DEFERRED || !os[0].GetDeferredUntil().AsTime().Equal(d.GetDueAt().AsTime()) {
		t.Errorf("outcomes %v", os)
	}
	// Transactional messages neither count nor are held back.
	tr := marketingEmail("shop", "t", "c", "")
	tr.Category = notifierv1.Category_CATEGORY_TRANSACTIONAL
	s.request(t, tr, "")
	s.delivery(t, "shop", "t", "sent")
	// A week later the slot frees and the deferred request goes out.
	s.clock.Set(s.clock.Now().Add(7*24*time.Hour + time.Minute))
	s.delivery(t, "shop", "n", "sent")
	if os := s.outcomes(t, "n"); len(os) != 2 || os[1].GetOutcome() != notifierv1.Outcome_OUTCOME_SENT || os[1].GetSequence() != 2 {
		t.Errorf("outcomes %v", os)
	}
	if s.mail.count() != 4 {
		t.Errorf("%d emails", s.mail.count())
	}
}

func TestQuietHoursDeferToTheLocalMorningAcrossTimeZonesAndDST(t *testing.T) {
	s := setup(t)
	// Saturday 2026-10-31 23:30 UTC: 02:00 Sunday in Tehran (+03:30),
	// 19:30 in New York the evening before the DST change (01:00 EST).
	s.clock.Set(time.Date(2026, 10, 31, 23, 30, 0, 0, time.UTC))
	s.customers(t, "shop",
		customer{id: "tehran", email: "t@example.com", tz: "Asia/Tehran", locale: "fa-IR", emailConsent: granted},
		customer{id: "ny", email: "ny@example.com", tz: "America/New_York", emailConsent: granted},
		customer{id: "la", email: "la@example.com", tz: "America/Los_Angeles", emailConsent: granted},
	)
	s.clock.Set(time.Date(2026, 11, 1, 1, 30, 0, 0, time.UTC)) // Tehran 05:00, New York 21:30 EDT, LA 18:30
	for _, c := range []string{"tehran", "ny", "la"} {
		s.request(t, marketingEmail("shop", "q-"+c, c, "winback"), "")
	}
	tehran := s.delivery(t, "shop", "q-tehran", "deferred")
	if want := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC); !tehran.GetDueAt().AsTime().Equal(want) {
		t.Errorf("Tehran deferred to %s, want %s (09:00 +03:30)", tehran.GetDueAt().AsTime(), want)
	}
	ny := s.delivery(t, "shop", "q-ny", "deferred")
	// 09:00 on Sunday is after the change back to EST (-05:00).
	if want := time.Date(2026, 11, 1, 14, 0, 0, 0, time.UTC); !ny.GetDueAt().AsTime().Equal(want) {
		t.Errorf("New York deferred to %s, want %s (09:00 EST)", ny.GetDueAt().AsTime(), want)
	}
	s.delivery(t, "shop", "q-la", "sent")
	s.clock.Set(time.Date(2026, 11, 1, 5, 31, 0, 0, time.UTC))
	s.delivery(t, "shop", "q-tehran", "sent")
	if d := s.delivery(t, "shop", "q-ny", "deferred"); d.GetStatus() != "deferred" {
		t.Errorf("ny %s", d.GetStatus())
	}
	// The Persian variant was used, right to left.
	m := s.mail.to("t@example.com")
	if len(m) != 1 {
		t.Fatalf("%d emails to Tehran", len(m))
	}
	s.mail.mu.Lock()
	raw := strings.Join(s.mail.raw, "\n")
	s.mail.mu.Unlock()
	if !strings.Contains(raw, `dir=3D"rtl"`) {
		t.Errorf("no dir=\"rtl\" in the Persian email")
	}
}

func TestProviderTimeoutThenCrashDoesNotDoubleSend(t *testing.T) {
	s := setup(t, func(c *notifier.Config) {
		c.SendTimeout, c.Lease = 200*time.Millisecond, time.Second
		c.RetryInitial, c.RetryMax = time.Hour, time.Hour
	})
	s.customers(t, "shop", customer{id: "c", phone: "+4915112345678", smsConsent: granted})
	// The provider accepts the first call but answers too late.
	s.sms.mu.Lock()
	s.sms.hang, s.sms.hangN = 2*time.Second, 1
	s.sms.mu.Unlock()
	r := marketingEmail("shop", "sms-1", "c", "winback")
	r.Channel = notifierv1.Channel_CHANNEL_SMS
	s.request(t, r, "")
	var d *notifierv1.Delivery
	testenv.WaitFor(t, "the first attempt to time out", func() bool {
		d = s.delivery(t, "shop", "sms-1", "queued", "sending")
		return d.GetStatus() == "queued" && d.GetAttempts() == 1
	})
	if d.GetAttempts() != 1 || !strings.Contains(d.GetDecisions()[len(d.GetDecisions())-1].GetReasonCode(), "timeout") {
		t.Fatalf("after the timeout: %v", d)
	}
	// Crash and restart; the retry is due an hour later.
	s.stop()
	s.clock.Set(s.clock.Now().Add(2 * time.Hour))
	s.start(t)
	d = s.delivery(t, "shop", "sms-1", "sent")
	calls, unique := s.sms.stats()
	if calls != 2 || unique != 1 {
		t.Fatalf("provider saw %d calls and %d distinct messages", calls, unique)
	}
	for _, h := range s.sms.headers {
		if h.Get("Idempotency-Key") != "shop/sms-1" || h.Get("Authorization") != "Bearer sms-key" {
			t.Errorf("headers %v", h)
		}
	}
	if os := s.outcomes(t, "sms-1"); len(os) != 1 || os[0].GetAttempts() != 2 || os[0].GetProviderMessageId() != "sms-shop/sms-1" {
		t.Errorf("outcomes %v", os)
	}

	// A crash in the middle of a send leaves the attempt recorded and not
	// finished: after the lease it is reconciled with the same key.
	r2 := marketingEmail("shop", "sms-2", "c", "")
	r2.Channel, r2.Category = notifierv1.Channel_CHANNEL_SMS, notifierv1.Category_CATEGORY_TRANSACTIONAL
	s.stop()
	if _, err := s.db.Exec(context.Background(), `INSERT INTO deliveries (tenant, request_id, customer_id, channel, category, priority, template_key, request, status, expires_at, requested_at, created_at, updated_at, attempts, lease_until, due_at)
		SELECT tenant, 'sms-2', customer_id, channel, 2, priority, template_key, request, 'sending', expires_at, requested_at, $1, $1, 1, $1::timestamptz + interval '1 second', $1 FROM deliveries WHERE request_id = 'sms-1'`, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.clock.Set(s.clock.Now().Add(time.Minute))
	s.start(t)
	d = s.delivery(t, "shop", "sms-2", "sent")
	if d.GetDecisions()[0].GetStage() != "reconcile" {
		t.Errorf("trail %v", d.GetDecisions())
	}
}

// A failure of the notifier's own database while preparing a message is
// not the provider's: the provider is not called, the delivery is retried,
// and the reason the shop reads names the notifier, not the database's
// error (hosts, tables, statements), which goes to the operator's log.
func TestNotifierDatabaseFailureIsNotReportedAsTheProviders(t *testing.T) {
	s := setup(t, func(c *notifier.Config) { c.RetryInitial, c.RetryMax = time.Hour, time.Hour })
	ctx := context.Background()
	s.sentSMS(t)

	// A second request, already decided and due, meets a templates table
	// the notifier cannot read.
	s.stop()
	s.storedSMS(t, "sms-2", "queued", 0, nil)
	if _, err := s.db.Exec(ctx, `ALTER TABLE template_versions RENAME TO template_versions_away`); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	var d *notifierv1.Delivery
	testenv.WaitFor(t, "the attempt to fail", func() bool {
		d = s.delivery(t, "shop", "sms-2", "queued", "sending", "failed")
		return len(d.GetDecisions()) > 0
	})
	last := d.GetDecisions()[len(d.GetDecisions())-1]
	if d.GetStatus() != "queued" || last.GetVerdict() != "retry" || last.GetReasonCode() != "notifier_unavailable" ||
		!strings.Contains(last.GetReason(), "could not load the template") || strings.Contains(last.GetReason(), "template_versions") {
		t.Fatalf("after the database failed: status %s, attempts %d, decision %v", d.GetStatus(), d.GetAttempts(), last)
	}
	if calls, _ := s.sms.stats(); calls != 1 {
		t.Fatalf("the provider was called %d times, want only the first request's", calls)
	}
	if logs := s.logs.String(); !strings.Contains(logs, "notifier could not prepare a message") || !strings.Contains(logs, "template_versions") {
		t.Errorf("the operator's log does not carry the database's error:\n%s", logs)
	}

	s.stop()
	if _, err := s.db.Exec(ctx, `ALTER TABLE template_versions_away RENAME TO template_versions`); err != nil {
		t.Fatal(err)
	}
	s.clock.Set(s.clock.Now().Add(2 * time.Hour))
	s.start(t)
	if d := s.delivery(t, "shop", "sms-2", "sent"); d.GetAttempts() != 2 {
		t.Errorf("sent on attempt %d, want 2", d.GetAttempts())
	}
	if calls, unique := s.sms.stats(); calls != 2 || unique != 2 {
		t.Fatalf("provider saw %d calls of %d messages, want 2 of 2", calls, unique)
	}
}

func TestOneClickUnsubscribeIsRecordedAndHonoured(t *testing.T) {
	s := setup(t)
	s.customers(t, "shop", customer{id: "c", email: "c@example.com", emailConsent: granted})
	s.request(t, marketingEmail("shop", "u-1", "c", "winback"), "")
	s.delivery(t, "shop", "u-1", "sent")
	s.oneClickUnsubscribe(t, "c@example.com")
	if p := s.emailMarketing(t, "shop", "c"); p.GetSubscribed() || p.GetSource() != "one_click" {
		t.Fatalf("preferences %v", p)
	}
	s.request(t, marketingEmail("shop", "u-2", "c", "winback"), "")
	if d := s.delivery(t, "shop", "u-2", "suppressed"); d.GetReasonCode() != "unsubscribed" {
		t.Errorf("after unsubscribing: %v", d)
	}
	bad, err := http.Post("http://"+s.httpAddr+"/v1/unsubscribe?t=forged.token", "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil || bad.StatusCode != 400 {
		t.Errorf("forged token: %v %v", bad, err)
	}
}

// oneClickUnsubscribe follows the List-Unsubscribe link of the last email
// to addr as a mail client's one-click unsubscribe does, after a link
// scanner's GET.
func (s *stack) oneClickUnsubscribe(t *testing.T, addr string) {
	t.Helper()
	ms := s.mail.to(addr)
	m := ms[len(ms)-1]
	if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Fatalf("headers %v", m.Header)
	}
	u, err := url.Parse(strings.Trim(m.Header.Get("List-Unsubscribe"), "<>"))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = s.httpAddr // the test's public URL
	// A link scanner's GET changes nothing.
	if resp, err := http.Get(u.String()); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %v %v", resp, err)
	}
	resp, err := http.Post(u.String(), "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST %v %v", resp, err)
	}
}

// emailMarketing is the customer's email marketing preference as
// GetPreferences (and `retain preferences get`) shows it.
func (s *stack) emailMarketing(t *testing.T, tenant, customer string) *notifierv1.ChannelPreference {
	t.Helper()
	p, err := s.client().GetPreferences(context.Background(), &notifierv1.GetPreferencesRequest{CustomerId: customer}, s.token(t, tenant, auth.ScopeRead))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range p.GetPreferences() {
		if x.GetChannel() == notifierv1.Channel_CHANNEL_EMAIL && x.GetCategory() == notifierv1.Category_CATEGORY_MARKETING {
			return x
		}
	}
	t.Fatalf("no email marketing preference in %v", p)
	return nil
}

func TestWebhookSignatureVerifies(t *testing.T) {
	s := setup(t)
	s.customers(t, "shop", customer{id: "c", email: "c@example.com"})
	r := &notifierv1.NotificationRequested{RequestId: "alert-1", TenantId: "shop", CustomerId: "c", Channel: notifierv1.Channel_CHANNEL_WEBHOOK,
		Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, TemplateKey: "detractor_support_alert",
		Variables: map[string]*notifierv1.TemplateValue{"score": {Value: &notifierv1.TemplateValue_Integer{Integer: 2}}}}
	s.request(t, r, "")
	s.delivery(t, "shop", "alert-1", "sent")
	s.hook.mu.Lock()
	defer s.hook.mu.Unlock()
	body := s.hook.accepted["shop/alert-1"]
	if !verifySignature(webhookSecret, s.hook.headers[0].Get("Retain-Signature"), body) || !strings.Contains(string(body), `"score": 2`) {
		t.Fatalf("signature %q does not verify body %s", s.hook.headers[0].Get("Retain-Signature"), body)
	}
	// One endpoint serves every shop: the signed body names it, and a
	// header says the same for routing.
	var signed struct {
		TenantID string `json:"tenant_id"`
	}
	if err := json.Unmarshal(body, &signed); err != nil || signed.TenantID != "shop" || s.hook.headers[0].Get("Retain-Tenant") != "shop" {
		t.Fatalf("tenant_id %q (%v), Retain-Tenant %q", signed.TenantID, err, s.hook.headers[0].Get("Retain-Tenant"))
	}
	if verifySignature("another secret", s.hook.headers[0].Get("Retain-Signature"), body) {
		t.Fatal("verifies with the wrong secret")
	}
}

func TestMissingVariableFailsTheDelivery(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	admin := s.token(t, "shop", auth.ScopeCampaignsWrite)
	_, err := s.client().CreateTemplate(ctx, &notifierv1.CreateTemplateRequest{Template: &notifierv1.Template{Key: "order_ready", Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Variables: []*notifierv1.VariableSpec{{Name: "order_id", Type: "text"}},
		Variants:  []*notifierv1.TemplateVariant{{Subject: "Order {{.order_id}}", Text: "Ready: {{.order_id}}"}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	s.customers(t, "shop", customer{id: "c", email: "c@example.com"})
	r := &notifierv1.NotificationRequested{RequestId: "o-1", TenantId: "shop", CustomerId: "c", Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, TemplateKey: "order_ready"}
	s.request(t, r, "")
	d := s.delivery(t, "shop", "o-1", "failed")
	if d.GetReasonCode() != "template_missing_variable" || !strings.Contains(d.GetReason(), "order_id") || s.mail.count() != 0 {
		t.Fatalf("%v, %d emails", d, s.mail.count())
	}
}

func TestBadInputIsInvalidArgumentNamingTheField(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	cred := s.token(t, "shop", auth.ScopeAdmin)
	check := func(err error, field string) {
		t.Helper()
		fieldViolation(t, err, field)
	}
	_, err := s.client().CreateTemplate(ctx, &notifierv1.CreateTemplateRequest{Template: &notifierv1.Template{Key: "x", Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Variants: []*notifierv1.TemplateVariant{{Subject: "Hi", Html: "<p>{{.points}}</p>"}}}}, cred)
	check(err, "template.variants[0].html")
	_, err = s.client().SetPreferences(ctx, &notifierv1.SetPreferencesRequest{CustomerId: "c", Preferences: []*notifierv1.ChannelPreference{{Channel: notifierv1.Channel_CHANNEL_WEBHOOK, Category: notifierv1.Category_CATEGORY_MARKETING}}}, cred)
	check(err, "preferences[0].channel")
	_, err = s.client().AddSuppression(ctx, &notifierv1.AddSuppressionRequest{Suppression: &notifierv1.Suppression{Channel: notifierv1.Channel_CHANNEL_SMS, Address: "not a phone"}}, cred)
	check(err, "suppression.address")
	_, err = s.client().ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{}, cred)
	check(err, "customer_id")
	// Read-only tokens cannot change templates.
	_, err = s.client().CreateTemplate(ctx, &notifierv1.CreateTemplateRequest{}, s.token(t, "shop", auth.ScopeRead))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("%v", err)
	}
	// Defaults are installed on first use. The same template saved again
	// stores nothing; a changed one is the next version.
	got, err := s.client().GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: "winback_90", Channel: notifierv1.Channel_CHANNEL_EMAIL}, cred)
	if err != nil {
		t.Fatal(err)
	}
	same, err := s.client().UpdateTemplate(ctx, &notifierv1.UpdateTemplateRequest{Template: got.GetTemplate()}, cred)
	if err != nil || !same.GetUnchanged() || same.GetTemplate().GetVersion() != 1 {
		t.Fatalf("the same template again: %v %v, want unchanged at version 1", same, err)
	}
	edited := got.GetTemplate()
	edited.Description += " (edited)"
	up, err := s.client().UpdateTemplate(ctx, &notifierv1.UpdateTemplateRequest{Template: edited}, cred)
	if err != nil || up.GetUnchanged() || up.GetTemplate().GetVersion() != 2 {
		t.Fatalf("an edited template: %v %v, want version 2", up, err)
	}
}
