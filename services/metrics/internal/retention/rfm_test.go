package retention

import (
	"testing"
	"time"

	"github.com/retainhq/retain/services/metrics/rfm"
)

func TestScoreRFM(t *testing.T) {
	asOf := at(t, "2024-07-01")
	day := func(n int) time.Time { return asOf.Add(-time.Duration(n) * Day) }
	// Five customers, distinct on every measure, so that each score is its
	// rank: best customer "e".
	var orders []Order
	add := func(c CustomerID, n int, last time.Time, each int64) {
		for i := range n {
			orders = append(orders, Order{ID: string(c) + itoa(i), Customer: c, At: last.Add(-time.Duration(i) * time.Hour), TotalMinor: each})
		}
	}
	add("a", 1, day(300), 100)                                                           // oldest, fewest, least: R1 F1 M1 -> lost
	add("b", 2, day(200), 150)                                                           // R2 F2 M2 -> hibernating
	add("c", 3, day(100), 200)                                                           // R3 F3 M3 -> need attention
	add("d", 4, day(10), 250)                                                            // R4 F4 M4 -> loyal
	add("e", 5, day(1), 300)                                                             // R5 F5 M5 -> champions
	orders = append(orders, Order{ID: "late", Customer: "e", At: asOf, TotalMinor: 1e6}) // at asOf: not yet history
	orders = append(orders, Order{ID: "z", Customer: "z", At: asOf.Add(Day), TotalMinor: 1})

	l := NewLedger(orders, []Refund{{ID: "r", OrderID: "e0", AmountMinor: 300}})
	res, err := ScoreRFM(CustomerValuesAsOf(l.Orders, asOf), asOf)
	if err != nil {
		t.Fatal(err)
	}
	want := []RFMScore{
		{Customer: "a", Recency: 300 * Day, Frequency: 1, MonetaryMinor: 100, R: 1, F: 1, M: 1, Segment: rfm.SegmentLost},
		{Customer: "b", Recency: 200 * Day, Frequency: 2, MonetaryMinor: 300, R: 2, F: 2, M: 2, Segment: rfm.SegmentHibernating},
		{Customer: "c", Recency: 100 * Day, Frequency: 3, MonetaryMinor: 600, R: 3, F: 3, M: 3, Segment: rfm.SegmentNeedAttention},
		{Customer: "d", Recency: 10 * Day, Frequency: 4, MonetaryMinor: 1000, R: 4, F: 4, M: 4, Segment: rfm.SegmentLoyal},
		{Customer: "e", Recency: 1 * Day, Frequency: 5, MonetaryMinor: 1200, R: 5, F: 5, M: 5, Segment: rfm.SegmentChampions},
	}
	if len(res.Customers) != len(want) {
		t.Fatalf("%d customers scored, want %d: %+v", len(res.Customers), len(want), res.Customers)
	}
	for i := range want {
		if res.Customers[i] != want[i] {
			t.Errorf("customer %d = %+v, want %+v", i, res.Customers[i], want[i])
		}
	}
	var customers, revenue int64
	for i, s := range res.Segments {
		if s.Segment != rfm.Segments[i] {
			t.Fatalf("segment %d is %s, want %s", i, s.Segment, rfm.Segments[i])
		}
		customers += s.Customers
		revenue += s.NetMinor
		if s.Segment == rfm.SegmentChampions && (s.Customers != 1 || s.NetMinor != 1200) {
			t.Errorf("champions %+v", s)
		}
	}
	if customers != 5 || revenue != 3200 {
		t.Errorf("segments hold %d customers and %d revenue, want 5 and 3200", customers, revenue)
	}

	if _, err := ScoreRFM([]CustomerValue{{Customer: "x", Orders: 1, LastOrder: asOf}}, asOf); err == nil {
		t.Error("a last order at the as-of instant was accepted")
	}
}

