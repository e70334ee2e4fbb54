package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/bus"
)

// TestSequenceOrdersBatchesThatShareAKey: four workers apply small batches
// of numbered events per key; each batch declares its keys and then checks,
// against the committed rows, that every key's events arrive in stream
// order, each seeing the one before it. Batches without a key in common
// still run at once. Without the Sequence call the check fails (a later
// batch commits first, or reads before the earlier one committed).
func TestSequenceOrdersBatchesThatShareAKey(t *testing.T) {
	for _, sequenced := range []bool{true, false} {
		t.Run(fmt.Sprintf("sequenced=%v", sequenced), func(t *testing.T) {
			_, b := setupNATS(t)
			pool := setupPG(t)
			ctx := testCtx(t)
			if _, err := pool.Exec(ctx, `CREATE TABLE last_seen (key text PRIMARY KEY, n int NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			const keys, perKey = 8, 25
			var msgs []bus.Message
			for n := range perKey {
				for k := range keys {
					id := fmt.Sprintf("k%d-%d", k, n)
					msgs = append(msgs, bus.Message{Subject: bus.EventSubject("acme", "order.placed"), ID: id, Type: "order.placed", Data: []byte(id)})
				}
			}
			if _, err := b.PublishDurable(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			var (
				mu                  sync.Mutex
				problems            []string
				running, maxRunning atomic.Int32
				applied             atomic.Int32
			)
			c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 3, Concurrency: 4}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
				type ev struct {
					key string
					n   int
				}
				evs := make([]ev, len(ds))
				names := make([]string, len(ds))
				for i, d := range ds {
					k, n, _ := strings.Cut(string(d.Data), "-")
					evs[i].key, names[i] = k, k
					evs[i].n, _ = strconv.Atoi(n)
				}
				if sequenced {
					if err := bus.Sequence(ctx, names); err != nil {
						return err
					}
				}
				r := running.Add(1)
				defer running.Add(-1)
				for m := maxRunning.Load(); r > m && !maxRunning.CompareAndSwap(m, r); m = maxRunning.Load() {
				}
				time.Sleep(2 * time.Millisecond) // widen the window a reordering needs
				for _, e := range evs {
					var last int
					err := tx.QueryRow(ctx, `SELECT n FROM last_seen WHERE key = $1`, e.key).Scan(&last)
					if err == pgx.ErrNoRows {
						last = -1
					} else if err != nil {
						return err
					}
					if e.n != last+1 {
						mu.Lock()
						problems = append(problems, fmt.Sprintf("%s-%d after %d", e.key, e.n, last))
						mu.Unlock()
					}
					if _, err := tx.Exec(ctx, `INSERT INTO last_seen VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET n = greatest(last_seen.n, excluded.n)`, e.key, e.n); err != nil {
						return err
					}
				}
				applied.Add(int32(len(ds)))
				return nil
			})
			run(t, c)
			waitFor(t, "every event applied", func() (bool, string) {
				return applied.Load() >= keys*perKey, fmt.Sprint(applied.Load())
			})
			settled(t, b, c.Name())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case sequenced && len(problems) > 0:
				t.Fatalf("%d events out of order, e.g. %v", len(problems), problems[0])
			case sequenced && maxRunning.Load() < 2:
				t.Fatalf("batches without a common key never ran at once")
			case !sequenced && len(problems) == 0:
				t.Fatalf("unsequenced workers applied every event in order: the test cannot tell")
			}
		})
	}
}
