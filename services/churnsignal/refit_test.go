package churnsignal_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/testenv"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/churnsignal/internal/app"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
)

// TestModelFittedEarlyInAnImportIsRefit: a shop's half year of history is
// imported in time order while churn-signal restarts. A fit on its first
// tenth of the orders (the newest five months old: every customer looks
// gone) is not stored. A fit on its first 60% is, and scores nearly every
// customer HIGH; once the rest has arrived it is refit MinRefitGap after
// its fit (not RefitInterval, 24 h, later), on all of the history, and
// the bands come back to what a fit on the whole shop gives. Within
// MinRefitGap of a fit, growth refits nothing.
func TestModelFittedEarlyInAnImportIsRefit(t *testing.T) {
	const tenant = "shop2"
	s := setup(t)
	ctx := context.Background()
	end := s.clock.Now()
	evs, orders := halfYearShop(t, 3000, end)
	// upTo is the index of evs past the first share of the orders.
	upTo := func(share float64) int { return orders[int(share*float64(len(orders)))] }
	buyers := func(evs []*eventsv1.Event) int32 {
		seen := map[string]bool{}
		for _, ev := range evs {
			if o := ev.GetOrderPlaced(); o != nil {
				seen[o.GetCustomerId()] = true
			}
		}
		return int32(len(seen))
	}
	c, read := s.client(), s.token(t, tenant, auth.ScopeRead)
	model := func() *churnv1.Model {
		resp, err := c.GetModel(ctx, &churnv1.GetModelRequest{}, read)
		if status.Code(err) == codes.NotFound {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetModel()
	}
	rescoredAt := func() time.Time {
		var at *time.Time
		err := s.db.QueryRow(ctx, `SELECT rescored_at FROM churn_tenants WHERE tenant_id = $1`, tenant).Scan(&at)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if at == nil {
			return time.Time{}
		}
		return *at
	}
	// rescored waits for a full pass (scheduled, or after a refit) begun
	// at the clock's instant.
	rescored := func(what string) {
		t.Helper()
		testenv.WaitFor(t, what, func() bool { return rescoredAt().Equal(s.clock.Now()) })
	}
	highShare := func() float64 {
		var share float64
		if err := s.db.QueryRow(ctx, `SELECT (count(*) FILTER (WHERE band = $2))::float8 / count(*) FROM churn_scores WHERE tenant_id = $1 AND band <> 0`,
			tenant, int16(score.BandHigh)).Scan(&share); err != nil {
			t.Fatal(err)
		}
		return share
	}
	withSchedule := func(c *churnsignal.Config) { c.RescoreInterval = time.Hour }

	// The first tenth of the orders is in when churn-signal restarts; its
	// start-up pass fits on that.
	tenth, most := upTo(0.1), upTo(0.6)
	s.publish(t, tenant, evs[:tenth]...)
	s.caughtUp(t)
	s.stop()
	s.start(t, withSchedule)
	c = s.client()
	rescored("the start-up pass")
	if m := model(); m != nil {
		t.Errorf("a model fitted on the first tenth of the history was stored: r=%.3g alpha=%.3g a=%.3g b=%.3g over %d customers",
			m.GetR(), m.GetAlpha(), m.GetA(), m.GetB(), m.GetCustomers())
	}

	// Up to 60% of the orders arrive (the newest 75 days old), and an hour
	// later churn-signal restarts again: its start-up pass fits on them and
	// stores the model.
	s.publish(t, tenant, evs[tenth:most]...)
	s.caughtUp(t)
	s.stop()
	s.clock.Advance(time.Hour)
	s.start(t, withSchedule)
	c = s.client()
	rescored("the second start-up pass")
	partial := model()
	if partial == nil || partial.GetCustomers() != buyers(evs[:most]) {
		t.Fatalf("model after the second start-up pass: %v, want one over the %d customers of 60%% of the orders", partial, buyers(evs[:most]))
	}
	partialHigh := highShare()
	t.Logf("fitted on 60%% of the orders: r=%.3g alpha=%.3g a=%.3g b=%.3g over %d customers; %.0f%% of the customers HIGH",
		partial.GetR(), partial.GetAlpha(), partial.GetA(), partial.GetB(), partial.GetCustomers(), 100*partialHigh)

	// The rest arrives right after that fit: no refit so soon.
	s.publish(t, tenant, evs[most:]...)
	s.caughtUp(t)
	if m := model(); !m.GetFittedAt().AsTime().Equal(partial.GetFittedAt().AsTime()) {
		t.Errorf("refit %s after the last fit, before MinRefitGap (%s)", m.GetFittedAt().AsTime().Sub(partial.GetFittedAt().AsTime()), app.DefaultMinRefitGap)
	}

	// MinRefitGap later the shop's next order is applied, and the model is
	// refit on all of the history: its orders have grown by two thirds.
	s.clock.Advance(app.DefaultMinRefitGap)
	s.publish(t, tenant, orderEv("after-the-import", "c-new", s.clock.Now(), 2500))
	all := buyers(evs)
	testenv.WaitFor(t, "a refit on the whole history", func() bool { return model().GetCustomers() >= all })
	rescored("the rescoring after the refit")
	full := model()
	fullHigh := highShare()
	t.Logf("refit on all of it: r=%.3g alpha=%.3g a=%.3g b=%.3g over %d customers; %.0f%% of the customers HIGH",
		full.GetR(), full.GetAlpha(), full.GetA(), full.GetB(), full.GetCustomers(), 100*fullHigh)

	// The bands are those of a fit on the whole shop asked for by hand.
	if _, err := c.Refit(ctx, &churnv1.RefitRequest{}, s.token(t, tenant, auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	// (The refit by hand also sees the order after the import, which the
	// loop's fit may have been too early for.)
	if want := highShare(); math.Abs(fullHigh-want) > 0.01 || fullHigh >= partialHigh {
		t.Errorf("after the refit %.1f%% of the customers are HIGH, %.1f%% after a refit by hand, %.1f%% under the model fitted on 60%% of the orders",
			100*fullHigh, 100*want, 100*partialHigh)
	}
}
