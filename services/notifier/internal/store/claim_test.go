package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// TestClaimDueCustomers: a timer pass takes the customers nobody else is
// deciding, and holds none of their rows after its look: a decider that
// holds a customer's lock and takes the customer's deferred rows never
// waits for a pass that may be waiting for it.
func TestClaimDueCustomers(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	due := now.Add(-time.Minute)
	var ds []Delivery
	for _, id := range []string{"x/1", "x/2", "y/1", "z/1"} {
		ds = append(ds, Delivery{Tenant: "shop", RequestID: id, CustomerID: id[:1], Channel: notifierv1.Channel_CHANNEL_EMAIL,
			Category: notifierv1.Category_CATEGORY_MARKETING, TemplateKey: "k", Request: &notifierv1.NotificationRequested{},
			ExpiresAt: now.Add(time.Hour), RequestedAt: now.Add(-time.Hour), Status: StatusDeferred, DueAt: &due})
	}
	later := now.Add(time.Minute)
	ds[3].DueAt = &later // z is not due
	err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := InsertDeliveries(ctx, tx, ds, now); err != nil {
			return err
		}
		return SaveAll(ctx, tx, ds, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	begin := func() pgx.Tx {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		return tx
	}
	x, y := Key{"shop", "x"}, Key{"shop", "y"}

	// A consumer batch deciding x holds x's lock and its due rows.
	deciding := begin()
	if err := LockCustomers(ctx, deciding, []Key{x}); err != nil {
		t.Fatal(err)
	}
	if got, err := LockDueDeferred(ctx, deciding, []Key{x}, now); err != nil || len(got) != 2 {
		t.Fatalf("x's due deliveries: %d, %v; want 2", len(got), err)
	}

	pass := begin()
	keys, err := ClaimDueCustomers(ctx, pass, now, 10)
	if err != nil || !slices.Equal(keys, []Key{y}) {
		t.Fatalf("claimed %v, %v; want [y]: x is being decided, z is not due", keys, err)
	}
	// The look locked y's row for a moment only; the pass holds y's lock.
	other := begin()
	if _, err := other.Exec(ctx, `SELECT 1 FROM deliveries WHERE tenant = 'shop' AND customer_id = 'y' FOR UPDATE NOWAIT`); err != nil {
		t.Fatalf("y's row is still locked after the look: %v", err)
	}
	if err := other.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	second := begin()
	if again, err := ClaimDueCustomers(ctx, second, now, 10); err != nil || len(again) != 0 {
		t.Fatalf("a second pass claimed %v, %v; want none: x and y are taken", again, err)
	}
	if got, err := LockDueDeferred(ctx, pass, keys, now); err != nil || len(got) != 1 || got[0].RequestID != "y/1" {
		t.Fatalf("y's due deliveries: %v, %v", got, err)
	}
}
