package churnsignal_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// TestManyShopsInOneBatch applies batches that mix the facts of four shops,
// interleaved event by event on the stream while the consumer is stopped,
// under the same customer ids with different facts, one shop with a fitted
// model and one with its own weights. Every shop's customers get their own
// shop's features, and their stored scores are those the one-shop reads
// compute with that shop's model and weights: a full pass at the same
// instant changes nothing, and each band change is announced once, under
// its shop.
func TestManyShopsInOneBatch(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	shops := []string{"shop-a", "shop-b", "shop-c", "shop-d"}
	c := s.client() // of the first instance, until the restart

	// shop-a has a model and scored customers (p000...) before the batch.
	s.publish(t, "shop-a", population(30, now)...)
	s.caughtUp(t)
	if _, err := c.Refit(ctx, &churnv1.RefitRequest{}, s.token(t, "shop-a", auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	// shop-b weighs tickets heavily and calls HIGH from 50.
	if _, err := c.SetWeights(ctx, &churnv1.SetWeightsRequest{SupportTickets: proto.Float64(95), MediumAt: proto.Int32(20), HighAt: proto.Int32(50)},
		s.token(t, "shop-b", auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}

	// Shop k: customers x0..x9 with k+1 orders each; p000..p004 too (the
	// scored customers of shop-a). shop-b's even customers opened two
	// billing tickets, shop-c's odd ones answered NPS as detractors,
	// shop-d's have a renewal date.
	customers := []string{"p000", "p001", "p002", "p003", "p004"}
	for j := range 10 {
		customers = append(customers, fmt.Sprintf("x%d", j))
	}
	byShop := map[string][]*eventsv1.Event{}
	for k, shop := range shops {
		for j, cust := range customers {
			var evs []*eventsv1.Event
			for i := range k + 1 {
				evs = append(evs, orderEv(fmt.Sprintf("%s-b%d", cust, i), cust, now.Add(-time.Duration(5+20*i+j)*day), int64(1000*(k+1))))
			}
			switch {
			case shop == "shop-b" && j%2 == 0:
				evs = append(evs,
					ticketEv(cust+"-t1", cust, now.Add(-2*day), eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING),
					ticketEv(cust+"-t2", cust, now.Add(-4*day), eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING))
			case shop == "shop-c" && j%2 == 1:
				evs = append(evs, npsEv(cust+"-n", cust, now.Add(-3*day), int32(j%4)))
			case shop == "shop-d":
				evs = append(evs, renewalEv(cust+"-u", cust, now.Add(-day), "2026-03-20"))
			}
			byShop[shop] = append(byShop[shop], evs...)
		}
	}
	s.stop()
	for i := 0; ; i++ {
		sent := false
		for _, shop := range shops {
			if i < len(byShop[shop]) {
				s.publish(t, shop, byShop[shop][i])
				sent = true
			}
		}
		if !sent {
			break
		}
	}
	s.start(t)
	s.caughtUp(t)
	c = s.client()

	stored := map[string]map[string][2]int{} // shop -> customer -> score, band
	rows, err := s.db.Query(ctx, `SELECT tenant_id, customer_id, score, band FROM churn_scores`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var shop, cust string
		var score, band int
		if err := rows.Scan(&shop, &cust, &score, &band); err != nil {
			t.Fatal(err)
		}
		if stored[shop] == nil {
			stored[shop] = map[string][2]int{}
		}
		stored[shop][cust] = [2]int{score, band}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	for k, shop := range shops {
		read := s.token(t, shop, auth.ScopeRead)
		for j, cust := range customers {
			r, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: cust}, read)
			if err != nil {
				t.Fatalf("%s %s: %v", shop, cust, err)
			}
			f := r.GetFeatures()
			orders := k + 1
			if shop == "shop-a" {
				orders += ordersOf(population(30, now), cust)
			}
			tickets, detractor, renewal := 0, j%2 == 1 && shop == "shop-c", ""
			if shop == "shop-b" && j%2 == 0 {
				tickets = 2
			}
			if shop == "shop-d" {
				renewal = "2026-03-20"
			}
			if int(f.GetOrders()) != orders || int(f.GetTickets_30D()) != tickets || (f.LatestNps != nil) != detractor || f.GetRenewalDate() != renewal {
				t.Fatalf("%s %s: features %v, want %d orders, %d tickets, NPS %v, renewal %q", shop, cust, f, orders, tickets, detractor, renewal)
			}
			want := [2]int{int(r.GetRisk().GetScore()), int(r.GetRisk().GetBand())}
			if got, ok := stored[shop][cust]; !ok || got != want {
				t.Fatalf("%s %s: stored score and band %v (%v), the one-shop read's %v", shop, cust, got, ok, want)
			}
			if shop == "shop-b" && j%2 == 0 && r.GetRisk().GetBand() != churnv1.RiskBand_RISK_BAND_HIGH {
				t.Fatalf("%s %s with two billing tickets and shop-b's weights: %v", shop, cust, r.GetRisk())
			}
		}
		st, err := s.svc.RescoreAll(ctx, shop)
		if err != nil || st.Changed != 0 || st.BandChanges != 0 {
			t.Fatalf("%s: a pass at the instant of the batches rewrote %+v (%v)", shop, st, err)
		}
	}

	evs, ids := s.signals(t)
	announced := map[string]int{}
	for i, ev := range evs {
		if !strings.HasPrefix(ids[i], ev.GetTenantId()+"/"+ev.GetCustomerId()+"/") {
			t.Fatalf("churn.risk_changed %q of %s/%s", ids[i], ev.GetTenantId(), ev.GetCustomerId())
		}
		announced[ev.GetTenantId()]++
	}
	for _, shop := range shops {
		var changes int
		if err := s.db.QueryRow(ctx, `SELECT coalesce(sum(band_changes), 0) FROM churn_scores WHERE tenant_id = $1`, shop).Scan(&changes); err != nil {
			t.Fatal(err)
		}
		if announced[shop] != changes {
			t.Fatalf("%s: %d churn.risk_changed for %d band changes", shop, announced[shop], changes)
		}
	}
	if announced["shop-b"] < 5 {
		t.Fatalf("shop-b announced %d band changes, want one per customer with billing tickets", announced["shop-b"])
	}
}

// ordersOf counts the orders of customer among evs.
func ordersOf(evs []*eventsv1.Event, customer string) int {
	n := 0
	for _, ev := range evs {
		if ev.GetOrderPlaced().GetCustomerId() == customer {
			n++
		}
	}
	return n
}
