package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal/internal/facts"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// TestFeaturesOfManyTenants reads the features of two shops' customers
// (the same customer ids, different facts) with the consumer's one read
// for every tenant of a batch, and with the one-tenant read of passes and
// queries: both give every customer the same features, now and as of a
// past instant (which leaves out the facts after it).
func TestFeaturesOfManyTenants(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pool := testenv.MigratedPool(t, store.Migrations)
	const n = 400
	loadShop(t, pool, "a", n, now)
	loadShop(t, pool, "b", n, now)
	// loadShop draws the same shop for both: make b's facts differ.
	for _, sql := range []string{
		`DELETE FROM churn_orders WHERE tenant_id = 'b' AND order_id LIKE '%-o0'`,
		`UPDATE churn_tickets SET resolved_at = opened_at + interval '1 hour' WHERE tenant_id = 'b'`,
		`UPDATE churn_answers SET score = 10 - score WHERE tenant_id = 'b'`,
		// Renewal dates, some changed, some cleared, one after the instant read.
		`INSERT INTO churn_renewals (tenant_id, event_id, customer_id, renewal_date, updated_at)
		 SELECT t, c || '-r1', c, date '2026-04-01' + (i % 30), timestamptz '2026-01-01' + i * interval '1 hour'
		 FROM (SELECT 'c' || lpad(i::text, 7, '0') AS c, i FROM generate_series(0, 99) i) s, unnest(ARRAY['a', 'b']) t`,
		`INSERT INTO churn_renewals (tenant_id, event_id, customer_id, renewal_date, updated_at)
		 SELECT 'a', c || '-r2', c, CASE WHEN i % 2 = 0 THEN NULL ELSE date '2026-06-01' END, timestamptz '2026-02-20' + i * interval '1 hour'
		 FROM (SELECT 'c' || lpad(i::text, 7, '0') AS c, i FROM generate_series(0, 299, 3) i) s`,
		`INSERT INTO churn_renewals (tenant_id, event_id, customer_id, renewal_date, updated_at)
		 VALUES ('b', 'late', 'c0000001', date '2027-01-01', timestamptz '2026-03-02')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var customers []facts.Customer
	ids := map[string][]string{}
	for _, tenant := range []string{"a", "b"} {
		for c := range n + 1 { // and one nobody knows
			id := fmt.Sprintf("c%07d", c)
			customers = append(customers, facts.Customer{Tenant: tenant, ID: id})
			ids[tenant] = append(ids[tenant], id)
		}
	}
	for _, asOf := range []time.Time{now, now.Add(-30 * 24 * time.Hour)} {
		got, err := store.LoadFeaturesOf(ctx, pool, customers, asOf)
		if err != nil {
			t.Fatal(err)
		}
		for _, tenant := range []string{"a", "b"} {
			want, err := store.LoadFeatures(ctx, pool, tenant, store.IDs(ids[tenant]...), asOf)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) < n/2 {
				t.Fatalf("%s as of %s: only %d customers with features", tenant, asOf, len(want))
			}
			if diff := cmp.Diff(want, got[tenant]); diff != "" {
				t.Fatalf("%s as of %s (-one tenant +many):\n%s", tenant, asOf, diff)
			}
		}
		if diff := cmp.Diff(got["a"], got["b"]); diff == "" {
			t.Fatal("the two shops read the same features")
		}
	}
}
