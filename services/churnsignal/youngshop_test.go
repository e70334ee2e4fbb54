package churnsignal_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/simulate"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// TestYoungShopIsScored is the QA report's: `retain simulate --customers
// 100 --days 90 --send` (and the dev banner's 500 customers over 180 days,
// seed 3), then `retain churn refit`. A shop that young fits a dropout
// distribution Beta(a, b) with a and b in the millions (the report's
// a = 455326.76, b = 3411704.6) or, fitted to convergence, the billions,
// under which the expected purchases came out as exactly 0: the refit
// was refused as expecting nobody to order again ("expects 0.0000 orders
// per customer") and no customer was scored. Now both shops refit and
// every buyer is scored, with expected purchases at least the chance of
// a purchase.
//
// A history that does end long before the fit (the first tenth of a
// half-year import, fitted by hand) is still refused by that guard, and a
// shop ten days old by the one for a fit in which every repeat buyer has
// left.
func TestYoungShopIsScored(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	// As `retain simulate` does: the history ends today.
	end := s.clock.Now().UTC().Truncate(24 * time.Hour)
	shops := []struct {
		tenant               string
		customers, days      int
		seed                 int64
		buyers               map[string]bool
		oneTimeBuyer, repeat string
	}{
		{tenant: "young", customers: 100, days: 90, seed: 1},
		{tenant: "banner", customers: 500, days: 180, seed: 3},
	}
	for i := range shops {
		sh := &shops[i]
		cfg := simulate.DefaultConfig()
		cfg.Customers, cfg.Days, cfg.Seed, cfg.Start = sh.customers, sh.days, sh.seed, end.AddDate(0, 0, -sh.days)
		shop, err := simulate.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var evs []*eventsv1.Event
		orders := map[string]int{}
		if err := shop.Events(func(ev *eventsv1.Event) error {
			evs = append(evs, ev)
			if o := ev.GetOrderPlaced(); o != nil {
				orders[o.GetCustomerId()]++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sh.buyers = map[string]bool{}
		for c, n := range orders {
			sh.buyers[c] = true
			if n == 1 && (sh.oneTimeBuyer == "" || c < sh.oneTimeBuyer) {
				sh.oneTimeBuyer = c
			}
			if n > 1 && (sh.repeat == "" || c < sh.repeat) {
				sh.repeat = c
			}
		}
		for j := 0; j < len(evs); j += 5000 {
			s.publish(t, sh.tenant, evs[j:min(j+5000, len(evs))]...)
		}
	}
	// Ten days old (QA): nobody has ordered a third time, and the fit has
	// every customer leave at their next order.
	const tenDays = "tendays"
	{
		cfg := simulate.DefaultConfig()
		cfg.Customers, cfg.Days, cfg.Seed, cfg.Start = 100, 10, 1, end.AddDate(0, 0, -10)
		shop, err := simulate.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var evs []*eventsv1.Event
		if err := shop.Events(func(ev *eventsv1.Event) error { evs = append(evs, ev); return nil }); err != nil {
			t.Fatal(err)
		}
		s.publish(t, tenDays, evs...)
	}
	// The first tenth of the orders of a half year, the newest five months
	// old: every customer looks gone.
	const gone = "gone"
	half, orders := halfYearShop(t, 3000, end)
	s.publish(t, gone, half[:orders[len(orders)/10]]...)
	s.caughtUp(t)

	c := s.client()
	for _, sh := range shops {
		t.Run(sh.tenant, func(t *testing.T) {
			admin, read := s.token(t, sh.tenant, auth.ScopeAdmin), s.token(t, sh.tenant, auth.ScopeRead)
			resp, err := c.Refit(ctx, &churnv1.RefitRequest{}, admin)
			if err != nil {
				t.Fatalf("refit of a %d-day shop of %d customers: %v", sh.days, sh.customers, err)
			}
			m := resp.GetModel()
			t.Logf("fitted r=%.4g alpha=%.4g a=%.4g b=%.4g over %d customers (converged %v); %d rescored",
				m.GetR(), m.GetAlpha(), m.GetA(), m.GetB(), m.GetCustomers(), m.GetConverged(), resp.GetCustomersRescored())
			// The regime of the report: without it this test checks
			// nothing the others do not.
			if m.GetA() < 1e5 {
				t.Errorf("a = %.4g: the fit is no longer the concentrated one of the report", m.GetA())
			}
			if int(resp.GetCustomersRescored()) != len(sh.buyers) {
				t.Errorf("%d customers rescored, want the %d who ordered", resp.GetCustomersRescored(), len(sh.buyers))
			}
			scored := listAll(t, s, churnv1.RiskBand_RISK_BAND_UNSPECIFIED, 1000, read)
			high := 0
			for _, r := range scored {
				if !sh.buyers[r.GetCustomerId()] {
					t.Errorf("%s scored but never ordered", r.GetCustomerId())
				}
				if r.GetBand() == churnv1.RiskBand_RISK_BAND_HIGH {
					high++
				}
			}
			if len(scored) != len(sh.buyers) {
				t.Errorf("%d customers scored, want %d", len(scored), len(sh.buyers))
			}
			if high == len(scored) {
				t.Errorf("all %d customers scored HIGH", high)
			}
			for _, id := range []string{sh.oneTimeBuyer, sh.repeat} {
				r, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: id}, read)
				if err != nil {
					t.Fatal(err)
				}
				f := r.GetFeatures()
				// E[Y] >= P(Y > 0): the report's one-time buyer had
				// P(no purchase) 0.82 and E[Y] 0.
				if f.ExpectedPurchases == nil || !(f.GetExpectedPurchases() >= 1-f.GetPNoPurchase()) || !(f.GetPNoPurchase() < 1) {
					t.Errorf("%s: expected purchases %v, P(no purchase) %v", id, f.ExpectedPurchases, f.GetPNoPurchase())
				}
			}
		})
	}

	t.Run("ten days old", func(t *testing.T) {
		_, err := c.Refit(ctx, &churnv1.RefitRequest{}, s.token(t, tenDays, auth.ScopeAdmin))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "customers who ordered more than once") {
			t.Fatalf("refit of a shop ten days old: %v, want FAILED_PRECONDITION for a fit in which every repeat buyer has left", err)
		}
		t.Log(err)
		if _, err := c.GetModel(ctx, &churnv1.GetModelRequest{}, s.token(t, tenDays, auth.ScopeRead)); status.Code(err) != codes.NotFound {
			t.Errorf("model after the refused refit: %v, want NOT_FOUND", err)
		}
	})

	t.Run("history that ended long ago", func(t *testing.T) {
		_, err := c.Refit(ctx, &churnv1.RefitRequest{}, s.token(t, gone, auth.ScopeAdmin))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "orders per customer") {
			t.Fatalf("refit on the first tenth of a half year: %v, want FAILED_PRECONDITION for a fit expecting nobody to order again", err)
		}
		t.Log(err)
		if _, err := c.GetModel(ctx, &churnv1.GetModelRequest{}, s.token(t, gone, auth.ScopeRead)); status.Code(err) != codes.NotFound {
			t.Errorf("model after the refused refit: %v, want NOT_FOUND", err)
		}
	})
}
