package campaign_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/bus"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

// treatedCustomer returns a customer id of the playbook's treated group
// (a holdout member is rightly sent nothing).
func treatedCustomer(tenant, campaign, prefix string) string {
	for i := 0; ; i++ {
		c := fmt.Sprintf("%s-%d", prefix, i)
		if !domain.InHoldout(tenant, campaign, c, 10) {
			return c
		}
	}
}

// sentTo returns the notifications to customer, by template key.
func sentTo(ns []notification, customer string) map[string]notification {
	out := map[string]notification{}
	for _, n := range ns {
		if n.GetCustomerId() == customer {
			out[n.GetTemplateKey()] = n
		}
	}
	return out
}

func checkRequest(t *testing.T, n notification, tenant, campaign string, ch notifierv1.Channel) {
	t.Helper()
	o := n.GetOrigin()
	if n.GetTenantId() != tenant || n.GetChannel() != ch || o.GetCampaignId() != campaign || o.GetCampaignVersion() != 1 ||
		n.GetRequestId() != campaign+"/"+o.GetEnrollmentId()+"/"+o.GetStepId() || n.msgID != tenant+"/"+n.GetRequestId() ||
		n.GetRequestedAt() == nil || n.GetExpiresAt() == nil {
		t.Fatalf("request %v (msg id %s)", n.NotificationRequested, n.msgID)
	}
}

