package churnsignal_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/simulate"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// TestSimulatedShopCombinedBeatsPurchaseOnly is the lift test: on a
// simulated shop whose customers open tickets (about prices above all) and
// answer surveys sourly in the weeks before they leave, the combined score
// at the end of a calibration year must rank the customers who buy nothing
// in the following half year better than the purchase-only score (the
// same service with the ticket, price and sentiment weights set to 0).
// The service sees the calibration year only, with its clock at its end;
// who bought in the holdout comes from the simulated events.
//
// The shop is one "where tickets and surveys carry signal", as the issue
// puts it: NPS after 60% of orders (20% by default), tickets 40 times as
// frequent before leaving (20) over a base of 0.15 a year (0.3). With the
// simulator's defaults the lift is nil (AUC within ±0.002 of
// purchase-only at 10k customers): few answers, and since a customer who
// left never contacts support again, a ticket after months of silence
// there marks a customer still alive, which costs what recent tickets gain.
// Over seeds 1-4 of this shop the lift is +0.005 to +0.013.
func TestSimulatedShopCombinedBeatsPurchaseOnly(t *testing.T) {
	cfg := simulate.DefaultConfig()
	cfg.Customers = 4000
	cfg.Start = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg.Days = 365 + 182
	cfg.RateScale = 3 // customers who buy often enough for a half-year holdout to say something
	cfg.NPSRate, cfg.ChurnTicketBoost, cfg.TicketsPerYear = 0.6, 40, 0.15
	shop, err := simulate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	calibrationEnd := cfg.Start.AddDate(1, 0, 0).Add(-time.Millisecond)
	var calibration []*eventsv1.Event
	lastOrder, bought := map[string]time.Time{}, map[string]bool{}
	if err := shop.Events(func(ev *eventsv1.Event) error {
		at := ev.GetOccurredAt().AsTime()
		o := ev.GetOrderPlaced()
		switch {
		case at.After(calibrationEnd):
			if o != nil {
				bought[o.GetCustomerId()] = true
			}
		default:
			calibration = append(calibration, ev)
			if o != nil {
				lastOrder[o.GetCustomerId()] = at
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	s := setup(t)
	ctx := context.Background()
	s.clock.Set(calibrationEnd)
	start := time.Now()
	for i := 0; i < len(calibration); i += 5000 {
		s.publish(t, "sim", calibration[i:min(i+5000, len(calibration))]...)
	}
	s.caughtUp(t)
	t.Logf("%d calibration events of %d customers published and projected in %s", len(calibration), cfg.Customers, time.Since(start).Round(time.Millisecond))
	admin, read := s.token(t, "sim", auth.ScopeAdmin), s.token(t, "sim", auth.ScopeRead)
	if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, admin); err != nil {
		t.Fatal(err)
	}

	// Customers who ordered in the calibration year, the positives those
	// who did not order in the holdout.
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range lastOrder {
			if !yield(id) {
				return
			}
		}
	})
	positive, silence := make([]bool, len(ids)), make([]float64, len(ids))
	pos := 0
	for i, id := range ids {
		positive[i], silence[i] = !bought[id], calibrationEnd.Sub(lastOrder[id]).Hours()
		if positive[i] {
			pos++
		}
	}
	stored := func() []float64 {
		byID := map[string]float64{}
		for _, r := range listAll(t, s, churnv1.RiskBand_RISK_BAND_UNSPECIFIED, 1000, read) {
			byID[r.GetCustomerId()] = r.GetExactScore()
		}
		out := make([]float64, len(ids))
		for i, id := range ids {
			v, ok := byID[id]
			if !ok {
				t.Fatalf("%s has no stored score", id)
			}
			out[i] = v
		}
		return out
	}
	combined := stored()
	resp, err := s.client().SetWeights(ctx, &churnv1.SetWeightsRequest{SupportTickets: proto.Float64(0), PriceComplaints: proto.Float64(0), Sentiment: proto.Float64(0), Rescore: true}, admin)
	if err != nil {
		t.Fatal(err)
	}
	purchaseOnly := stored()

	aucCombined, aucPurchase := auc(combined, positive), auc(purchaseOnly, positive)
	t.Logf("%d customers ordered in the calibration year, %d of them not in the holdout; purchase-only weights moved %d of %d customers' bands",
		len(ids), pos, resp.GetBandChanges(), resp.GetCustomersRescored())
	t.Logf("holdout no-purchase AUC: combined score %.4f, purchase-only score %.4f (days since the last order %.4f)",
		aucCombined, aucPurchase, auc(silence, positive))
	if !(aucCombined > aucPurchase) {
		t.Errorf("combined score AUC %.4f does not beat the purchase-only score's %.4f", aucCombined, aucPurchase)
	}
}
