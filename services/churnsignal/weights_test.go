package churnsignal_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func badFields(t *testing.T, err error) []string {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("%v, want InvalidArgument", err)
	}
	var fields []string
	for _, v := range server.Violations(err) {
		fields = append(fields, v.Field)
	}
	return fields
}

// TestWeights: the weights API validates every field and applies nothing
// of a bad request; new weights apply at once to scores computed from then
// on, and a rescoring applies them to every stored score, announcing each
// band change once.
func TestWeights(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	c := s.client()
	read, admin := s.token(t, "shop", auth.ScopeRead), s.token(t, "shop", auth.ScopeAdmin)
	evs := population(40, now)
	// Ten customers with two recent tickets each, one about price, and
	// nothing else wrong but what their purchases say.
	for k := range 10 {
		cust := fmt.Sprintf("p%03d", k)
		evs = append(evs,
			ticketEv(cust+"-t1", cust, now.Add(-3*day), eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING),
			ticketEv(cust+"-t2", cust, now.Add(-10*day), eventsv1.TicketCategory_TICKET_CATEGORY_DELIVERY))
	}
	s.publish(t, "shop", evs...)
	s.caughtUp(t)
	if _, err := c.Refit(ctx, &churnv1.RefitRequest{}, admin); err != nil {
		t.Fatal(err)
	}

	got, err := c.GetWeights(ctx, &churnv1.GetWeightsRequest{}, read)
	if err != nil {
		t.Fatal(err)
	}
	defaults := got.GetDefaults()
	if !got.GetDefault() || got.UpdatedAt != nil || !proto.Equal(got.GetWeights(), defaults) || defaults.GetPurchaseOutlook() != 70 || defaults.GetHighAt() != 70 {
		t.Fatalf("weights of a tenant that never set any: %v", got)
	}

	t.Run("invalid weights name their fields and change nothing", func(t *testing.T) {
		tests := []struct {
			name   string
			req    *churnv1.SetWeightsRequest
			fields []string
		}{
			{"weights out of range", &churnv1.SetWeightsRequest{PurchaseOutlook: proto.Float64(120), Sentiment: proto.Float64(-1), SupportTickets: proto.Float64(50)}, []string{"purchase_outlook", "sentiment"}},
			{"not a number", &churnv1.SetWeightsRequest{Overdue: proto.Float64(math.NaN())}, []string{"overdue"}},
			{"medium above the kept high", &churnv1.SetWeightsRequest{MediumAt: proto.Int32(75)}, []string{"high_at"}},
			{"thresholds out of range", &churnv1.SetWeightsRequest{MediumAt: proto.Int32(0), HighAt: proto.Int32(101)}, []string{"medium_at", "high_at"}},
			{"hysteresis as wide as the gap", &churnv1.SetWeightsRequest{MediumAt: proto.Int32(50), HighAt: proto.Int32(60), Hysteresis: proto.Int32(10)}, []string{"hysteresis"}},
			{"everything wrong", &churnv1.SetWeightsRequest{PriceComplaints: proto.Float64(96), Hysteresis: proto.Int32(-2), Rescore: true}, []string{"price_complaints", "hysteresis"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := c.SetWeights(ctx, tt.req, admin)
				if fields := badFields(t, err); !slices.Equal(fields, tt.fields) {
					t.Fatalf("fields %v, want %v (%v)", fields, tt.fields, err)
				}
				after, err := c.GetWeights(ctx, &churnv1.GetWeightsRequest{}, read)
				if err != nil || !after.GetDefault() || !proto.Equal(after.GetWeights(), defaults) {
					t.Fatalf("after a rejected request: %v %v", after, err)
				}
			})
		}
		if _, err := c.SetWeights(ctx, &churnv1.SetWeightsRequest{Sentiment: proto.Float64(10)}, read); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("SetWeights with read: %v", err)
		}
	})

	high := func() map[string]int32 {
		out := map[string]int32{}
		for _, r := range listAll(t, s, churnv1.RiskBand_RISK_BAND_HIGH, 100, read) {
			out[r.GetCustomerId()] = r.GetScore()
		}
		return out
	}
	before := high()
	signals, _ := s.signals(t)
	risk := func(id string) *churnv1.CustomerRisk {
		r, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: id}, read)
		if err != nil {
			t.Fatal(err)
		}
		return r.GetRisk()
	}
	p000 := risk("p000")

	t.Run("new weights apply at once to scores computed from then on", func(t *testing.T) {
		resp, err := c.SetWeights(ctx, &churnv1.SetWeightsRequest{SupportTickets: proto.Float64(90), PriceComplaints: proto.Float64(90)}, admin)
		if err != nil {
			t.Fatal(err)
		}
		w := resp.GetWeights()
		if w.GetSupportTickets() != 90 || w.GetPriceComplaints() != 90 || w.GetPurchaseOutlook() != defaults.GetPurchaseOutlook() || w.GetHighAt() != defaults.GetHighAt() ||
			resp.GetCustomersRescored() != 0 || resp.GetUpdatedAt() == nil {
			t.Fatalf("SetWeights: %v", resp)
		}
		got, err := c.GetWeights(ctx, &churnv1.GetWeightsRequest{}, read)
		if err != nil || got.GetDefault() || !proto.Equal(got.GetWeights(), w) || !got.GetUpdatedAt().AsTime().Equal(resp.GetUpdatedAt().AsTime()) {
			t.Fatalf("GetWeights after SetWeights: %v %v", got, err)
		}
		if now := risk("p000"); !(now.GetScore() > p000.GetScore()) {
			t.Fatalf("p000's score %d with heavier tickets, %d before", now.GetScore(), p000.GetScore())
		}
		// Stored scores wait for a rescoring.
		if after := high(); !maps.Equal(after, before) {
			t.Fatalf("stored high scores changed without a rescoring: %v, before %v", after, before)
		}
	})

	t.Run("a rescoring applies them to everyone and announces each band change once", func(t *testing.T) {
		resp, err := c.SetWeights(ctx, &churnv1.SetWeightsRequest{Rescore: true}, admin)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCustomersRescored() != 40 || resp.GetBandChanges() == 0 {
			t.Fatalf("rescoring with the new weights: %v", resp)
		}
		after := high()
		for k := range 10 {
			if id := fmt.Sprintf("p%03d", k); after[id] == 0 {
				t.Errorf("%s is not high with heavy ticket weights: %v", id, after)
			}
		}
		now, _ := s.signals(t)
		if n := len(now) - len(signals); n != int(resp.GetBandChanges()) {
			t.Fatalf("%d churn.risk_changed for %d band changes", n, resp.GetBandChanges())
		}
		st, err := s.svc.RescoreAll(ctx, "shop")
		if err != nil || st.BandChanges != 0 || st.Changed != 0 {
			t.Fatalf("second rescoring: %+v %v", st, err)
		}
		if again, _ := s.signals(t); len(again) != len(now) {
			t.Fatalf("%d signals after a second rescoring, %d before", len(again), len(now))
		}
	})
}
