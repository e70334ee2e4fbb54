package bus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/bus"
)

// TestInHandlerTxRunsHooksAfterCommit: a hook registered in InHandlerTx's
// transaction runs once it has committed (its row visible from another
// connection), and one whose transaction rolls back never runs.
func TestInHandlerTxRunsHooksAfterCommit(t *testing.T) {
	pool := setupPG(t)
	ctx := testCtx(t)
	var ran []string
	insert := func(id string, fail error) error {
		return bus.InHandlerTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO applied (msg_id, subject) VALUES ($1, 's')`, id); err != nil {
				return err
			}
			if !bus.AfterCommit(ctx, func() {
				var n int
				// Another connection: only committed rows are visible.
				if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM applied WHERE msg_id = $1`, id).Scan(&n); err != nil || n != 1 {
					t.Errorf("hook of %s ran with %d rows visible (%v), want 1", id, n, err)
				}
				ran = append(ran, id)
			}) {
				return errors.New("AfterCommit refused InHandlerTx's context")
			}
			return fail
		})
	}
	if err := insert("committed", nil); err != nil {
		t.Fatal(err)
	}
	rollback := errors.New("roll back")
	if err := insert("rolled-back", rollback); !errors.Is(err, rollback) {
		t.Fatalf("InHandlerTx returned %v, want fn's error", err)
	}
	if len(ran) != 1 || ran[0] != "committed" {
		t.Fatalf("hooks ran for %v, want only the committed transaction's", ran)
	}
}
