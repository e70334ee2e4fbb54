package churnsignal_test

import (
	"context"
	"fmt"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// TestRescoringWritesOnlyChanges: a rescoring leaves alone every row whose
// score, band and reasons did not change (same xmin, the rows written
// counter says so too), and the stored scores it leaves read exactly as
// scores computed afresh at the same instant, sentences included.
func TestRescoringWritesOnlyChanges(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	read := s.token(t, "shop", auth.ScopeRead)
	evs := population(60, now)
	for k := range 6 {
		cust := fmt.Sprintf("p%03d", 10+k)
		evs = append(evs, ticketEv(cust+"-t", cust, now.Add(-time.Duration(5*k)*day), eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING),
			npsEv(cust+"-n", cust, now.Add(-time.Duration(3*k)*day), int32(k)))
	}
	s.publish(t, "shop", evs...)
	s.caughtUp(t)
	if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, s.token(t, "shop", auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	xmins := func() map[string]uint32 {
		rows, err := s.db.Query(ctx, `SELECT customer_id, xmin::text::bigint FROM churn_scores WHERE tenant_id = 'shop'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]uint32{}
		for rows.Next() {
			var id string
			var x int64
			if err := rows.Scan(&id, &x); err != nil {
				t.Fatal(err)
			}
			out[id] = uint32(x)
		}
		return out
	}
	written := func() int64 { return counter(t, s, "retain_churn_rescore_rows_written") }

	x0, w0, c0 := xmins(), written(), counter(t, s, "retain_churn_rescore_customers")
	st, err := s.svc.RescoreAll(ctx, "shop")
	if err != nil || st.Changed != 0 || st.Customers != 60 {
		t.Fatalf("rescoring at the same instant: %+v %v", st, err)
	}
	if x1 := xmins(); !maps.Equal(x0, x1) || written() != w0 {
		t.Fatalf("rows rewritten by a rescoring that changed nothing (written %d -> %d)", w0, written())
	}
	if c := counter(t, s, "retain_churn_rescore_customers"); c != c0+60 {
		t.Fatalf("customers scored counter %d -> %d, want +60", c0, c)
	}
	if !strings.Contains(scrape(t, s), `retain_churn_rescore_duration_seconds_count{otel_scope_name="retain/churnsignal"`) {
		t.Fatal("no rescoring duration in /metrics")
	}

	for _, step := range []time.Duration{time.Hour, 3 * day, 40 * day} {
		s.clock.Set(s.clock.Now().Add(step))
		x0, w0 := xmins(), written()
		st, err := s.svc.RescoreAll(ctx, "shop")
		if err != nil {
			t.Fatal(err)
		}
		x1 := xmins()
		rewritten := 0
		for id, x := range x1 {
			if x != x0[id] {
				rewritten++
			}
		}
		if rewritten != st.Changed || int64(st.Changed) != written()-w0 {
			t.Fatalf("%s later: %d rows rewritten, %d counted as written, metric +%d", step, rewritten, st.Changed, written()-w0)
		}
		t.Logf("%s later: %d of %d rows rewritten", step, st.Changed, st.Customers)
		// Every stored score, as listed, is the score computed now.
		at := s.clock.Now()
		for _, r := range listAll(t, s, churnv1.RiskBand_RISK_BAND_UNSPECIFIED, 100, read) {
			fresh, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: r.GetCustomerId()}, read)
			if err != nil {
				t.Fatal(err)
			}
			f := fresh.GetRisk()
			if !r.GetAsOf().AsTime().Equal(at) || r.GetScore() != f.GetScore() || r.GetBand() != f.GetBand() || !proto.Equal(&churnv1.CustomerRisk{Reasons: r.GetReasons()}, &churnv1.CustomerRisk{Reasons: f.GetReasons()}) {
				t.Fatalf("%s later, %s stored (as of %s) %d %s %v; computed %d %s %v", step, r.GetCustomerId(), r.GetAsOf().AsTime(),
					r.GetScore(), r.GetBand(), r.GetReasons(), f.GetScore(), f.GetBand(), f.GetReasons())
			}
		}
	}
}

func scrape(t *testing.T, s *stack) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.tel.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// counter reads a counter of the service's /metrics (0 before its first
// increment).
func counter(t *testing.T, s *stack, name string) int64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, s), "\n") {
		if strings.HasPrefix(line, name+"_total{") || strings.HasPrefix(line, name+"_total ") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return int64(v)
		}
	}
	return 0
}

// TestFactsDuringRescoring: facts arrive while full passes run, an hour
// apart on the service's clock so that each has scores to rewrite. No pass
// overwrites the consumer's score of a new fact with one computed without
// it, and every band change is announced exactly once.
//
// A pass at the instant of the last one then rewrites only rows the
// consumer wrote as of an earlier instant (it read the clock before the
// last pass moved it and committed after the pass had read the row, which
// the pass does not lock unless it changes it): a row that a pass wrote as
// of the last instant without a fact the consumer had committed would be
// rewritten too, as of that same instant.
func TestFactsDuringRescoring(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	s.publish(t, "shop", population(200, now)...)
	s.caughtUp(t)
	if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, s.token(t, "shop", auth.ScopeAdmin)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range 60 {
			var evs []*eventsv1.Event
			for c := k % 5; c < 200; c += 5 {
				cust := fmt.Sprintf("p%03d", c)
				evs = append(evs, ticketEv(fmt.Sprintf("%s-t%d", cust, k), cust, now.Add(-time.Duration(k%20)*day), eventsv1.TicketCategory(1+k%5)))
				if k%3 == 0 {
					evs = append(evs, npsEv(fmt.Sprintf("%s-n%d", cust, k), cust, now.Add(-time.Duration(k)*time.Hour), int32(k%11)))
				}
			}
			s.publish(t, "shop", evs...)
		}
	}()
	passes, written := 0, 0
	for running := true; running; passes++ {
		select {
		case <-done:
			running = false
		default:
		}
		s.clock.Set(s.clock.Now().Add(time.Hour))
		st, err := s.svc.RescoreAll(ctx, "shop")
		if err != nil {
			t.Fatal(err)
		}
		written += st.Changed
	}
	s.caughtUp(t)
	last := s.clock.Now()
	type version struct {
		xmin       int64
		computedAt time.Time
	}
	versions := func() map[string]version {
		rows, err := s.db.Query(ctx, `SELECT customer_id, xmin::text::bigint, computed_at FROM churn_scores WHERE tenant_id = 'shop'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]version{}
		for rows.Next() {
			var id string
			var v version
			if err := rows.Scan(&id, &v.xmin, &v.computedAt); err != nil {
				t.Fatal(err)
			}
			out[id] = v
		}
		return out
	}
	before := versions()
	if _, err := s.svc.RescoreAll(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	for id, v := range versions() {
		if b := before[id]; v.xmin != b.xmin && !b.computedAt.Before(last) {
			t.Errorf("%s, scored as of %s, rescored at that instant: a pass lost a fact", id, b.computedAt)
		}
	}
	st, err := s.svc.RescoreAll(ctx, "shop")
	if err != nil || st.Changed != 0 || st.BandChanges != 0 {
		t.Fatalf("after %d passes during the facts, a second pass at the same instant: %+v %v", passes, st, err)
	}
	var changes int
	if err := s.db.QueryRow(ctx, `SELECT coalesce(sum(band_changes), 0) FROM churn_scores WHERE tenant_id = 'shop'`).Scan(&changes); err != nil {
		t.Fatal(err)
	}
	evs, ids := s.signals(t)
	if len(evs) != changes || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
		t.Fatalf("%d churn.risk_changed (%d distinct ids) for %d band changes", len(evs), len(slices.Compact(slices.Sorted(slices.Values(ids)))), changes)
	}
	t.Logf("%d passes (%d rows written) while 60 batches of facts arrived; %d band changes", passes, written, changes)
}
