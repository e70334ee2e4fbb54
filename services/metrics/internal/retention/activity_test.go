package retention

import (
	"slices"
	"testing"
	"time"
)

func TestRetentionRatesFromCounts(t *testing.T) {
	tests := []struct {
		name                        string
		counts                      RetentionCounts
		crr, churn, lostPerAcquired float64 // -1: undefined
	}{
		{
			name:   "S=10, two lost, two new, E=10: CRR 80%",
			counts: RetentionCounts{Start: 10, End: 10, New: 2, Retained: 8, Churned: 2, NewActiveAtEnd: 2},
			crr:    80, churn: 20, lostPerAcquired: 100,
		},
		{
			name:   "S=20, five new, one lost, E=24: CRR 95%",
			counts: RetentionCounts{Start: 20, End: 24, New: 5, Retained: 19, Churned: 1, NewActiveAtEnd: 5},
			crr:    95, churn: 5, lostPerAcquired: 20,
		},
		{
			name:   "250 new, 10 lost: lost per acquired 4%",
			counts: RetentionCounts{Start: 100, End: 340, New: 250, Retained: 90, Churned: 10, NewActiveAtEnd: 250},
			crr:    90, churn: 10, lostPerAcquired: 4,
		},
		{
			name:   "new customers who lapse can make CRR negative",
			counts: RetentionCounts{Start: 1, End: 0, New: 3, Churned: 1},
			crr:    -300, churn: 100, lostPerAcquired: 100.0 / 3,
		},
		{
			name:   "S=0: CRR and churn rate undefined",
			counts: RetentionCounts{End: 2, New: 2, NewActiveAtEnd: 2},
			crr:    -1, churn: -1, lostPerAcquired: 0,
		},
		{
			name:   "N=0: lost per acquired undefined",
			counts: RetentionCounts{Start: 4, End: 3, Retained: 3, Churned: 1},
			crr:    75, churn: 25, lostPerAcquired: -1,
		},
		{
			name: "no customers at all: every rate undefined",
			crr:  -1, churn: -1, lostPerAcquired: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.counts.Check(); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct {
				name  string
				ratio Ratio
				want  float64
			}{
				{"CRR", tt.counts.CRR(), tt.crr},
				{"churn rate", tt.counts.ChurnRate(), tt.churn},
				{"lost per acquired", tt.counts.LostPerAcquired(), tt.lostPerAcquired},
			} {
				if r.want == -1 {
					wantUndefined(t, r.name, r.ratio)
				} else {
					wantPercent(t, r.name, r.ratio, r.want)
				}
			}
		})
	}
}

