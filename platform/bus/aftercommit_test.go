package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/bus"
)

// TestAfterCommitRunsOnlyForCommittedBatches: a hook sees its batch's rows
// committed (read from another connection), and the first batch, whose
// transaction rolls back, never runs its hook; its messages come again and
// every message's hook runs once.
func TestAfterCommitRunsOnlyForCommittedBatches(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("e", 300)); err != nil {
		t.Fatal(err)
	}
	if bus.AfterCommit(ctx, func() { t.Error("hook outside a handler ran") }) {
		t.Fatal("AfterCommit accepted a hook outside a handler's context")
	}
	var (
		mu        sync.Mutex
		committed = map[string]int{} // msg id -> hook runs
		attempts  int
		problems  []string
	)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 50}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		if err := applyAll(ctx, tx, ds); err != nil {
			return err
		}
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		mu.Lock()
		attempts++
		attempt := attempts
		mu.Unlock()
		if !bus.AfterCommit(ctx, func() {
			var n int
			// Another connection: only committed rows are visible.
			err := pool.QueryRow(context.Background(), `SELECT count(*) FROM applied WHERE msg_id = ANY($1)`, ids).Scan(&n)
			mu.Lock()
			defer mu.Unlock()
			if attempt == 1 {
				problems = append(problems, "the hook of the batch that rolled back ran")
			}
			if err != nil || n != len(ids) {
				problems = append(problems, fmt.Sprintf("hook ran with %d of %d rows visible (%v)", n, len(ids), err))
			}
			for _, id := range ids {
				committed[id]++
			}
		}) {
			return errors.New("AfterCommit refused a handler's context")
		}
		if attempt == 1 {
			return errors.New("roll the first batch back")
		}
		return nil
	})
	run(t, c)
	waitFor(t, "300 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 300, fmt.Sprintf("%d rows", rows)
	})
	settled(t, b, c.Name())
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if len(committed) != 300 {
		t.Fatalf("hooks ran for %d messages, want 300", len(committed))
	}
	for id, n := range committed {
		if n != 1 {
			t.Fatalf("hook of %s ran %d times, want once", id, n)
		}
	}
}
