package app

import (
	"sort"
	"testing"
	"time"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

func TestDecisionOrder(t *testing.T) {
	at := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	d := func(tenant, cust, id string, rank int32, p notifierv1.Priority, min int) store.Delivery {
		return store.Delivery{Tenant: tenant, CustomerID: cust, RequestID: id, Rank: rank, Priority: p, RequestedAt: at.Add(time.Duration(min) * time.Minute)}
	}
	low, normal, unspec := notifierv1.Priority_PRIORITY_LOW, notifierv1.Priority_PRIORITY_NORMAL, notifierv1.Priority_PRIORITY_UNSPECIFIED
	ds := []store.Delivery{
		d("t", "c", "low-late", 0, low, 5),
		d("t", "c", "low-b", 0, low, 1),
		d("t", "c", "low-a", 0, low, 1),
		d("t", "b", "other-customer", 0, low, 9),
		d("t", "c", "normal-late", 0, normal, 9),
		d("t", "c", "unspecified", 0, unspec, 3), // the policy treats it as normal
		d("s", "z", "other-tenant", 0, low, 0),
		d("t", "c", "rank-60-early", 60, normal, -9),
		d("t", "c", "rank-90-late", 90, normal, 20),
		d("t", "c", "rank-40-low", 40, low, 0), // a rank outranks an unranked normal
	}
	sort.Slice(ds, func(i, j int) bool { return decisionOrder(&ds[i], &ds[j]) })
	want := []string{"other-tenant", "other-customer", "rank-90-late", "rank-60-early", "rank-40-low",
		"unspecified", "normal-late", "low-a", "low-b", "low-late"}
	for i, x := range ds {
		if x.RequestID != want[i] {
			var got []string
			for _, y := range ds {
				got = append(got, y.RequestID)
			}
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}