// The worked examples again, this time from orders: the counts must come
// out of CountRetention, not be written by hand.
func TestWorkedExamplesFromOrders(t *testing.T) {
	q2 := period(t, "2024-04-01", "2024-07-01")
	beforeFrom := at(t, "2024-03-15") // in [from-90d, from)
	beforeTo := at(t, "2024-06-20")   // in [to-90d, to)
	lapsed := at(t, "2023-06-01")     // long before the window at from

	join := func(groups ...[]Activity) []Activity { return slices.Concat(groups...) }
	tests := []struct {
		name               string
		acts               []Activity
		want               RetentionCounts
		crr, churn, perAcq float64
	}{
		{
			name: "S=10, two lost, two new, E=10",
			acts: join(
				customers("kept", 8, beforeFrom, beforeTo),
				customers("lost", 2, beforeFrom),
				customers("new", 2, at(t, "2024-06-25")),
			),
			want: RetentionCounts{Start: 10, End: 10, New: 2, Retained: 8, Churned: 2, NewActiveAtEnd: 2},
			crr:  80, churn: 20, perAcq: 100,
		},
		{
			name: "S=20, five new, one lost, E=24",
			acts: join(
				customers("kept", 19, beforeFrom, beforeTo),
				customers("lost", 1, beforeFrom),
				customers("new", 5, at(t, "2024-05-05")),
			),
			want: RetentionCounts{Start: 20, End: 24, New: 5, Retained: 19, Churned: 1, NewActiveAtEnd: 5},
			crr:  95, churn: 5, perAcq: 20,
		},
		{
			name: "250 new, 10 lost",
			acts: join(
				customers("kept", 40, beforeFrom, beforeTo),
				customers("lost", 10, beforeFrom),
				customers("new", 250, at(t, "2024-06-30")),
			),
			want: RetentionCounts{Start: 50, End: 290, New: 250, Retained: 40, Churned: 10, NewActiveAtEnd: 250},
			crr:  80, churn: 20, perAcq: 4,
		},
		{
			name: "reactivated and lapsed-new customers are told apart",
			acts: join(
				customers("back", 3, lapsed, beforeTo),             // lapsed before the period, back in it
				customers("came-and-went", 2, at(t, "2024-04-01")), // new, lapsed again by to
				customers("dormant", 4, lapsed),                    // never active in the period
			),
			want: RetentionCounts{Start: 0, End: 3, New: 2, Reactivated: 3},
			crr:  -1, churn: -1, perAcq: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CountRetention(tt.acts, q2, DefaultWindow)
			if got != tt.want {
				t.Fatalf("counts = %+v, want %+v", got, tt.want)
			}
			if err := got.Check(); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct {
				name  string
				ratio Ratio
				want  float64
			}{{"CRR", got.CRR(), tt.crr}, {"churn rate", got.ChurnRate(), tt.churn}, {"lost per acquired", got.LostPerAcquired(), tt.perAcq}} {
				if r.want == -1 {
					wantUndefined(t, r.name, r.ratio)
				} else {
					wantPercent(t, r.name, r.ratio, r.want)
				}
			}
		})
	}
}

