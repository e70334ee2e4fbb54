package store

import (
	"context"
	"fmt"
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
	testenv.ReadsWhileWrites(t, 300, 20, func(i int) error {
		began := start.Add(time.Duration(i) * time.Second)
		if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE churn_scores SET score_exact = 50 + $1::int % 2, computed_at = $2 WHERE tenant_id = 'shop'`, i, began)
			return err
		}); err != nil {
			return err
		}
		return MarkRescored(ctx, pool, "shop", began)
	}, func(int) error {
		rs, rescored, err := ListScores(ctx, pool, "shop", score.BandUnspecified, ByScore, 10, nil)
		switch {
		case err != nil:
			return err
		case len(rs) != 1:
			return fmt.Errorf("%d rows", len(rs))
		case rescored.After(rs[0].ComputedAt):
			return fmt.Errorf("a row computed at %s with a pass that rewrote it recorded as begun at %s", rs[0].ComputedAt, rescored)
		}
		return nil
	})
}
