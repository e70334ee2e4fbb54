package campaign_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/campaign/campaignfile"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

// create stores a campaign from its file form.
func (s *stack) create(t *testing.T, tenant, file string) *campaignv1.Campaign {
	t.Helper()
	c, err := campaignfile.Decode([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.client().CreateCampaign(context.Background(), &campaignv1.CreateCampaignRequest{Campaign: c}, s.token(t, tenant))
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCampaign()
}

func sendNow(id, entry string, holdout int) string {
	return fmt.Sprintf(`
id: %s
name: Send at once
trigger: {event: order.placed}
entry: %s
holdout_percent: %d
steps:
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}}
`, id, entry, holdout)
}

func (s *stack) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// replayFacts makes the facts consumer read RETAIN_EVENTS again from the
// start with an empty inbox: every event is redelivered as new.
func (s *stack) replayFacts(t *testing.T) {
	t.Helper()
	s.stopAll()
	ctx := context.Background()
	if err := s.js.DeleteConsumer(ctx, bus.EventsStream, campaign.FactsConsumer); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM bus_inbox`); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	s.caughtUp(t)
}

// TestNoCustomerEnrolledTwice sends each trigger several times: the same
// order under two event ids (a client retry without its id), more orders
// than the policy allows, concurrent workers, and finally a redelivery of
// the whole stream with an empty inbox. The entry policies hold.
func TestNoCustomerEnrolledTwice(t *testing.T) {
	s := setup(t, func(c *campaign.Config) { c.Workers = 4; c.BatchSize = 7 })
	const tenant = "shop"
	s.create(t, tenant, sendNow("per-order", "{once_per_key: order_id}", 0))
	s.create(t, tenant, sendNow("once", "{once_per_customer: {}}", 0))
	s.create(t, tenant, sendNow("monthly", "{once_per: 30d}", 0))
	now := s.clock.Now()
	var evs []*eventsv1.Event
	for c := range 40 {
		cust := fmt.Sprintf("c-%02d", c)
		for o := range 3 {
			ev := orderEv(fmt.Sprintf("%s-o%d", cust, o), cust, now.Add(-time.Duration(3-o)*time.Hour), 1000)
			retry := orderEv(fmt.Sprintf("%s-o%d-retry", cust, o), cust, now.Add(-time.Duration(3-o)*time.Hour), 1000)
			retry.GetOrderPlaced().OrderId = ev.GetOrderPlaced().GetOrderId()
			evs = append(evs, ev, retry)
		}
	}
	s.publish(t, tenant, evs...)
	s.caughtUp(t)
	check := func(t *testing.T) {
		t.Helper()
		for _, tc := range []struct {
			campaign string
			want     int
		}{{"per-order", 120}, {"once", 40}, {"monthly", 40}} {
			if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = $1`, tc.campaign); n != tc.want {
				t.Errorf("%s: %d enrollments, want %d", tc.campaign, n, tc.want)
			}
			sent := map[string]int{}
			for _, n := range s.notifications(t, tenant) {
				if n.GetOrigin().GetCampaignId() == tc.campaign {
					sent[n.GetRequestId()]++
				}
			}
			if len(sent) != tc.want {
				t.Errorf("%s: %d notifications, want %d", tc.campaign, len(sent), tc.want)
			}
		}
		if n := s.count(t, `SELECT count(*) FROM (SELECT 1 FROM enrollments WHERE campaign_id IN ('once', 'monthly') GROUP BY campaign_id, customer_id HAVING count(*) > 1) d`); n != 0 {
			t.Errorf("%d customers enrolled twice", n)
		}
	}
	t.Run("duplicates and concurrent workers", check)
	t.Run("redelivery of the whole stream", func(t *testing.T) {
		s.replayFacts(t)
		check(t)
	})
	t.Run("once per 30 days admits again after 30 days", func(t *testing.T) {
		s.clock.Advance(31 * day)
		s.publish(t, tenant, orderEv("late", "c-00", s.clock.Now(), 1000))
		testenv.WaitFor(t, "the second monthly entry", func() bool {
			return s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'monthly' AND customer_id = 'c-00'`) == 2
		})
		s.caughtUp(t)
		if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'once' AND customer_id = 'c-00'`); n != 1 {
			t.Fatalf("%d once enrollments of c-00, want 1", n)
		}
	})
}