// The window is [t-W, t): closed at t-W, open at t. Each case is one
// customer, so the counts say exactly which sets they fall in.
func TestWindowEdges(t *testing.T) {
	w := DefaultWindow
	p := period(t, "2024-04-01", "2024-07-01")
	ns := time.Nanosecond
	fromMinusW := p.From.Add(-w.Duration()) // 2024-01-02
	toMinusW := p.To.Add(-w.Duration())     // 2024-04-02
	old := at(t, "2020-01-01")              // makes later orders not-first

	tests := []struct {
		name   string
		orders []time.Time
		want   RetentionCounts
	}{
		{"order exactly at from-W is active at from", []time.Time{fromMinusW}, RetentionCounts{Start: 1, Churned: 1}},
		{"order a nanosecond before from-W is not", []time.Time{fromMinusW.Add(-ns)}, RetentionCounts{}},
		{"order a nanosecond before from is active at from", []time.Time{p.From.Add(-ns)}, RetentionCounts{Start: 1, Churned: 1}},
		{"order exactly at to-W is active at to", []time.Time{old, toMinusW}, RetentionCounts{End: 1, Reactivated: 1}},
		{"order a nanosecond before to-W is not active at to", []time.Time{old, toMinusW.Add(-ns)}, RetentionCounts{}},
		{"order exactly at to is not active at to", []time.Time{old, p.To}, RetentionCounts{}},
		{"order a nanosecond before to is active at to", []time.Time{old, p.To.Add(-ns)}, RetentionCounts{End: 1, Reactivated: 1}},
		// Q2 is 91 days long, so an order at from has lapsed by to.
		{"first order exactly at from is new", []time.Time{p.From}, RetentionCounts{New: 1}},
		{"first order a nanosecond before from is not new", []time.Time{p.From.Add(-ns)}, RetentionCounts{Start: 1, Churned: 1}},
		{"first order a nanosecond before to is new", []time.Time{p.To.Add(-ns)}, RetentionCounts{New: 1, End: 1, NewActiveAtEnd: 1}},
		{"first order exactly at to is not new", []time.Time{p.To}, RetentionCounts{}},
		{"orders at from-W and to-W: retained", []time.Time{fromMinusW, toMinusW}, RetentionCounts{Start: 1, End: 1, Retained: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CountRetention([]Activity{NewActivity("c", tt.orders)}, p, w)
			if got != tt.want {
				t.Fatalf("counts = %+v, want %+v", got, tt.want)
			}
			if err := got.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("order exactly at to is active just after to", func(t *testing.T) {
		orders := []time.Time{p.To}
		if ActiveAt(orders, p.To, w) {
			t.Fatal("active at to")
		}
		if !ActiveAt(orders, p.To.Add(ns), w) {
			t.Fatal("not active just after to")
		}
		if !ActiveAt(orders, p.To.Add(w.Duration()), w) {
			t.Fatal("not active at to+W")
		}
		if ActiveAt(orders, p.To.Add(w.Duration()+ns), w) {
			t.Fatal("still active after to+W")
		}
	})
}

func TestActiveAt(t *testing.T) {
	w := WindowDays(30)
	o := []time.Time{at(t, "2024-01-01"), at(t, "2024-01-01"), at(t, "2024-03-01")}
	tests := []struct {
		t    string
		want bool
	}{
		{"2023-12-31", false},
		{"2024-01-01", false},
		{"2024-01-01T00:00:00.000000001Z", true},
		{"2024-01-31", true},
		{"2024-01-31T00:00:00.000000001Z", false},
		{"2024-02-15", false},
		{"2024-03-02", true},
		{"2024-03-31", true},
		{"2024-04-01", false},
	}
	for _, tt := range tests {
		if got := ActiveAt(o, at(t, tt.t), w); got != tt.want {
			t.Errorf("ActiveAt(%s) = %v, want %v", tt.t, got, tt.want)
		}
	}
	if ActiveAt(nil, at(t, "2024-01-01"), w) {
		t.Error("no orders: active")
	}
}

// A store may load only the orders near the period's edges plus the true
// first order: the counts must not change.
func TestCountRetentionWithPartialOrders(t *testing.T) {
	p := period(t, "2024-04-01", "2024-07-01")
	w := DefaultWindow
	full := NewActivity("c", []time.Time{at(t, "2022-05-01"), at(t, "2024-02-01"), at(t, "2024-05-01"), at(t, "2024-06-01")})
	partial := Activity{Customer: "c", FirstOrder: full.FirstOrder, Orders: []time.Time{at(t, "2024-02-01"), at(t, "2024-06-01")}}
	if a, b := CountRetention([]Activity{full}, p, w), CountRetention([]Activity{partial}, p, w); a != b {
		t.Fatalf("full %+v != partial %+v", a, b)
	}
}

func TestRetentionCountsCheck(t *testing.T) {
	bad := []RetentionCounts{
		{Start: 3, Retained: 1, Churned: 1},
		{End: 2, Retained: 1},
		{New: 1, End: 2, NewActiveAtEnd: 2},
		{Start: -1, Churned: -1},
	}
	for _, c := range bad {
		if c.Check() == nil {
			t.Errorf("Check(%+v) = nil, want an error", c)
		}
	}
}

func TestLateOrderCorrectsThePast(t *testing.T) {
	q2 := period(t, "2024-04-01", "2024-07-01")
	onTime := []Order{{ID: "o2", Customer: "c", At: at(t, "2024-05-10"), TotalMinor: 100}}
	late := Order{ID: "o1", Customer: "c", At: at(t, "2024-03-20"), TotalMinor: 50}

	before := CountRetention(NewLedger(onTime, nil).Activities(), q2, DefaultWindow)
	after := CountRetention(NewLedger(append(onTime, late), nil).Activities(), q2, DefaultWindow)
	if want := (RetentionCounts{New: 1, End: 1, NewActiveAtEnd: 1}); before != want {
		t.Fatalf("before the late order: %+v, want %+v", before, want)
	}
	if want := (RetentionCounts{Start: 1, End: 1, Retained: 1}); after != want {
		t.Fatalf("after the late order: %+v, want %+v", after, want)
	}
}
