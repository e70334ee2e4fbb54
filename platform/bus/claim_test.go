package bus_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

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
