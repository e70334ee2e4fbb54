package bus_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// TestInboxClaimsDoNotDeadlock: two transactions claim the same new ids
// in different orders, as two workers or replicas do when a message comes
// back (a nak's backoff, an ack wait that ran out, a dead letter replayed)
// behind messages stored after it while another batch, or a rebuild's
// replay in stream order, still holds it. Each insert locks the ids it
// meets, so claims in batch order waited for each other in a cycle
// (SQLSTATE 40P01); the ids are claimed in byte order whatever the
// batch's, and every id is still fresh in exactly one of the two.
func TestInboxClaimsDoNotDeadlock(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{}, applyAll)
	ctx := testCtx(t)
	const ids, rounds = 300, 40
	batch := func(round int, reverse bool) []*bus.Delivery {
		ds := make([]*bus.Delivery, ids)
		for i := range ds {
			ds[i] = &bus.Delivery{ID: fmt.Sprintf("shop/%d-%03d", round, i)}
		}
		if reverse {
			slices.Reverse(ds)
		}
		return ds
	}
	fresh := make([][2]int, rounds)
	claim := func(worker int, reverse bool) func(pgx.Tx, int) error {
		return func(tx pgx.Tx, round int) error {
			f, _, err := c.Claim(ctx, tx, batch(round, reverse))
			fresh[round][worker] = len(f)
			return err
		}
	}
	testenv.ConcurrentTx(t, pool, rounds, claim(0, false), claim(1, true))
	for r, f := range fresh {
		if f[0]+f[1] != ids {
			t.Fatalf("round %d: fresh %d + %d, want %d in all", r, f[0], f[1], ids)
		}
	}
}

// TestReplayAndARedeliveryDoNotDeadlock: an admin replays a dead letter
// while a batch that met the same message again (its termination lost)
// has claimed it and rejects it once more. The batch holds the inbox row
// and then writes the dead letter; the replay takes them in that order
// too, so it waits for the batch instead of holding the dead letter's
// row against it (SQLSTATE 40P01), and then applies the message once.
func TestReplayAndARedeliveryDoNotDeadlock(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{Durable: "replay-lock"}, applyAll)
	ctx := testCtx(t)
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO bus_dead_letters (consumer, msg_id, subject, data, reason, num_delivered)
		VALUES ('replay-lock', 'acme/m-1', $1, 'x', 'poison', 1) RETURNING id`, bus.EventSubject("acme", "order.placed")).Scan(&id); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	d := &bus.Delivery{ID: "acme/m-1", Type: "order.placed", Subject: bus.EventSubject("acme", "order.placed"), Header: nats.Header{}, Data: []byte("x"), NumDelivered: 2}
	if fresh, _, err := c.Claim(ctx, tx, []*bus.Delivery{d}); err != nil || len(fresh) != 1 {
		t.Fatalf("the batch's claim: %d fresh, %v", len(fresh), err)
	}
	replayed := make(chan error, 1)
	go func() { replayed <- c.Replay(ctx, id) }()
	waitFor(t, "the replay to wait for the batch", func() (bool, string) {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == 1, fmt.Sprintf("%d sessions waiting on a lock", n)
	})
	d.Reject("poison")
	if err := c.DeadLetterTx(ctx, tx, []*bus.Delivery{d}); err != nil {
		t.Fatalf("the batch's dead-letter write: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-replayed; err != nil {
		t.Fatalf("replay: %v", err)
	}
	if rows, _ := appliedCounts(t, pool); rows != 1 {
		t.Fatalf("the replay applied the message %d times, want once", rows)
	}
}