// TestPlaybooksEndToEnd installs each playbook with one call and drives
// it from the events (or signal, or schedule) that trigger it to the
// notification.requested on RETAIN_NOTIFICATIONS.
func TestPlaybooksEndToEnd(t *testing.T) {
	s := setup(t)
	ctx := context.Background()

	list, err := s.client().ListPlaybooks(ctx, &campaignv1.ListPlaybooksRequest{}, s.token(t, "pb"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetPlaybooks()) != 9 {
		t.Fatalf("%d playbooks", len(list.GetPlaybooks()))
	}
	var tenants []string // one per playbook
	install := func(t *testing.T, tenant, name string) *campaignv1.Campaign {
		t.Helper()
		tenants = append(tenants, tenant)
		c, err := s.client().InstallPlaybook(ctx, &campaignv1.InstallPlaybookRequest{Name: name}, s.token(t, tenant))
		if err != nil {
			t.Fatal(err)
		}
		if c.GetCampaign().GetPlaybook() != name || c.GetCampaign().GetVersion() != 1 || c.GetCampaign().GetState() != campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE {
			t.Fatalf("installed %v", c.GetCampaign())
		}
		return c.GetCampaign()
	}

	t.Run("thank-you: three days after the order, at 10:00 local", func(t *testing.T) {
		const tenant = "pb-thanks"
		install(t, tenant, "thank-you")
		c := treatedCustomer(tenant, "thank-you", "c")
		now := s.clock.Now()
		s.publish(t, tenant, profileEv("p1", c, now.Add(-time.Hour), "Asia/Tehran", nil), orderEv("o1", c, now.Add(-time.Hour), 4200))
		s.caughtUp(t)
		if got := sentTo(s.notifications(t, tenant), c); len(got) != 0 {
			t.Fatalf("sent before the wait: %v", got)
		}
		s.clock.Advance(3*day + 22*time.Hour)
		s.fire(t)
		n, ok := sentTo(s.notifications(t, tenant), c)["thank_you_feedback"]
		if !ok {
			t.Fatal("no thank_you_feedback")
		}
		checkRequest(t, n, tenant, "thank-you", notifierv1.Channel_CHANNEL_EMAIL)
		if n.GetCategory() != notifierv1.Category_CATEGORY_MARKETING || n.GetVariables()["order_id"].GetText() != "o1" ||
			n.GetVariables()["order_total"].GetMoney().GetAmountMinor() != 4200 {
			t.Fatalf("request %v", n.NotificationRequested)
		}
	})

	t.Run("onboarding: two messages after the first order only", func(t *testing.T) {
		const tenant = "pb-onboard"
		install(t, tenant, "onboarding")
		c := treatedCustomer(tenant, "onboarding", "c")
		old := treatedCustomer(tenant, "onboarding", "old")
		now := s.clock.Now()
		s.publish(t, tenant, orderEv("old-1", old, now.Add(-60*day), 1000), orderEv("old-2", old, now.Add(-time.Hour), 1000),
			orderEv("o1", c, now.Add(-time.Hour), 2500))
		s.caughtUp(t)
		s.clock.Advance(2 * day)
		s.fire(t)
		s.clock.Advance(7 * day)
		s.fire(t)
		got := sentTo(s.notifications(t, tenant), c)
		if _, ok := got["onboarding_1"]; !ok {
			t.Fatalf("no onboarding_1: %v", got)
		}
		if _, ok := got["onboarding_2"]; !ok {
			t.Fatalf("no onboarding_2: %v", got)
		}
		if got := sentTo(s.notifications(t, tenant), old); len(got) != 0 {
			t.Fatalf("a repeat buyer was onboarded: %v", got)
		}
	})

	t.Run("loyalty reward: a coupon on the third order in 12 months, redeemed", func(t *testing.T) {
		const tenant = "pb-loyal"
		install(t, tenant, "loyalty-reward")
		c := treatedCustomer(tenant, "loyalty-reward", "c")
		now := s.clock.Now()
		s.publish(t, tenant, orderEv("o1", c, now.Add(-200*day), 3000), orderEv("o2", c, now.Add(-100*day), 3000))
		s.caughtUp(t)
		s.publish(t, tenant, orderEv("o3", c, now.Add(-time.Minute), 3000))
		s.caughtUp(t)
		n, ok := sentTo(s.notifications(t, tenant), c)["loyalty_reward"]
		if !ok {
			t.Fatal("no loyalty_reward")
		}
		cp := n.GetVariables()["coupon"].GetCoupon()
		if len(cp.GetCode()) != len("LOYAL-XXXXX-XXXXX") || cp.GetPercentOff() != 15 || !cp.GetExpiresAt().AsTime().Equal(now.Add(30*day)) {
			t.Fatalf("coupon %v", cp)
		}
		s.publish(t, tenant, couponOrderEv("o4", c, now.Add(time.Minute), 2550, cp.GetCode()))
		s.caughtUp(t)
		r, err := s.client().GetReport(ctx, &campaignv1.GetReportRequest{Id: "loyalty-reward"}, s.token(t, tenant))
		if err != nil {
			t.Fatal(err)
		}
		if rep := r.GetReport(); rep.GetCouponsIssued() != 1 || rep.GetCouponsRedeemed() != 1 || rep.GetConversionsTreated() != 1 ||
			rep.GetMessagesRequested() != 1 || len(rep.GetRevenue()) != 1 || rep.GetRevenue()[0].GetTreatedMinor() != 2550 {
			t.Fatalf("report %v", rep)
		}
	})

	t.Run("win-back: 90 days, then a coupon at 180", func(t *testing.T) {
		const tenant = "pb-winback"
		install(t, tenant, "win-back")
		c := treatedCustomer(tenant, "win-back", "c")
		recent := treatedCustomer(tenant, "win-back", "recent")
		now := s.clock.Now()
		s.publish(t, tenant, orderEv("o1", c, now.Add(-100*day), 5000), orderEv("o2", recent, now.Add(-10*day), 5000))
		s.caughtUp(t)
		s.audiences(t)
		got := sentTo(s.notifications(t, tenant), c)
		if _, ok := got["winback_90"]; !ok || len(got) != 1 {
			t.Fatalf("after 100 days: %v", got)
		}
		if len(sentTo(s.notifications(t, tenant), recent)) != 0 {
			t.Fatal("a recent buyer was sent a win-back")
		}
		s.clock.Advance(91 * day)
		s.fire(t)
		s.audiences(t) // once per 365 days: no second entry
		got = sentTo(s.notifications(t, tenant), c)
		n, ok := got["winback_180"]
		if !ok || len(got) != 2 {
			t.Fatalf("after 190 days: %v", got)
		}
		if cp := n.GetVariables()["coupon"].GetCoupon(); cp.GetPercentOff() != 20 || len(cp.GetCode()) != len("BACK-XXXXX-XXXXX") {
			t.Fatalf("coupon %v", cp)
		}
	})

	t.Run("vip care: the top 20% by revenue", func(t *testing.T) {
		const tenant = "pb-vip"
		install(t, tenant, "vip-care")
		now := s.clock.Now()
		var evs []*eventsv1.Event
		for i := range 10 {
			evs = append(evs, orderEv(fmt.Sprintf("o%d", i), fmt.Sprintf("v-%d", i), now.Add(-30*day), int64(1000*(i+1))))
		}
		s.publish(t, tenant, evs...)
		s.caughtUp(t)
		s.audiences(t)
		var got []string
		for _, n := range s.notifications(t, tenant) {
			if n.GetTemplateKey() != "vip_care" {
				t.Fatalf("template %s", n.GetTemplateKey())
			}
			got = append(got, n.GetCustomerId())
		}
		for _, c := range got {
			if c != "v-8" && c != "v-9" {
				t.Fatalf("vip care to %v, want only the top two of ten (v-8, v-9, less holdout)", got)
			}
		}
		if len(got) == 0 && !domain.InHoldout(tenant, "vip-care", "v-9", 10) {
			t.Fatal("no vip care sent")
		}
	})

	t.Run("detractor recovery: an apology and a support webhook", func(t *testing.T) {
		const tenant = "pb-detractor"
		pb := install(t, tenant, "detractor-recovery")
		c := treatedCustomer(tenant, "detractor-recovery", "c")
		happy := treatedCustomer(tenant, "detractor-recovery", "happy")
		now := s.clock.Now()
		s.publish(t, tenant, npsComment("s1", c, now.Add(-time.Minute), 3, "late twice"), npsEv("s2", happy, now.Add(-time.Minute), 9))
		s.caughtUp(t)
		got := sentTo(s.notifications(t, tenant), c)
		checkRequest(t, got["detractor_apology"], tenant, "detractor-recovery", notifierv1.Channel_CHANNEL_EMAIL)
		hook := got["detractor_support_alert"]
		checkRequest(t, hook, tenant, "detractor-recovery", notifierv1.Channel_CHANNEL_WEBHOOK)
		if hook.GetCategory() != notifierv1.Category_CATEGORY_TRANSACTIONAL || hook.GetVariables()["score"].GetInteger() != 3 ||
			hook.GetVariables()["reason"].GetText() != "late twice" ||
			hook.GetPriority() != notifierv1.Priority_PRIORITY_NORMAL || hook.GetRank() != pb.GetPriority() {
			t.Fatalf("webhook %v", hook.NotificationRequested)
		}
		if len(sentTo(s.notifications(t, tenant), happy)) != 0 {
			t.Fatal("a promoter got detractor recovery")
		}
	})

	t.Run("passive nudge: NPS 7-8, a day later", func(t *testing.T) {
		const tenant = "pb-passive"
		install(t, tenant, "passive-nudge")
		c := treatedCustomer(tenant, "passive-nudge", "c")
		s.publish(t, tenant, npsEv("s1", c, s.clock.Now().Add(-time.Minute), 7))
		s.caughtUp(t)
		s.clock.Advance(2 * day)
		s.fire(t)
		if _, ok := sentTo(s.notifications(t, tenant), c)["passive_nudge"]; !ok {
			t.Fatal("no passive_nudge")
		}
	})

	t.Run("churn outreach: on a change to the high band", func(t *testing.T) {
		const tenant = "pb-churn"
		install(t, tenant, "churn-outreach")
		c := treatedCustomer(tenant, "churn-outreach", "c")
		gone := treatedCustomer(tenant, "churn-outreach", "gone")
		now := s.clock.Now()
		s.publish(t, tenant, orderEv("o1", c, now.Add(-200*day), 3000), orderEv("o2", gone, now.Add(-400*day), 3000))
		s.caughtUp(t)
		for i, cust := range []string{c, gone} {
			s.publishOn(t, bus.SignalSubject(tenant, "churn.risk_changed"), fmt.Sprintf("%s/%s/%d", tenant, cust, i), "churn.risk_changed", &churnv1.ChurnRiskChanged{
				TenantId: tenant, CustomerId: cust, Score: 81, Band: churnv1.RiskBand_RISK_BAND_HIGH, PreviousBand: churnv1.RiskBand_RISK_BAND_MEDIUM,
				ComputedAt: ts(now), AsOf: ts(now)})
		}
		s.caughtUp(t)
		if _, ok := sentTo(s.notifications(t, tenant), c)["churn_outreach"]; !ok {
			t.Fatal("no churn_outreach")
		}
		if got := sentTo(s.notifications(t, tenant), gone); len(got) != 0 {
			t.Fatalf("a customer whose last order was 400 days ago got %v", got)
		}
	})

	t.Run("renewal reminder: 14 days before the renewal date", func(t *testing.T) {
		const tenant = "pb-renewal"
		install(t, tenant, "renewal-reminder")
		c := treatedCustomer(tenant, "renewal-reminder", "c")
		later := treatedCustomer(tenant, "renewal-reminder", "later")
		now := s.clock.Now()
		s.publish(t, tenant,
			profileEv("p1", c, now.Add(-time.Hour), "", map[string]string{"renewal_date": now.Add(10 * day).Format(time.DateOnly)}),
			profileEv("p2", later, now.Add(-time.Hour), "", map[string]string{"renewal_date": now.Add(40 * day).Format(time.DateOnly)}))
		s.caughtUp(t)
		s.audiences(t)
		if _, ok := sentTo(s.notifications(t, tenant), c)["renewal_reminder"]; !ok {
			t.Fatal("no renewal_reminder")
		}
		if len(sentTo(s.notifications(t, tenant), later)) != 0 {
			t.Fatal("reminded 40 days ahead")
		}
	})

	t.Run("the messages fit the notifier's default templates", func(t *testing.T) {
		var sent []notification
		for _, tenant := range tenants {
			sent = append(sent, s.notifications(t, tenant)...)
		}
		checkDefaultTemplates(t, sent)
	})
}

// TestRenewalDateIsATime: the renewal date reaches the notifier as the
// time its templates declare (a text value fails every delivery), on the
// day of the renewal in the customer's time zone, when a customer.updated
// triggers the campaign as when the daily audience does.
func TestRenewalDateIsATime(t *testing.T) {
	s := setup(t)
	const tenant = "renewal-time"
	s.create(t, tenant, `
id: on-profile
name: Renewal reminder on a profile update
trigger: {event: customer.updated}
conditions: [{renewal_within_days: 14}]
steps:
  - {id: remind, send: {channel: CHANNEL_EMAIL, template_key: renewal_reminder, category: CATEGORY_TRANSACTIONAL}}
`)
	now := s.clock.Now()
	renews := now.Add(10 * day).Format(time.DateOnly)
	s.publish(t, tenant, profileEv("p1", "c-ny", now.Add(-time.Hour), "America/New_York", map[string]string{"renewal_date": renews}))
	s.caughtUp(t)
	n, ok := sentTo(s.notifications(t, tenant), "c-ny")["renewal_reminder"]
	if !ok {
		t.Fatal("no renewal_reminder")
	}
	declared := ""
	for _, v := range defaultTemplates(t)[templateRef{"renewal_reminder", notifierv1.Channel_CHANNEL_EMAIL}].GetVariables() {
		if v.GetName() == "renewal_date" {
			declared = v.GetType()
		}
	}
	v := n.GetVariables()["renewal_date"]
	ny, _ := time.LoadLocation("America/New_York")
	if got := valueType(v); got != declared {
		t.Fatalf("renewal_date is %s (%v), the template declares %s", got, v, declared)
	}
	if got := v.GetTime().AsTime().In(ny).Format(time.DateOnly); got != renews {
		t.Fatalf("renewal_date is %s in the customer's zone, want %s", got, renews)
	}
}
