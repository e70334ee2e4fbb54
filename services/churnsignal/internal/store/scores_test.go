package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
)

// TestListScoresReadsOneState: passes rescore a customer (its row
// written first, the pass's start recorded after) while ListScores reads
// the ranking; the pass start it returns is never later than a row the
// pass rewrote, which would claim the row's old score still held then.
func TestListScoresReadsOneState(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := pool.Exec(ctx, `INSERT INTO churn_tenants (tenant_id, rescored_at) VALUES ('shop', $1)`, start); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO churn_scores (tenant_id, customer_id, score, score_exact, band, computed_at)
		VALUES ('shop', 'c', 50, 50, 2, $1)`, start); err != nil {
		t.Fatal(err)
	}
	var passes atomic.Int32
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		for i := int32(1); ; i++ {
			select {
			case <-stop:
				wrote <- nil
				return
			default:
			}
			began := start.Add(time.Duration(i) * time.Second)
			if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE churn_scores SET score_exact = 50 + $1::int % 2, computed_at = $2 WHERE tenant_id = 'shop'`, i, began)
				return err
			}); err != nil {
				wrote <- err
				return
			}
			if err := MarkRescored(ctx, pool, "shop", began); err != nil {
				wrote <- err
				return
			}
			passes.Store(i)
		}
	}()
	for reads := 0; reads < 300 || passes.Load() < 20; reads++ {
		rs, rescored, err := ListScores(ctx, pool, "shop", score.BandUnspecified, 10, nil)
		if err != nil {
			close(stop)
			t.Fatal(err)
		}
		if len(rs) != 1 {
			close(stop)
			t.Fatalf("read %d: %d rows", reads, len(rs))
		}
		if rescored.After(rs[0].ComputedAt) {
			close(stop)
			t.Fatalf("read %d: a row computed at %s with a pass that rewrote it recorded as begun at %s", reads, rs[0].ComputedAt, rescored)
		}
	}
	close(stop)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