func TestTopCustomers(t *testing.T) {
	p := period(t, "2024-01-01", "2025-01-01")
	d := at(t, "2024-06-01")
	l := NewLedger([]Order{
		{ID: "1", Customer: "a", At: d, TotalMinor: 500},
		{ID: "2", Customer: "b", At: d, TotalMinor: 800},
		{ID: "3", Customer: "c", At: d, TotalMinor: 800}, // ties with b: id order
		{ID: "4", Customer: "d", At: d, TotalMinor: 100},
		{ID: "5", Customer: "d", At: d, TotalMinor: 100},
		{ID: "6", Customer: "e", At: d, TotalMinor: 2000},
		{ID: "7", Customer: "f", At: d, TotalMinor: 300},
		{ID: "8", Customer: "g", At: d, TotalMinor: 400},
		{ID: "9", Customer: "h", At: at(t, "2023-06-01"), TotalMinor: 1e6}, // outside
	}, []Refund{{ID: "r", OrderID: "6", AmountMinor: 1000}})

	ranked := RevenueByCustomer(l.Orders, p)
	wantOrder := []CustomerID{"e", "b", "c", "a", "g", "f", "d"}
	for i, c := range wantOrder {
		if ranked[i].Customer != c {
			t.Fatalf("ranking %+v, want %v", ranked, wantOrder)
		}
	}
	if ranked[6].Orders != 2 || ranked[6].NetMinor != 200 {
		t.Fatalf("d: %+v", ranked[6])
	}

	tests := []struct {
		percent float64
		want    TopCustomers
	}{
		{20, TopCustomers{Customers: 2, Of: 7, TopNetMinor: 1800, AllNetMinor: 4000}},    // ceil(1.4)
		{14.28, TopCustomers{Customers: 1, Of: 7, TopNetMinor: 1000, AllNetMinor: 4000}}, // 0.9996 -> 1
		{0.01, TopCustomers{Customers: 1, Of: 7, TopNetMinor: 1000, AllNetMinor: 4000}},
		{100, TopCustomers{Customers: 7, Of: 7, TopNetMinor: 4000, AllNetMinor: 4000}},
	}
	for _, tt := range tests {
		got, err := Top(ranked, tt.percent)
		if err != nil || got != tt.want {
			t.Errorf("Top(%v%%) = %+v, %v; want %+v", tt.percent, got, err, tt.want)
		}
	}
	top20, _ := Top(ranked, 20)
	wantPercent(t, "top 20% share", top20.RevenueShare(), 45)
	for _, bad := range []float64{0, -1, 100.01, 0.001} {
		if _, err := Top(ranked, bad); err == nil {
			t.Errorf("Top(%v%%) accepted", bad)
		}
	}
	if got, _ := Top(nil, 20); got != (TopCustomers{}) {
		t.Errorf("Top of nobody: %+v", got)
	}
	wantUndefined(t, "share of no revenue", TopCustomers{}.RevenueShare())

	t.Run("pages cover the ranking once, in order", func(t *testing.T) {
		for limit := 1; limit <= 8; limit++ {
			var got []CustomerID
			var cursor *RankCursor
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("paging does not end")
				}
				page, next := PageAfter(ranked, cursor, limit)
				for _, r := range page {
					got = append(got, r.Customer)
				}
				if next == nil {
					break
				}
				cursor = next
			}
			if len(got) != len(wantOrder) {
				t.Fatalf("limit %d: %v", limit, got)
			}
			for i := range got {
				if got[i] != wantOrder[i] {
					t.Fatalf("limit %d: %v, want %v", limit, got, wantOrder)
				}
			}
		}
	})
	t.Run("a cursor whose customer left the ranking still resumes in place", func(t *testing.T) {
		page, _ := PageAfter(ranked, &RankCursor{NetMinor: 800, Customer: "bb"}, 2)
		if len(page) != 2 || page[0].Customer != "c" || page[1].Customer != "a" {
			t.Fatalf("page %+v", page)
		}
	})
}