// TestLateOrderReevaluatesLaterOrders delivers a customer's second order
// after their third (a webhook retried late): the third order, applied
// when it looked like the second, is evaluated again and enters the
// third-order campaign; nothing entered already enters twice, under any
// entry policy, also when the whole stream is redelivered.
func TestLateOrderReevaluatesLaterOrders(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	s.create(t, tenant, `
id: third
name: Third order
trigger: {event: order.placed}
conditions: [{order_count: {min: 3, max: 3, within_days: 365}}]
entry: {once_per: 365d}
steps:
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: loyalty_reward}}
`)
	s.create(t, tenant, sendNow("per-order", "{once_per_key: order_id}", 0))
	s.create(t, tenant, sendNow("per-event", "{once_per_key: event_id}", 0))
	s.create(t, tenant, sendNow("monthly", "{once_per: 30d}", 0))
	s.create(t, tenant, sendNow("once", "{once_per_customer: {}}", 0))
	now := s.clock.Now()
	s.publish(t, tenant, orderEv("o1", "c", now.Add(-3*time.Hour), 1000), orderEv("o3", "c", now.Add(-time.Hour), 1000))
	s.caughtUp(t)
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'third'`); n != 0 {
		t.Fatalf("%d third-order enrollments before the second order arrived", n)
	}
	s.publish(t, tenant, orderEv("o2", "c", now.Add(-2*time.Hour), 1000))
	s.caughtUp(t)
	check := func(t *testing.T) {
		t.Helper()
		var key string
		var anchor time.Time
		if err := s.db.QueryRow(context.Background(), `SELECT entry_key, anchor_at FROM enrollments WHERE campaign_id = 'third'`).Scan(&key, &anchor); err != nil {
			t.Fatalf("the third order's enrollment: %v", err)
		}
		if !anchor.Equal(now.Add(-time.Hour)) {
			t.Errorf("third-order enrollment anchored at %v, want the third order's %v", anchor, now.Add(-time.Hour))
		}
		for _, tc := range []struct {
			campaign string
			want     int
		}{{"third", 1}, {"per-order", 3}, {"per-event", 3}, {"monthly", 1}, {"once", 1}} {
			if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = $1`, tc.campaign); n != tc.want {
				t.Errorf("%s: %d enrollments, want %d", tc.campaign, n, tc.want)
			}
			sent := 0
			for _, n := range s.notifications(t, tenant) {
				if n.GetOrigin().GetCampaignId() == tc.campaign {
					sent++
				}
			}
			if sent != tc.want {
				t.Errorf("%s: %d notifications, want %d", tc.campaign, sent, tc.want)
			}
		}
	}
	t.Run("late order", check)
	t.Run("redelivery of the whole stream", func(t *testing.T) {
		s.replayFacts(t)
		check(t)
	})
}

// TestOneNotificationPerStepAcrossCrash crashes between the commit of a
// step and its publish (the outbox row is committed, the stream never got
// it) and between the publish and marking the row published: after a
// restart each step is on the stream exactly once, with the same id.
func TestOneNotificationPerStepAcrossCrash(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	s.create(t, tenant, sendNow("hello", "{once_per_key: order_id}", 0))
	s.publish(t, tenant, orderEv("o1", "c-1", s.clock.Now(), 1000))
	s.caughtUp(t)
	first := s.notifications(t, tenant)
	if len(first) != 1 {
		t.Fatalf("%d notifications", len(first))
	}
	ctx := context.Background()
	restart := func(t *testing.T, between func()) {
		t.Helper()
		s.stopAll()
		between()
		s.start(t)
		s.caughtUp(t)
	}
	t.Run("published, not marked", func(t *testing.T) {
		restart(t, func() {
			if _, err := s.db.Exec(ctx, `UPDATE bus_outbox SET published_at = NULL`); err != nil {
				t.Fatal(err)
			}
		})
		got := s.notifications(t, tenant)
		if len(got) != 1 || got[0].msgID != first[0].msgID || got[0].GetRequestId() != first[0].GetRequestId() {
			t.Fatalf("after the crash: %d notifications %v, want the one %s", len(got), got, first[0].msgID)
		}
	})
	t.Run("committed, never published", func(t *testing.T) {
		// Without the stream the relay cannot publish: the step is
		// committed with its outbox row, and the process dies.
		if err := s.js.DeleteStream(ctx, bus.NotificationsStream); err != nil {
			t.Fatal(err)
		}
		s.publish(t, tenant, orderEv("o2", "c-2", s.clock.Now(), 1000))
		testenv.WaitFor(t, "the step to commit", func() bool {
			return s.count(t, `SELECT count(*) FROM bus_outbox WHERE published_at IS NULL`) == 1
		})
		var committed string
		if err := s.db.QueryRow(ctx, `SELECT msg_id FROM bus_outbox WHERE published_at IS NULL`).Scan(&committed); err != nil {
			t.Fatal(err)
		}
		restart(t, func() {
			if err := s.pub.EnsureStreams(ctx); err != nil {
				t.Fatal(err)
			}
		})
		got := s.notifications(t, tenant)
		want := domain.RequestID("hello", domain.EnrollmentRef(tenant, "hello", "c-2", "order_id:o2"), "hello")
		if len(got) != 1 || got[0].GetCustomerId() != "c-2" || got[0].GetRequestId() != want ||
			got[0].msgID != tenant+"/"+want || got[0].msgID != committed {
			t.Fatalf("after the crash: %d notifications %v, want one for c-2 with id %s, committed as %s", len(got), got, want, committed)
		}
		if n := s.report(t, tenant, "hello").GetMessagesRequested(); n != 2 {
			t.Fatalf("%d messages requested in the report", n)
		}
	})
	t.Run("the trigger redelivered", func(t *testing.T) {
		s.replayFacts(t)
		if got := s.notifications(t, tenant); len(got) != 1 || s.count(t, `SELECT count(*) FROM bus_outbox`) != 2 {
			t.Fatalf("%d notifications after redelivery", len(got))
		}
	})
}

