package churnsignal_test

import (
	"context"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/testenv"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/churnsignal/internal/app"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
)

// TestImportPublishesBandChangesOnceCaughtUp: a shop's half year of
// history is imported in time order. Its first 70% is in and a model was
// fitted on it (by hand, the consumer caught up: its bands are published).
// The rest arrives while churn-signal is down, so that it restarts behind
// the stream. While it catches up, scoring new customers under the model
// of 70% (most of them HIGH), it publishes no band change, and its
// start-up pass fits nothing. Once it has caught up and the model is refit
// on all of it, every customer whose band then differs from the one last
// published gets exactly one churn.risk_changed, from that band to the
// stored one; a restart and another full pass publish nothing more.
func TestImportPublishesBandChangesOnceCaughtUp(t *testing.T) {
	const tenant = "shop3"
	// MaxLag is 1 s so that a backlog a second old is "behind".
	opts := func(c *churnsignal.Config) { c.RescoreInterval, c.MaxLag = time.Hour, time.Second }
	s := setup(t, opts)
	ctx := context.Background()
	end := s.clock.Now()
	evs, orders := halfYearShop(t, 2000, end)
	most := orders[7*len(orders)/10]
	// idle waits until the consumer has applied nothing for 10 s: it has
	// caught up, whatever the lag of its last batch.
	idle := func() { time.Sleep(11 * time.Second) }

	// The first 70% arrives and is caught up with; a refit by hand fits on
	// it and publishes its bands.
	s.publish(t, tenant, evs[:most]...)
	s.caughtUp(t)
	idle()
	admin := s.token(t, tenant, auth.ScopeAdmin)
	if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, admin); err != nil {
		t.Fatal(err)
	}
	before, _ := s.signals(t)
	t.Logf("fitted on 70%% of the orders: %d band changes published", len(before))
	// Nothing is held: the stored bands are those published (a first
	// LOW included, which is announced to nobody).
	published := storedBands(t, s, tenant)

	// The rest arrives while churn-signal is down; it restarts behind.
	s.stop()
	s.publish(t, tenant, evs[most:]...)
	time.Sleep(1500 * time.Millisecond)
	s.start(t, opts)
	s.caughtUp(t)
	during, _ := s.signals(t)
	var held int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM churn_scores WHERE tenant_id = $1 AND held_from IS NOT NULL`, tenant).Scan(&held); err != nil {
		t.Fatal(err)
	}
	t.Logf("caught up with the rest: %d band changes held", held)
	if n := len(during) - len(before); n != 0 {
		t.Errorf("%d band changes published while the consumer was behind, want none", n)
	}
	if held == 0 {
		t.Errorf("no band change held while the consumer was behind: the scenario tests nothing")
	}
	if len(before) == 0 {
		t.Errorf("the fit on 70%% of the orders published no band: the scenario tests nothing")
	}

	// Once it has caught up, MinRefitGap after the fit, the shop's next
	// order wakes the refit loop: the model is refit on all of the
	// history, and the held bands are published.
	idle()
	s.clock.Advance(app.DefaultMinRefitGap)
	s.publish(t, tenant, orderEv("after-the-import", "c-new", s.clock.Now(), 2500))
	testenv.WaitFor(t, "the held band changes to be published", func() bool {
		var n int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM churn_scores WHERE tenant_id = $1 AND held_from IS NOT NULL`, tenant).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	resp, err := s.client().GetModel(ctx, &churnv1.GetModelRequest{}, s.token(t, tenant, auth.ScopeRead))
	if err != nil {
		t.Fatal(err)
	}
	after, ids := s.signals(t)
	released := after[len(before):]
	t.Logf("refit on %d customers: %d band changes published", resp.GetModel().GetCustomers(), len(released))

	// Exactly one per customer whose stored band is not the one published
	// before (none for a first score in LOW), from that band.
	stored := storedBands(t, s, tenant)
	got := map[string]*churnv1.ChurnRiskChanged{}
	seen := map[string]bool{}
	for i, ev := range released {
		id := ids[len(before)+i]
		if seen[id] {
			t.Errorf("message id %s published twice", id)
		}
		seen[id] = true
		if got[ev.GetCustomerId()] != nil {
			t.Errorf("%s: a second band change published after catching up", ev.GetCustomerId())
		}
		got[ev.GetCustomerId()] = ev
	}
	want := 0
	for id, band := range stored {
		prev := published[id] // UNSPECIFIED: never scored
		news := band != prev && !(prev == churnv1.RiskBand_RISK_BAND_UNSPECIFIED && band == churnv1.RiskBand(score.BandLow))
		ev := got[id]
		switch {
		case news && ev == nil:
			want++
			t.Errorf("%s: band %s, published %s: no band change published", id, band, prev)
		case news:
			want++
			// A customer new in the import may have been scored LOW first
			// (a band announced to nobody, as live), and left it since.
			firstLow := prev == churnv1.RiskBand_RISK_BAND_UNSPECIFIED && ev.GetPreviousBand() == churnv1.RiskBand(score.BandLow)
			if ev.GetBand() != band || (ev.GetPreviousBand() != prev && !firstLow) {
				t.Errorf("%s: published %s -> %s, want %s -> %s", id, ev.GetPreviousBand(), ev.GetBand(), prev, band)
			}
		case ev != nil:
			t.Errorf("%s: band %s as published before, yet %s -> %s published", id, band, ev.GetPreviousBand(), ev.GetBand())
		}
	}
	if len(released) != want {
		t.Errorf("%d band changes published after catching up, want %d", len(released), want)
	}

	// Nothing more after a restart and another full pass.
	s.stop()
	s.start(t, opts)
	st, err := s.svc.RescoreAll(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := s.signals(t); len(again) != len(after) || st.BandChanges != 0 || st.Held != 0 {
		t.Errorf("a restart and a full pass published %d more band changes (pass: %+v)", len(again)-len(after), st)
	}
}

// storedBands are the stored bands of tenant's customers, checking that
// none is held back.
func storedBands(t *testing.T, s *stack, tenant string) map[string]churnv1.RiskBand {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT customer_id, band, held_from IS NOT NULL FROM churn_scores WHERE tenant_id = $1`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]churnv1.RiskBand{}
	for rows.Next() {
		var (
			id   string
			band int16
			held bool
		)
		if err := rows.Scan(&id, &band, &held); err != nil {
			t.Fatal(err)
		}
		if held {
			t.Errorf("%s: band %d held back", id, band)
		}
		out[id] = churnv1.RiskBand(band)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
