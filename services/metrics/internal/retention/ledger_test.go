package retention

import (
	"testing"
	"time"
)

func TestNewLedger(t *testing.T) {
	d1, d2 := at(t, "2024-01-01"), at(t, "2024-02-01")
	tests := []struct {
		name          string
		orders        []Order
		refunds       []Refund
		wantNet       map[string]int64 // order id -> net
		wantAt        map[string]time.Time
		wantUnmatched []string
	}{
		{
			name:    "the same order twice is one order",
			orders:  []Order{{ID: "o1", Customer: "a", At: d1, TotalMinor: 1000}, {ID: "o1", Customer: "a", At: d1, TotalMinor: 1000}},
			wantNet: map[string]int64{"o1": 1000},
		},
		{
			name:    "conflicting versions: the earliest wins, whatever the arrival order",
			orders:  []Order{{ID: "o1", Customer: "a", At: d2, TotalMinor: 500}, {ID: "o1", Customer: "a", At: d1, TotalMinor: 900}},
			wantNet: map[string]int64{"o1": 900},
			wantAt:  map[string]time.Time{"o1": d1},
		},
		{
			name:    "conflicting versions at one instant: the smaller total wins",
			orders:  []Order{{ID: "o1", Customer: "a", At: d1, TotalMinor: 900}, {ID: "o1", Customer: "a", At: d1, TotalMinor: 500}},
			wantNet: map[string]int64{"o1": 500},
		},
		{
			name:   "partial refunds add up; the same refund twice counts once",
			orders: []Order{{ID: "o1", Customer: "a", At: d1, TotalMinor: 1000}},
			refunds: []Refund{
				{ID: "r1", OrderID: "o1", AmountMinor: 200},
				{ID: "r1", OrderID: "o1", AmountMinor: 200},
				{ID: "r2", OrderID: "o1", AmountMinor: 300},
			},
			wantNet: map[string]int64{"o1": 500},
		},
		{
			name:    "refunds beyond the total leave the order worth zero, not less",
			orders:  []Order{{ID: "o1", Customer: "a", At: d1, TotalMinor: 1000}},
			refunds: []Refund{{ID: "r1", OrderID: "o1", AmountMinor: 700}, {ID: "r2", OrderID: "o1", AmountMinor: 700}},
			wantNet: map[string]int64{"o1": 0},
		},
		{
			name:          "a refund of an order not yet seen waits, and invalid amounts are ignored",
			orders:        []Order{{ID: "o1", Customer: "a", At: d1, TotalMinor: 1000}},
			refunds:       []Refund{{ID: "r1", OrderID: "o9", AmountMinor: 100}, {ID: "r2", OrderID: "o1", AmountMinor: 0}, {ID: "r3", OrderID: "o1", AmountMinor: -5}},
			wantNet:       map[string]int64{"o1": 1000},
			wantUnmatched: []string{"r1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger(tt.orders, tt.refunds)
			if len(l.Orders) != len(tt.wantNet) {
				t.Fatalf("%d orders, want %d: %+v", len(l.Orders), len(tt.wantNet), l.Orders)
			}
			for _, o := range l.Orders {
				if want, ok := tt.wantNet[o.ID]; !ok || o.NetMinor() != want {
					t.Errorf("order %s: net %d, want %d", o.ID, o.NetMinor(), want)
				}
				if want, ok := tt.wantAt[o.ID]; ok && !o.At.Equal(want) {
					t.Errorf("order %s: at %s, want %s", o.ID, o.At, want)
				}
			}
			var unmatched []string
			for _, r := range l.Unmatched {
				unmatched = append(unmatched, r.ID)
			}
			if len(unmatched) != len(tt.wantUnmatched) || (len(unmatched) > 0 && unmatched[0] != tt.wantUnmatched[0]) {
				t.Errorf("unmatched %v, want %v", unmatched, tt.wantUnmatched)
			}
		})
	}
}

func TestLedgerActivities(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	l := NewLedger([]Order{
		{ID: "3", Customer: "b", At: at(t, "2024-03-01")},
		{ID: "1", Customer: "a", At: time.Date(2024, 2, 1, 1, 0, 0, 0, paris)},
		{ID: "2", Customer: "a", At: at(t, "2024-01-01")},
		{ID: "4", Customer: "a", At: at(t, "2024-01-01")},
	}, nil)
	acts := l.Activities()
	if len(acts) != 2 || acts[0].Customer != "a" || acts[1].Customer != "b" {
		t.Fatalf("activities %+v", acts)
	}
	a := acts[0]
	if !a.FirstOrder.Equal(at(t, "2024-01-01")) || len(a.Orders) != 3 {
		t.Fatalf("activity a %+v", a)
	}
	if a.Orders[2] != at(t, "2024-02-01") || a.Orders[2].Location() != time.UTC {
		t.Fatalf("order instants are not in UTC: %v", a.Orders)
	}
}