// TestHoldoutNeverMessagedAndKeepsGroup: holdout members enter, reach
// their goals, and are sent nothing; changing the percentage later moves
// nobody.
func TestHoldoutNeverMessagedAndKeepsGroup(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	s.create(t, tenant, sendNow("half", "{once_per_key: order_id}", 50))
	now := s.clock.Now()
	var evs []*eventsv1.Event
	for c := range 200 {
		evs = append(evs, orderEv(fmt.Sprintf("a-%d", c), fmt.Sprintf("c-%d", c), now.Add(-time.Hour), 1000))
	}
	s.publish(t, tenant, evs...)
	s.caughtUp(t)
	group := map[string]bool{}
	rows, err := s.db.Query(context.Background(), `SELECT customer_id, holdout FROM enrollments WHERE campaign_id = 'half'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		var h bool
		if err := rows.Scan(&c, &h); err != nil {
			t.Fatal(err)
		}
		if h != domain.InHoldout(tenant, "half", c, 50) {
			t.Fatalf("%s: holdout %v differs from its hash", c, h)
		}
		group[c] = h
	}
	held := 0
	for _, h := range group {
		if h {
			held++
		}
	}
	if len(group) != 200 || held < 70 || held > 130 {
		t.Fatalf("%d enrolled, %d in holdout", len(group), held)
	}
	checkSent := func(t *testing.T, wantPerTreated int) {
		t.Helper()
		per := map[string]int{}
		for _, n := range s.notifications(t, tenant) {
			if group[n.GetCustomerId()] {
				t.Fatalf("holdout member %s was messaged", n.GetCustomerId())
			}
			per[n.GetCustomerId()]++
		}
		if len(per) != 200-held {
			t.Fatalf("%d treated customers messaged, want %d", len(per), 200-held)
		}
		for c, n := range per {
			if n != wantPerTreated {
				t.Fatalf("%s messaged %d times, want %d", c, n, wantPerTreated)
			}
		}
	}
	checkSent(t, 1)

	c, err := campaignfile.Decode([]byte(sendNow("half", "{once_per_key: order_id}", 10)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client().UpdateCampaign(context.Background(), &campaignv1.UpdateCampaignRequest{Campaign: c}, s.token(t, tenant)); err != nil {
		t.Fatal(err)
	}
	evs = evs[:0]
	for c := range 200 {
		evs = append(evs, orderEv(fmt.Sprintf("b-%d", c), fmt.Sprintf("c-%d", c), now.Add(-time.Minute), 1000))
	}
	s.publish(t, tenant, evs...)
	s.caughtUp(t)
	if n := s.count(t, `SELECT count(DISTINCT (customer_id, holdout)) FROM enrollments WHERE campaign_id = 'half'`); n != 200 {
		t.Fatalf("customers changed group after the holdout changed: %d (customer, group) pairs", n)
	}
	checkSent(t, 2)
}

// TestTimersFireOnceWithTwoReplicas runs two schedulers over the same due
// timers at once.
func TestTimersFireOnceWithTwoReplicas(t *testing.T) {
	s := setup(t, func(c *campaign.Config) { c.TimerBatch = 25 })
	s.start(t)
	const tenant = "shop"
	s.create(t, tenant, waitThenSend)
	now := s.clock.Now()
	var evs []*eventsv1.Event
	for c := range 400 {
		evs = append(evs, orderEv(fmt.Sprintf("o-%d", c), fmt.Sprintf("c-%d", c), now, 1000))
	}
	s.publish(t, tenant, evs...)
	s.caughtUp(t)
	if got := len(s.notifications(t, tenant)); got != 0 {
		t.Fatalf("%d sent before the timers were due", got)
	}
	s.clock.Advance(2 * time.Hour)
	var wg sync.WaitGroup
	fired := make([]int, 2)
	for i, in := range s.inst {
		wg.Go(func() {
			n, err := in.svc.FireDue(context.Background())
			if err != nil {
				t.Error(err)
			}
			fired[i] = n
		})
	}
	wg.Wait()
	s.outboxDrained(t)
	if fired[0]+fired[1] != 400 {
		t.Fatalf("replicas fired %d + %d timers, want 400 in all", fired[0], fired[1])
	}
	t.Logf("replica shares: %v", fired)
	if n := s.report(t, tenant, "later").GetMessagesRequested(); n != 400 {
		t.Fatalf("%d messages requested in the report", n)
	}
	if got := len(s.notifications(t, tenant)); got != 400 {
		t.Fatalf("%d notifications, want 400", got)
	}
	if n := s.fire(t); n != 0 {
		t.Fatalf("a third pass fired %d", n)
	}
}

// TestRunningEnrollmentsKeepTheirVersion updates a campaign while
// customers wait in it.
func TestRunningEnrollmentsKeepTheirVersion(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	file := func(tmpl string) string {
		return `
id: seq
name: Sequence
trigger: {event: order.placed}
entry: {once_per_key: order_id}
steps:
  - {id: wait, wait: {duration: 1h}}
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: ` + tmpl + `}}
`
	}
	s.create(t, tenant, file("onboarding_1"))
	s.publish(t, tenant, orderEv("o1", "c-1", s.clock.Now(), 1000))
	s.caughtUp(t)
	c, _ := campaignfile.Decode([]byte(file("onboarding_2")))
	up, err := s.client().UpdateCampaign(context.Background(), &campaignv1.UpdateCampaignRequest{Campaign: c}, s.token(t, tenant))
	if err != nil {
		t.Fatal(err)
	}
	if up.GetCampaign().GetVersion() != 2 {
		t.Fatalf("version %d", up.GetCampaign().GetVersion())
	}
	s.publish(t, tenant, orderEv("o2", "c-2", s.clock.Now(), 1000))
	s.caughtUp(t)
	s.clock.Advance(2 * time.Hour)
	s.fire(t)
	got := map[string]string{}
	for _, n := range s.notifications(t, tenant) {
		got[n.GetCustomerId()] = fmt.Sprintf("%s v%d", n.GetTemplateKey(), n.GetOrigin().GetCampaignVersion())
	}
	if got["c-1"] != "onboarding_1 v1" || got["c-2"] != "onboarding_2 v2" {
		t.Fatalf("sent %v", got)
	}
	v1, err := s.client().GetCampaign(context.Background(), &campaignv1.GetCampaignRequest{Id: "seq", Version: 1}, s.token(t, tenant))
	if err != nil || v1.GetCampaign().GetSteps()[1].GetSend().GetTemplateKey() != "onboarding_1" {
		t.Fatalf("version 1: %v %v", v1, err)
	}

	// The same definition again (a file applied twice, or read back with
	// GetCampaign and saved) stores nothing.
	for _, again := range []*campaignv1.Campaign{c, up.GetCampaign()} {
		same, err := s.client().UpdateCampaign(context.Background(), &campaignv1.UpdateCampaignRequest{Campaign: again}, s.token(t, tenant))
		if err != nil || !same.GetUnchanged() || same.GetCampaign().GetVersion() != 2 || !same.GetCampaign().GetUpdatedAt().AsTime().Equal(up.GetCampaign().GetUpdatedAt().AsTime()) {
			t.Fatalf("saving version 2 again: %v %v, want unchanged at version 2", same, err)
		}
	}
	if _, err := s.client().GetCampaign(context.Background(), &campaignv1.GetCampaignRequest{Id: "seq", Version: 3}, s.token(t, tenant)); status.Code(err) != codes.NotFound {
		t.Fatalf("version 3 after saving version 2 again: %v, want not found", err)
	}
}

// TestInvalidCampaignsAreRejectedWhole checks the API names each bad field
// and saves nothing.
func TestInvalidCampaignsAreRejectedWhole(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	tok := s.token(t, "shop")
	c, err := campaignfile.Decode([]byte(`
