package domain

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/retainhq/retain/services/metrics/rfm"
)

// rfmValues is what store.RFMValues returns for these customers: their
// last order and order count before at, one per customer who had ordered.
func rfmValues(custs []*Customer, at time.Time) []RFMValue {
	var out []RFMValue
	for _, c := range custs {
		v := RFMValue{Customer: c.ID}
		for _, o := range c.Orders {
			if !o.At.Before(at) {
				continue
			}
			if o.At.After(v.LastOrder) {
				v.LastOrder = o.At
			}
			v.Orders++
		}
		if v.Orders > 0 {
			out = append(out, v)
		}
	}
	return out
}

// TestRFMScoresAreTheTenantQuintiles scores random tenants one customer at
// a time and checks every score against the quintiles of the whole
// population, computed the way the metrics service does (every customer
// with an order before the instant; recency and frequency over all orders).
func TestRFMScoresAreTheTenantQuintiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 11))
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	for round := range 40 {
		var custs []*Customer
		for i := range 1 + rng.IntN(40) {
			c := &Customer{ID: fmt.Sprintf("c%02d", i)}
			for j := range rng.IntN(6) {
				o := Order{
					ID: fmt.Sprintf("c%02d-%d", i, j), At: at.Add(-time.Duration(rng.IntN(200)) * day).Add(time.Duration(rng.IntN(3)) * time.Hour),
					TotalMinor: int64(100 * rng.IntN(8)), Currency: []string{"EUR", "EUR", "GBP"}[rng.IntN(3)],
				}
				if rng.IntN(10) == 0 {
					o.At = at.Add(time.Duration(rng.IntN(2)) * time.Hour) // at or after the instant: not history
				}
				c.Orders = append(c.Orders, o)
			}
			custs = append(custs, c)
		}
		// The reference: one value per scored customer, then Quintiles.
		var scored []*Customer
		var rec, freq []int64
		for _, c := range custs {
			var last time.Time
			var n int64
			for _, o := range c.Orders {
				if o.At.Before(at) {
					n++
					last = maxTime(last, o.At)
				}
			}
			if n > 0 {
				scored = append(scored, c)
				rec, freq = append(rec, last.UnixNano()), append(freq, n)
			}
		}
		rs, fs := rfm.Quintiles(rec), rfm.Quintiles(freq)

		s := NewRFMScales(at, rfmValues(custs, at))
		for i, c := range scored {
			got, ok := s.Score(c)
			want := CustomerRFM{R: rs[i], F: fs[i], Segment: rfm.SegmentOf(rs[i], fs[i])}
			if !ok || got != want {
				t.Fatalf("round %d, %s: %+v %v, want %+v", round, c.ID, got, ok, want)
			}
		}
		for _, c := range custs {
			if !slices.Contains(scored, c) {
				if got, ok := s.Score(c); ok {
					t.Fatalf("round %d, %s has no order before the instant but scored %+v", round, c.ID, got)
				}
			}
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func TestRFMScalesWithoutOrders(t *testing.T) {
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	s := NewRFMScales(at, nil)
	if s.Recency.Len() != 0 || s.Frequency.Len() != 0 {
		t.Fatalf("no orders: %+v", s)
	}
	if got, ok := s.Score(&Customer{ID: "a", Orders: []Order{{ID: "o", At: at.Add(-day)}}}); ok {
		t.Fatalf("scored %+v against empty scales", got)
	}
}

// TestRFMSegmentCondition evaluates rfm_segment through Plan.Matches and
// PreviewMatches, on a tenant of five customers who are each their own
// quintile.
func TestRFMSegmentCondition(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	var custs []*Customer
	for i := range 5 { // c4: the latest and most orders; c0: the oldest, one order
		c := &Customer{ID: fmt.Sprintf("c%d", i)}
		for j := range i + 1 {
			c.Orders = append(c.Orders, Order{ID: fmt.Sprintf("%d-%d", i, j), At: now.Add(-time.Duration(100-20*i+j) * day), TotalMinor: 1000, Currency: "EUR"})
		}
		custs = append(custs, c)
	}
	late := &Customer{ID: "late", Orders: []Order{{ID: "l", At: now, TotalMinor: 1000, Currency: "EUR"}}}
	plan := func(segments string) *Plan {
		return mustCompile(t, `
id: t
name: T
trigger: {schedule: {every: 1d}}
conditions: [{rfm_segment: {segments: [`+segments+`]}}]
steps: [{id: a, exit: {}}]
`)
	}
	champions := plan("RFM_SEGMENT_CHAMPIONS")
	lostOrLoyal := plan("RFM_SEGMENT_LOST, RFM_SEGMENT_LOYAL")
	if !UsesRFM([]*Plan{mustCompile(t, valid), champions}) {
		t.Fatal("UsesRFM missed an rfm_segment condition")
	}
	env := Env{Now: now, RFM: NewRFMScales(now, rfmValues(append(custs, late), now))}
	matching := func(p *Plan, preview bool) []string {
		var ids []string
		for _, c := range append(custs, late) {
			if (!preview && p.Matches(c, nil, env)) || (preview && p.PreviewMatches(c, env)) {
				ids = append(ids, c.ID)
			}
		}
		return ids
	}
	for _, preview := range []bool{false, true} {
		if got := matching(champions, preview); !slices.Equal(got, []string{"c4"}) {
			t.Errorf("champions (preview %v): %v, want c4", preview, got)
		}
		// c3: R4 F4 loyal; c0: R1 F1 lost.
		if got := matching(lostOrLoyal, preview); !slices.Equal(got, []string{"c0", "c3"}) {
			t.Errorf("lost or loyal (preview %v): %v, want c0, c3", preview, got)
		}
	}
	// An event trigger's own instant does not move the cut: the customer
	// is scored as of the scales' instant.
	if !champions.Matches(custs[4], &Trigger{Type: EventOrderPlaced, At: now.Add(-200 * day)}, env) {
		t.Error("a trigger's instant changed the segment")
	}
	if champions.Matches(custs[4], nil, Env{Now: now}) {
		t.Error("matched without the tenant's scales")
	}
	if UsesRFM([]*Plan{mustCompile(t, valid)}) {
		t.Error("UsesRFM found a condition in a plan without one")
	}
}

func mustCompile(t *testing.T, file string) *Plan {
	t.Helper()
	p, err := Compile(mustDecode(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
