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
	d := func(tenant, cust, id string, p notifierv1.Priority, min int) store.Delivery {
		return store.Delivery{Tenant: tenant, CustomerID: cust, RequestID: id, Priority: p, RequestedAt: at.Add(time.Duration(min) * time.Minute)}
	}
	low, normal, unspec := notifierv1.Priority_PRIORITY_LOW, notifierv1.Priority_PRIORITY_NORMAL, notifierv1.Priority_PRIORITY_UNSPECIFIED
	ds := []store.Delivery{
		d("t", "c", "low-late", low, 5),
		d("t", "c", "low-b", low, 1),
		d("t", "c", "low-a", low, 1),
		d("t", "b", "other-customer", low, 9),
		d("t", "c", "normal-late", normal, 9),
		d("t", "c", "unspecified", unspec, 3), // the policy treats it as normal
		d("s", "z", "other-tenant", low, 0),
	}
	sort.Slice(ds, func(i, j int) bool { return decisionOrder(&ds[i], &ds[j]) })
	want := []string{"other-tenant", "other-customer", "unspecified", "normal-late", "low-a", "low-b", "low-late"}
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