id: bad
name: Bad
holdout_percent: 95
trigger: {event: order.shipped}
steps:
  - {id: a, wait: {duration: 400d}, next: b}
  - {id: b, send: {channel: CHANNEL_EMAIL}, next: a}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.client().CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: c}, tok)
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("create: %v", err)
	}
	fields := violations(err)
	for _, f := range []string{"campaign.holdout_percent", "campaign.trigger.event", "campaign.steps[0].wait.duration", "campaign.steps[1].send.template_key"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("no violation for %s in %v", f, st.Message())
		}
	}
	if _, err := s.client().GetCampaign(ctx, &campaignv1.GetCampaignRequest{Id: "bad"}, tok); status.Code(err) != codes.NotFound {
		t.Fatalf("a rejected campaign was saved: %v", err)
	}
	s.create(t, "shop", sendNow("good", "{once_per_customer: {}}", 10))
	c, _ = campaignfile.Decode([]byte(sendNow("good", "{once_per_customer: {}}", 10) + "  - {id: x, wait: {duration: 2d}, next: x}\n"))
	_, err = s.client().UpdateCampaign(ctx, &campaignv1.UpdateCampaignRequest{Campaign: c}, tok)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cycle x -> x") {
		t.Fatalf("update with a cycle: %v", err)
	}
	g, err := s.client().GetCampaign(ctx, &campaignv1.GetCampaignRequest{Id: "good"}, tok)
	if err != nil || g.GetCampaign().GetVersion() != 1 {
		t.Fatalf("after a rejected update: %v %v", g, err)
	}
	if _, err := s.client().CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: c}, s.token(t, "other")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%v", err)
	}
}

