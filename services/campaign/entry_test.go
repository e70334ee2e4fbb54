package campaign_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// detractorEvery2d enters a detractor at most once per two days.
const detractorEvery2d = `
id: detractors
name: Detractors
trigger: {event: survey.answered}
conditions:
  - nps_score: {max: 6}
entry: {once_per: 2d}
steps:
  - {id: sorry, send: {channel: CHANNEL_EMAIL, template_key: detractor_apology}}
`

// entryDays are the anchors of a customer's enrollments in campaign, in
// days before now, oldest first.
func (s *stack) entryDays(t *testing.T, campaign, customer string, now time.Time) []float64 {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT anchor_at FROM enrollments WHERE campaign_id = $1 AND customer_id = $2 ORDER BY anchor_at`, campaign, customer)
	if err != nil {
		t.Fatal(err)
	}
	ats, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, at := range ats {
		out = append(out, -now.Sub(at).Hours()/24)
	}
	return out
}

// TestOncePerGapDoesNotDependOnBatching sends a customer's NPS answers of
// 6, 5, 3 and 1 days ago to a campaign entered once per 2 days: in one
// batch, one by one in time order, one by one out of order, and a batch of
// older answers after a newer one entered. Each enters the customer at -6,
// -3 and -1: every answer at least 2 days from the entries before it (and,
// arriving late, from every entry) enters. It also pins down what stays
// order-dependent.
func TestOncePerGapDoesNotDependOnBatching(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	s.create(t, tenant, detractorEvery2d)
	now := s.clock.Now()
	answer := func(customer string, daysAgo int) *eventsv1.Event {
		return npsEv(fmt.Sprintf("%s-%d", customer, daysAgo), customer, now.Add(-time.Duration(daysAgo)*day), 3)
	}
	want := []float64{-6, -3, -1}

	// One batch: published while no replica runs, fetched at once on start.
	s.stopAll()
	var batch []*eventsv1.Event
	for c := range 5 {
		for _, d := range []int{6, 5, 3, 1} {
			batch = append(batch, answer(fmt.Sprintf("batch-%d", c), d))
		}
	}
	s.publish(t, tenant, batch...)
	s.start(t)
	s.caughtUp(t)
	one := func(customer string, days ...int) {
		for _, d := range days {
			s.publish(t, tenant, answer(customer, d))
			s.caughtUp(t)
		}
	}
	one("in-order", 6, 5, 3, 1)
	one("out-of-order", 1, 6, 3, 5)
	// A newer answer entered, then the older ones in one batch.
	one("late-batch", 1)
	s.stopAll()
	s.publish(t, tenant, answer("late-batch", 6), answer("late-batch", 5), answer("late-batch", 3))
	s.start(t)
	s.caughtUp(t)

	for _, c := range []string{"batch-0", "batch-1", "batch-2", "batch-3", "batch-4", "in-order", "out-of-order", "late-batch"} {
		if got := s.entryDays(t, "detractors", c, now); !slices.Equal(got, want) {
			t.Errorf("%s entered at %v days, want %v", c, got, want)
		}
	}
	if n := s.count(t, `SELECT count(*) FROM campaign_members WHERE campaign_id = 'detractors' AND entries = 3 AND last_entered_at = $1`, now.Add(-day)); n != 8 {
		t.Errorf("%d member rows with 3 entries, the last a day ago; want 8", n)
	}
	sent := 0
	for _, n := range s.notifications(t, tenant) {
		if n.GetOrigin().GetCampaignId() == "detractors" {
			sent++
		}
	}
	if sent != 8*3 {
		t.Errorf("%d apologies requested, want %d", sent, 8*3)
	}

	// What stays order-dependent (the campaign README): an entry is never
	// withdrawn, so the middle of three answers 1.5 days apart, arriving
	// first, keeps both others out; in time order they enter, not it.
	spaced := func(customer string, hoursAgo ...int) {
		for _, h := range hoursAgo {
			s.publish(t, tenant, npsEv(fmt.Sprintf("%s-%dh", customer, h), customer, now.Add(-time.Duration(h)*time.Hour), 3))
			s.caughtUp(t)
		}
	}
	spaced("spaced-in-order", 108, 72, 36)
	spaced("spaced-middle-first", 72, 108, 36)
	for c, want := range map[string][]float64{"spaced-in-order": {-4.5, -1.5}, "spaced-middle-first": {-3}} {
		if got := s.entryDays(t, "detractors", c, now); !slices.Equal(got, want) {
			t.Errorf("%s entered at %v days, want %v", c, got, want)
		}
	}

	// The whole stream again with an empty inbox enters nobody twice.
	s.replayFacts(t)
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'detractors'`); n != 8*3+3 {
		t.Errorf("after a replay: %d enrollments, want %d", n, 8*3+3)
	}
}

// enrolledOrders are the order ids of the enrollments where holds.
func (s *stack) enrolledOrders(t *testing.T, where string) []string {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT vars->>'order_id' FROM enrollments WHERE `+where)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return orders
}

// TestOrdersOfTheSameInstantCountOneByOne: exports with second or minute
// resolution give a customer's first two orders the same placed time.
// One of them is the first order (the one whose id sorts first) and the
// other the second, so the customer is onboarded once; counting every
// order of that instant made both "second" and onboarded nobody.
func TestOrdersOfTheSameInstantCountOneByOne(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	const tenant = "shop"
	if _, err := s.client().InstallPlaybook(ctx, &campaignv1.InstallPlaybookRequest{Name: "onboarding"}, s.token(t, tenant)); err != nil {
		t.Fatal(err)
	}
	at := s.clock.Now().Add(-time.Hour).Truncate(time.Minute)
	s.publish(t, tenant, orderEv("o-2", "tied", at, 1000), orderEv("o-1", "tied", at, 2000))
	s.caughtUp(t)
	orders := s.enrolledOrders(t, `campaign_id = 'onboarding' AND customer_id = 'tied'`)
	if !slices.Equal(orders, []string{"o-1"}) {
		t.Fatalf("onboarding entered for orders %v, want [o-1]: the first of two orders placed in the same instant", orders)
	}
}

// TestLateOrderOfTheSameInstantReevaluatesTheLaterOne: a late order
// placed in the same instant as a stored one, whose id sorts before it,
// makes the stored one the later of the two, so it is the one evaluated
// again (here it becomes the third order and enters the campaign).
func TestLateOrderOfTheSameInstantReevaluatesTheLaterOne(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	s.create(t, tenant, `
id: third
name: Third order
trigger: {event: order.placed}
conditions: [{order_count: {min: 3, max: 3, within_days: 365}}]
entry: {once_per_customer: {}}
steps:
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: loyalty_reward}}
`)
	now := s.clock.Now()
	s.publish(t, tenant, orderEv("t1", "c", now.Add(-3*time.Hour), 1000), orderEv("t3", "c", now.Add(-time.Hour), 1000))
	s.caughtUp(t)
	s.publish(t, tenant, orderEv("t2", "c", now.Add(-time.Hour), 1000))
	s.caughtUp(t)
	orders := s.enrolledOrders(t, `campaign_id = 'third'`)
	if !slices.Equal(orders, []string{"t3"}) {
		t.Fatalf("third-order campaign entered for orders %v, want [t3]", orders)
	}
}
