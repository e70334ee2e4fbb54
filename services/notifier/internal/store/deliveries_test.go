package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

// TestGetDeliveryReadsOneState: attempts save a delivery's status and the
// step that explains it in one transaction, while GetDelivery reads them;
// the delivery read always has exactly the steps of its attempts, never a
// status from before an attempt with the step from after it.
func TestGetDeliveryReadsOneState(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := pool.Exec(ctx, `INSERT INTO deliveries (tenant, request_id, customer_id, channel, category, priority, template_key, request, status, expires_at, requested_at, created_at, updated_at)
		VALUES ('shop', 'r', 'c', 1, 1, 2, 'k', '', 'queued', $1::timestamptz + interval '1 day', $1, $1, $1)`, at); err != nil {
		t.Fatal(err)
	}
	testenv.ReadsWhileWrites(t, 300, 20, func(i int) error {
		status := StatusSending
		if i%2 == 0 {
			status = StatusQueued
		}
		return pg.InTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE deliveries SET status = $1, attempts = $2 WHERE tenant = 'shop' AND request_id = 'r'`, status, i); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO delivery_decisions (tenant, request_id, step, stage, verdict, decided_at) VALUES ('shop', 'r', $1, 'send', 'retry', $2)`, i, at)
			return err
		})
	}, func(int) error {
		d, ds, err := GetDelivery(ctx, pool, "shop", "r")
		if err == nil && int(d.Attempts) != len(ds) {
			err = fmt.Errorf("a delivery %s after %d attempts with %d steps", d.Status, d.Attempts, len(ds))
		}
		return err
	})
}