// TestReportCountsAndLift runs a campaign with a holdout through goals and
// delivery outcomes and checks the report against the counts and the
// interval math.
func TestReportCountsAndLift(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	s.create(t, tenant, sendNow("lift", "{once_per_customer: {}}", 50))
	now := s.clock.Now()
	var evs []*eventsv1.Event
	for c := range 300 {
		evs = append(evs, orderEv(fmt.Sprintf("a-%d", c), fmt.Sprintf("c-%d", c), now.Add(-time.Hour), 1000))
	}
	s.publish(t, tenant, evs...)
	s.caughtUp(t)
	// Every third customer comes back within the window, and one long after it.
	evs = evs[:0]
	var treated, held, convT, convH int64
	for c := range 300 {
		cust := fmt.Sprintf("c-%d", c)
		h := domain.InHoldout(tenant, "lift", cust, 50)
		if h {
			held++
		} else {
			treated++
		}
		if c%3 == 0 {
			evs = append(evs, orderEv(fmt.Sprintf("b-%d", c), cust, now.Add(time.Hour), 2000))
			if h {
				convH++
			} else {
				convT++
			}
		}
	}
	evs = append(evs, orderEv("late", "c-1", now.Add(40*day), 9999))
	s.publish(t, tenant, evs...)
	sent := s.notifications(t, tenant)
	for i, n := range sent[:10] {
		out := notifierv1.Outcome_OUTCOME_SENT
		if i >= 8 {
			out = notifierv1.Outcome_OUTCOME_SUPPRESSED
		}
		s.publishOn(t, bus.DeliverySubject(tenant, bus.TypeNotificationSent), fmt.Sprintf("%s/%s/1", tenant, n.GetRequestId()), bus.TypeNotificationSent,
			&notifierv1.DeliveryOutcome{RequestId: n.GetRequestId(), TenantId: tenant, Outcome: out, Sequence: 1, Origin: n.GetOrigin()})
	}
	s.caughtUp(t)
	r, err := s.client().GetReport(ctx, &campaignv1.GetReportRequest{Id: "lift"}, tok)
	if err != nil {
		t.Fatal(err)
	}
	rep := r.GetReport()
	l := domain.ComputeLift(convT, treated, convH, held)
	if rep.GetTreated() != treated || rep.GetHoldout() != held || rep.GetMessagesRequested() != treated ||
		rep.GetMessagesDelivered() != 8 || rep.GetMessagesSuppressed() != 2 ||
		rep.GetConversionsTreated() != convT || rep.GetConversionsHoldout() != convH ||
		math.Abs(rep.GetAbsoluteLiftLow()-l.AbsoluteCI.Low) > 1e-12 || math.Abs(rep.GetAbsoluteLiftHigh()-l.AbsoluteCI.High) > 1e-12 {
		t.Fatalf("report %v\nwant treated %d holdout %d conversions %d/%d lift %+v", rep, treated, held, convT, convH, l)
	}
	rv := rep.GetRevenue()
	if len(rv) != 1 || rv[0].GetTreatedMinor() != 2000*convT || rv[0].GetHoldoutMinor() != 2000*convH ||
		rv[0].GetIncrementalMinor() != domain.Incremental(2000*convT, treated, 2000*convH, held) {
		t.Fatalf("revenue %v", rv)
	}
	en, err := s.client().ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "c-0"}, tok)
	if err != nil || len(en.GetEnrollments()) != 1 || en.GetEnrollments()[0].GetConvertedAt() == nil {
		t.Fatalf("enrollments of c-0: %v %v", en, err)
	}
}

