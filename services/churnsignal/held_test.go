package churnsignal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/testenv"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/churnsignal/internal/app"
)

// heldRows counts tenant's score rows whose band change is held back.
func heldRows(t *testing.T, s *stack, tenant string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM churn_scores WHERE tenant_id = $1 AND held_from IS NOT NULL`, tenant).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// onePerCustomer checks that evs announce each customer once at most, and
// that each customer whose stored band is news (not LOW) is announced.
func onePerCustomer(t *testing.T, s *stack, tenant string, evs []*churnv1.ChurnRiskChanged) {
	t.Helper()
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.GetCustomerId()] {
			t.Errorf("%s: a second band change published", ev.GetCustomerId())
		}
		seen[ev.GetCustomerId()] = true
	}
	want := 0
	for id, band := range storedBands(t, s, tenant) {
		if band != churnv1.RiskBand_RISK_BAND_LOW {
			want++
			if !seen[id] {
				t.Errorf("%s: band %s never published", id, band)
			}
		}
	}
	if len(evs) != want {
		t.Errorf("%d band changes published, want %d", len(evs), want)
	}
}

// TestHeldChangesPublishedWithoutSchedule: with no scheduled passes
// (RETAIN_CHURN_RESCORE_INTERVAL 0, no refit loop) a backlog applied
// behind the stream still holds its band changes, and they are published
// once the consumer has caught up, one per customer, with nobody asking.
func TestHeldChangesPublishedWithoutSchedule(t *testing.T) {
	const tenant = "shop-unscheduled"
	ctx := context.Background()
	// RescoreInterval 0: start's default. The shop's 50 orders stand for
	// its import: any backlog of it holds.
	opts := func(c *churnsignal.Config) { c.MaxLag, c.HoldMinBacklog = time.Second, 1 }
	s := setup(t, opts)
	now := s.clock.Now()
	s.publish(t, tenant, population(150, now)...)
	s.caughtUp(t)
	if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, s.token(t, tenant, auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	before, _ := s.signals(t)
	published := storedBands(t, s, tenant)

	// The shop's lapsed customers (every third) order again while
	// churn-signal is down: it restarts behind.
	s.stop()
	for c := 0; c < 150; c += 3 {
		s.publish(t, tenant, orderEv(fmt.Sprintf("again-%d", c), fmt.Sprintf("p%03d", c), now, 1500))
	}
	time.Sleep(1500 * time.Millisecond)
	s.start(t, opts)
	s.caughtUp(t)
	if during, _ := s.signals(t); len(during) != len(before) {
		t.Errorf("%d band changes published while behind, want none", len(during)-len(before))
	}
	if heldRows(t, s, tenant) == 0 {
		t.Fatal("no band change held: the scenario tests nothing")
	}
	testenv.WaitFor(t, "the held band changes to be published", func() bool { return heldRows(t, s, tenant) == 0 })
	after, _ := s.signals(t)
	seen := map[string]bool{}
	for _, ev := range after[len(before):] {
		id := ev.GetCustomerId()
		if seen[id] || ev.GetPreviousBand() != published[id] {
			t.Errorf("%s: %s -> %s published (a second time: %t), last published %s", id, ev.GetPreviousBand(), ev.GetBand(), seen[id], published[id])
		}
		seen[id] = true
	}
}

// TestHeldChangesOfAFreshModelPublished: a tenant whose model was just
// fitted gets a few orders while the consumer is behind (here a batch
// stuck on a lock; in life another shop's import). Its changes are held,
// and published once the consumer is idle: the tenant is not put through
// a refit check for them, which would keep them (the model is too fresh
// to tell) until the least refit gap has passed.
func TestHeldChangesOfAFreshModelPublished(t *testing.T) {
	const tenant = "shop-fresh"
	ctx := context.Background()
	// Any backlog of the shop holds: its five orders are behind.
	opts := func(c *churnsignal.Config) {
		c.RescoreInterval, c.MaxLag, c.HoldMinBacklog = time.Hour, time.Second, 1
	}
	s := setup(t, opts)
	now := s.clock.Now()
	s.publish(t, tenant, population(150, now)...)
	s.caughtUp(t)
	time.Sleep(11 * time.Second) // idle: caught up
	if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, s.token(t, tenant, auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	before, _ := s.signals(t)
	model, err := s.client().GetModel(ctx, &churnv1.GetModelRequest{}, s.token(t, tenant, auth.ScopeRead))
	if err != nil {
		t.Fatal(err)
	}

	// A batch of another shop waits on a lock, while the shop's lapsed
	// customers (every third) order again: their batch is behind.
	tx, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE churn_scores IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	s.publish(t, "shop-other", orderEv("blocker", "x", now, 1000))
	time.Sleep(300 * time.Millisecond)
	for c := 0; c < 15; c += 3 {
		s.publish(t, tenant, orderEv(fmt.Sprintf("again-%d", c), fmt.Sprintf("p%03d", c), now, 1500))
	}
	time.Sleep(1500 * time.Millisecond)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s.caughtUp(t)
	if during, _ := s.signals(t); len(during) != len(before) {
		t.Errorf("%d band changes published while behind, want none", len(during)-len(before))
	}
	if heldRows(t, s, tenant) == 0 {
		t.Fatal("no band change held: the scenario tests nothing")
	}
	testenv.WaitFor(t, "the held band changes to be published", func() bool { return heldRows(t, s, tenant) == 0 })
	after, _ := s.signals(t)
	if len(after) == len(before) {
		t.Error("the held band changes were published as nothing")
	}
	m, err := s.client().GetModel(ctx, &churnv1.GetModelRequest{}, s.token(t, tenant, auth.ScopeRead))
	if err != nil {
		t.Fatal(err)
	}
	if !m.GetModel().GetFittedAt().AsTime().Equal(model.GetModel().GetFittedAt().AsTime()) {
		t.Error("the model was refit")
	}
}

// TestOldHistoryWaitsForItsModel: a shop imports a history that ended
// half a year ago (as the README's Online Retail). No automatic fit is
// stored for it (its newest order is too old), so its bands, without a
// model, are held rather than published; the refit the README then says
// to run, as of the history's end, publishes one band change per customer
// whose band is news.
func TestOldHistoryWaitsForItsModel(t *testing.T) {
	const tenant = "shop-2011"
	ctx := context.Background()
	s := setup(t, func(c *churnsignal.Config) { c.RescoreInterval = time.Hour })
	end := s.clock.Now().AddDate(0, -6, 0)
	evs := population(150, end)
	// Unhappy customers, whose bands are not LOW even without a model.
	for c := 0; c < 150; c += 4 {
		id := fmt.Sprintf("p%03d", c)
		evs = append(evs, npsEv("nps-"+id, id, end, 0), ticketEv("t-"+id, id, end, eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING))
	}
	s.publish(t, tenant, evs...)
	s.caughtUp(t)
	time.Sleep(3 * time.Second) // the refit loop's check, refused
	// The least refit gap later, an order wakes the check again: refused
	// again, or nothing to refit; either way the shop has no model.
	s.clock.Advance(app.DefaultMinRefitGap)
	s.publish(t, tenant, orderEv("late", "p001", end, 1000))
	s.caughtUp(t)
	time.Sleep(3 * time.Second)
	if evs, _ := s.signals(t); len(evs) != 0 {
		t.Errorf("%d band changes published without a model, want none", len(evs))
	}
	if heldRows(t, s, tenant) == 0 {
		t.Fatal("no band change held: the scenario tests nothing")
	}
	if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{AsOf: ts(end)}, s.token(t, tenant, auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	published, _ := s.signals(t)
	onePerCustomer(t, s, tenant, published)
	if len(published) == 0 {
		t.Error("the refit published nothing: the scenario tests nothing")
	}
}

// TestOneShopsImportHoldsOnlyItsChanges: two shops' lapsed customers
// order again while churn-signal is down, so that it restarts behind the
// stream (in life: behind one shop's import). "importer" gets 50 orders
// (its import), "live" 5, fewer than RETAIN_CHURN_HOLD_MIN_BACKLOG (here
// 20), in the same batch. The importer's band changes are held; the live
// shop's, whose facts are all applied but for a few, are published as the
// consumer applies them (before decision 0037 the consumer's lag held
// both). The importer's are published once it has caught up.
func TestOneShopsImportHoldsOnlyItsChanges(t *testing.T) {
	ctx := context.Background()
	opts := func(c *churnsignal.Config) { c.MaxLag, c.HoldMinBacklog = time.Second, 20 }
	s := setup(t, opts)
	now := s.clock.Now()
	shops := []string{"importer", "live"}
	for _, tenant := range shops {
		s.publish(t, tenant, population(150, now)...)
	}
	s.caughtUp(t)
	for _, tenant := range shops {
		if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, s.token(t, tenant, auth.ScopeAdmin)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.signals(t)

	s.stop()
	for c := 0; c < 150; c += 3 {
		s.publish(t, "importer", orderEv(fmt.Sprintf("again-%d", c), fmt.Sprintf("p%03d", c), now, 1500))
	}
	for c := 0; c < 15; c += 3 {
		s.publish(t, "live", orderEv(fmt.Sprintf("again-%d", c), fmt.Sprintf("p%03d", c), now, 1500))
	}
	time.Sleep(1500 * time.Millisecond)
	s.start(t, opts)
	s.caughtUp(t)
	during, _ := s.signals(t)
	published := map[string]int{}
	for _, ev := range during[len(before):] {
		published[ev.GetTenantId()]++
	}
	if published["importer"] != 0 || heldRows(t, s, "importer") == 0 {
		t.Errorf("importer: %d band changes published while behind, %d held; want none published, some held", published["importer"], heldRows(t, s, "importer"))
	}
	if published["live"] == 0 || heldRows(t, s, "live") != 0 {
		t.Errorf("live: %d band changes published while the importer was behind, %d held; want them published, none held", published["live"], heldRows(t, s, "live"))
	}
	testenv.WaitFor(t, "the importer's held band changes to be published", func() bool { return heldRows(t, s, "importer") == 0 })
}
