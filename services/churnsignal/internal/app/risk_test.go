package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// TestCustomerRiskReadsOneState: batches of facts commit a customer's
// orders while CustomerRisk reads them; its features and mean order value
// always come from the same orders. Order i is worth 2i-1, so n orders
// have a mean of exactly n: a count read before a batch with a mean read
// after it would disagree.
func TestCustomerRiskReadsOneState(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, store.Migrations)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e, err := New(pool, Config{Now: func() time.Time { return now }}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	insert := func(tx pgx.Tx, i int32) error {
		_, err := tx.Exec(ctx, `INSERT INTO churn_orders (tenant_id, order_id, customer_id, placed_at, amount_minor, currency, event_id)
			VALUES ('shop', $1, 'c', $2, $3, 'EUR', $1)`, fmt.Sprintf("o%d", i), now.AddDate(0, 0, -100).Add(time.Duration(i)*time.Second), 2*int64(i)-1)
		return err
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return insert(tx, 1) }); err != nil {
		t.Fatal(err)
	}
	testenv.ReadsWhileWrites(t, 300, 20, func(i int) error {
		return pg.InTx(ctx, pool, func(tx pgx.Tx) error { return insert(tx, int32(i)+1) })
	}, func(int) error {
		r, err := e.CustomerRisk(ctx, "shop", "c", nil)
		if err != nil {
			return err
		}
		if f := r.Features; int64(f.Orders) != f.MeanOrderValue.AmountMinor {
			return fmt.Errorf("%d orders with a mean order value of %d, the mean of %[2]d orders", f.Orders, f.MeanOrderValue.AmountMinor)
		}
		return nil
	})
}