// TestStoredVersionKeepsRunningAndPreviews: a version saved by an earlier
// release that a rule added since would refuse (an entry key its trigger's
// event does not carry) still runs as saved, and previewing it by id
// checks it as it runs: it is not refused for a field the caller never
// sent.
func TestStoredVersionKeepsRunningAndPreviews(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	s.create(t, tenant, sendNow("legacy", "{once_per_key: order_id}", 0))
	var spec []byte
	if err := s.db.QueryRow(ctx, `SELECT spec FROM campaign_versions WHERE tenant = $1 AND campaign_id = 'legacy'`, tenant).Scan(&spec); err != nil {
		t.Fatal(err)
	}
	c := &campaignv1.Campaign{}
	if err := proto.Unmarshal(spec, c); err != nil {
		t.Fatal(err)
	}
	c.Entry = &campaignv1.EntryPolicy{Policy: &campaignv1.EntryPolicy_OncePerKey{OncePerKey: "ticket_id"}}
	if _, err := domain.Compile(c); err == nil {
		t.Fatal("the legacy entry key is accepted by a save: the test stores nothing a save would refuse")
	}
	if spec, err := proto.Marshal(c); err != nil {
		t.Fatal(err)
	} else if _, err := s.db.Exec(ctx, `UPDATE campaign_versions SET spec = $2 WHERE tenant = $1 AND campaign_id = 'legacy'`, tenant, spec); err != nil {
		t.Fatal(err)
	}
	s.publish(t, tenant, orderEv("o1", "c-1", s.clock.Now().Add(-time.Minute), 1000))
	s.caughtUp(t)
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'legacy'`); n != 1 {
		t.Fatalf("%d enrollments of the stored version, want 1", n)
	}
	if _, err := s.client().PreviewAudience(ctx, &campaignv1.PreviewAudienceRequest{Id: "legacy"}, tok); err != nil {
		t.Fatalf("preview of the stored version: %v", err)
	}
}

// TestPauseResumeArchiveAndPreview: a paused campaign enrolls nobody and
// holds its timers; the preview sends nothing.
func TestPauseResumeArchiveAndPreview(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	if _, err := s.client().InstallPlaybook(ctx, &campaignv1.InstallPlaybookRequest{Name: "win-back", Paused: true}, tok); err != nil {
		t.Fatal(err)
	}
	now := s.clock.Now()
	s.publish(t, tenant, orderEv("o1", "c-1", now.Add(-100*day), 1000), orderEv("o2", "c-2", now.Add(-120*day), 1000),
		orderEv("o3", "c-3", now.Add(-5*day), 1000))
	s.caughtUp(t)
	pv, err := s.client().PreviewAudience(ctx, &campaignv1.PreviewAudienceRequest{Id: "win-back"}, tok)
	if err != nil || pv.GetCount() != 2 || strings.Join(pv.GetCustomerIds(), ",") != "c-1,c-2" {
		t.Fatalf("preview %v %v", pv, err)
	}
	s.audiences(t)
	if len(s.notifications(t, tenant)) != 0 || s.count(t, `SELECT count(*) FROM enrollments`) != 0 {
		t.Fatal("a paused campaign or a preview enrolled someone")
	}
	if _, err := s.client().ResumeCampaign(ctx, &campaignv1.ResumeCampaignRequest{Id: "win-back"}, tok); err != nil {
		t.Fatal(err)
	}
	s.audiences(t)
	if n := s.count(t, `SELECT count(*) FROM enrollments`); n != 2 {
		t.Fatalf("%d enrollments after resume", n)
	}
	pv, err = s.client().PreviewAudience(ctx, &campaignv1.PreviewAudienceRequest{Id: "win-back"}, tok)
	if err != nil || pv.GetCount() != 0 {
		t.Fatalf("preview after entry %v %v", pv, err)
	}
	if _, err := s.client().ArchiveCampaign(ctx, &campaignv1.ArchiveCampaignRequest{Id: "win-back"}, tok); err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE status = 'ACTIVE'`); n != 0 {
		t.Fatalf("%d enrollments still active after archive", n)
	}
	if _, err := s.client().ResumeCampaign(ctx, &campaignv1.ResumeCampaignRequest{Id: "win-back"}, tok); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("resume archived: %v", err)
	}
	l, err := s.client().ListCampaigns(ctx, &campaignv1.ListCampaignsRequest{}, tok)
	if err != nil || len(l.GetCampaigns()) != 0 {
		t.Fatalf("list without archived: %v %v", l, err)
	}
}

// TestPauseHoldsRunningEnrollments: pausing a campaign holds its running
// enrollments at their next step, however long past due, and takes them
// out of the timer index; resuming runs the step they waited at.
func TestPauseHoldsRunningEnrollments(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	s.create(t, tenant, waitThenSend)
	now := s.clock.Now()
	s.publish(t, tenant, orderEv("o1", "c-1", now, 1000), orderEv("o2", "c-2", now, 1000))
	s.caughtUp(t)
	if _, err := s.client().PauseCampaign(ctx, &campaignv1.PauseCampaignRequest{Id: "later"}, tok); err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE held`); n != 2 {
		t.Fatalf("%d enrollments held after the pause, want 2", n)
	}
	s.clock.Advance(3 * time.Hour)
	if n := s.fire(t); n != 0 || len(s.notifications(t, tenant)) != 0 {
		t.Fatalf("a paused campaign fired %d timers", n)
	}
	if _, err := s.client().ResumeCampaign(ctx, &campaignv1.ResumeCampaignRequest{Id: "later"}, tok); err != nil {
		t.Fatal(err)
	}
	if n := s.fire(t); n != 2 {
		t.Fatalf("resumed campaign fired %d timers, want 2", n)
	}
	if got := len(s.notifications(t, tenant)); got != 2 {
		t.Fatalf("%d notifications after resume, want 2", got)
	}
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE held OR status = 'ACTIVE'`); n != 0 {
		t.Fatalf("%d enrollments still held or running", n)
	}
}

// TestBranchWakesOnGoal: a branch decides as soon as the goal is reached,
// not at its timeout; without the goal it decides at the timeout; a
// redelivered goal changes nothing. A goal that ends an enrollment shows
// at once in reads and its pending step never runs.
func TestBranchWakesOnGoal(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	s.create(t, tenant, `
id: check-in
name: Check in
trigger: {event: order.placed}
goal: {continue_after_goal: true}
steps:
  - {id: first, send: {channel: CHANNEL_EMAIL, template_key: first}}
  - {id: check, branch: {timeout: 7d, if_goal: thanks, otherwise: reminder}}
  - {id: reminder, send: {channel: CHANNEL_EMAIL, template_key: reminder}}
  - {id: stop, exit: {}}
  - {id: thanks, send: {channel: CHANNEL_EMAIL, template_key: thanks}}
`)
	s.create(t, tenant, `
id: later
name: Later
trigger: {event: order.placed}
steps:
  - {id: wait, wait: {duration: 3d}}
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: later}}
`)
	start := s.clock.Now()
	s.publish(t, tenant, orderEv("o-1", "buyer", start, 1000), orderEv("o-2", "idle", start, 1000))
	s.caughtUp(t)
	sent := func() string {
		var got []string
		for _, n := range s.notifications(t, tenant) {
			got = append(got, n.GetCustomerId()+":"+n.GetTemplateKey())
		}
		slices.Sort(got)
		return strings.Join(got, " ")
	}
	if got := sent(); got != "buyer:first idle:first" {
		t.Fatalf("at entry: %s", got)
	}

	// Day 2: the buyer orders again; the branch takes if_goal now.
	s.clock.Advance(2 * day)
	goal := orderEv("o-3", "buyer", s.clock.Now(), 2500)
	s.publish(t, tenant, goal)
	s.caughtUp(t)
	en, err := s.client().ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "buyer"}, tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range en.GetEnrollments() {
		if e.GetCampaignId() == "later" && (e.GetStatus() != domain.StatusConverted || e.GetConvertedAt() == nil || e.GetNextAt() != nil) {
			t.Fatalf("a goal that ends the enrollment does not show: %v", e)
		}
	}
	s.fire(t)
	if got := sent(); got != "buyer:first buyer:thanks idle:first" {
		t.Fatalf("on day 2, after the buyer's goal: %s", got)
	}

	// The goal again: under another event id, then the whole stream
	// redelivered with an empty inbox.
	var before string
	// The conversion as reads see it: an order goal's is the first order
	// after the anchor within the window.
	row := `SELECT string_agg(e.campaign_id || e.customer_id || e.status || e.step || coalesce(e.due_at::text, '-') ||
			coalesce(coalesce(e.converted_at, (SELECT min(o.placed_at) FROM campaign_orders o WHERE o.tenant = e.tenant
				AND o.customer_id = e.customer_id AND o.placed_at > e.anchor_at AND o.placed_at <= e.attribution_until))::text, '-'),
			',' ORDER BY e.id)
		FROM enrollments e`
	if err := s.db.QueryRow(ctx, row).Scan(&before); err != nil {
		t.Fatal(err)
	}
	retry := orderEv("o-3-retry", "buyer", s.clock.Now(), 2500)
	retry.GetOrderPlaced().OrderId = "o-3"
	s.publish(t, tenant, retry)
	s.caughtUp(t)
	s.replayFacts(t)
	s.fire(t)
	var after string
	if err := s.db.QueryRow(ctx, row).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the goal redelivered changed enrollments:\n%s\n%s", before, after)
	}

	// Day 3: the later send goes to the idle customer only; the buyer's
	// enrollment, ended by the goal, is settled.
	s.clock.Advance(day)
	s.fire(t)
	if got := sent(); got != "buyer:first buyer:thanks idle:first idle:later" {
		t.Fatalf("on day 3: %s", got)
	}
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'later' AND customer_id = 'buyer' AND status = 'CONVERTED' AND due_at IS NULL`); n != 1 {
		t.Fatal("the converted enrollment was not settled when its timer fired")
	}

	// Day 7: the branch of the idle customer times out.
	s.clock.Advance(4*day + time.Minute)
	s.fire(t)
	if got := sent(); got != "buyer:first buyer:thanks idle:first idle:later idle:reminder" {
		t.Fatalf("on day 7: %s", got)
	}
}

// TestGoalsOfEveryKind: an order goal counts whenever the order arrives,
// even before the event that enrolled the customer; a goal that is not an
// order (an NPS answer here) is recorded when it arrives, within the
// attribution window only; both end the enrollment and show in the report.
func TestGoalsOfEveryKind(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	later := `
id: %s
name: Later
trigger: {event: order.placed}
entry: {once_per_key: order_id}
goal: {event: %s, attribution_window: 10d}
steps:
  - {id: wait, wait: {duration: 3d}}
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: later}}
`
	s.create(t, tenant, fmt.Sprintf(later, "by-order", "order.placed"))
	s.create(t, tenant, fmt.Sprintf(later, "by-answer", "survey.answered"))
	start := s.clock.Now()
	// The next order (o-2, a day later) arrives first; the answer comes
	// after both of early's orders, and eleven days after late's.
	s.publish(t, tenant, orderEv("o-2", "early", start.Add(day), 1000))
	s.caughtUp(t)
	s.publish(t, tenant, orderEv("o-1", "early", start, 1000), orderEv("o-3", "late", start, 1000))
	s.caughtUp(t)
	s.clock.Advance(day + time.Hour)
	s.publish(t, tenant, npsEv("a-1", "early", s.clock.Now(), 9))
	s.caughtUp(t)
	s.clock.Advance(10 * day)
	s.publish(t, tenant, npsEv("a-2", "late", s.clock.Now(), 9))
	s.caughtUp(t)

	status := map[string]string{}
	for _, c := range []string{"early", "late"} {
		en, err := s.client().ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: c}, tok)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range en.GetEnrollments() {
			status[c+"/"+e.GetCampaignId()+"/"+e.GetEntryKey()] = e.GetStatus()
		}
	}
	want := map[string]string{
		"early/by-order/order_id:o-1": domain.StatusConverted, "early/by-order/order_id:o-2": domain.StatusActive,
		"early/by-answer/order_id:o-1": domain.StatusConverted, "early/by-answer/order_id:o-2": domain.StatusConverted,
		"late/by-order/order_id:o-3": domain.StatusActive, "late/by-answer/order_id:o-3": domain.StatusActive,
	}
	if !maps.Equal(status, want) {
		t.Fatalf("enrollments %v, want %v", status, want)
	}
	if r := s.report(t, tenant, "by-order"); r.GetConversionsTreated()+r.GetConversionsHoldout() != 1 {
		t.Fatalf("by-order report: %v", r)
	}
	if r := s.report(t, tenant, "by-answer"); r.GetConversionsTreated()+r.GetConversionsHoldout() != 2 {
		t.Fatalf("by-answer report: %v", r)
	}
	// The timers settle the converted enrollments without sending; the
	// others send.
	s.fire(t)
	var got []string
	for _, n := range s.notifications(t, tenant) {
		got = append(got, n.GetOrigin().GetCampaignId()+":"+n.GetCustomerId())
	}
	slices.Sort(got)
	if strings.Join(got, " ") != "by-answer:late by-order:early by-order:late" {
		t.Fatalf("sent %v", got)
	}
}

// TestTemplateCheckWithoutNotifier: with RETAIN_CAMPAIGN_NOTIFIER_ADDR set
// and no notifier answering there, a campaign is refused as UNAVAILABLE
// naming the address, and nothing is saved unchecked. (The check against
// a real notifier runs through the dev stack: cmd/retain's
// TestCampaignTemplatesCheckedThroughDevStack.)
func TestTemplateCheckWithoutNotifier(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Addr().String()
	_ = l.Close() // nothing listens there now
	s := setup(t, func(c *campaign.Config) { c.NotifierAddr = gone })
	ctx := context.Background()
	tok := s.token(t, "shop")
	c, err := campaignfile.Decode([]byte(sendNow("checked", "{once_per_customer: {}}", 10)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.client().CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: c}, tok)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), gone) || !strings.Contains(err.Error(), "nothing was saved") {
		t.Fatalf("create with the notifier out of reach: %v, want unavailable naming %s", err, gone)
	}
	if _, err := s.client().GetCampaign(ctx, &campaignv1.GetCampaignRequest{Id: "checked"}, tok); status.Code(err) != codes.NotFound {
		t.Fatalf("the unchecked campaign was saved: %v", err)
	}
}
