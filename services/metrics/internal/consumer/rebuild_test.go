package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRebuildClaimsDoNotDeadlock: a rebuild replays a tenant's facts in
// stream order while the live consumer applies a batch holding the same
// facts in another order (one came back from a nak or an expired ack wait
// behind later ones). Both claim the ids in the consumer's inbox before
// the tenant's lock, and each insert locks the ids it meets: claimed in
// batch order, the two waited for each other in a cycle (SQLSTATE 40P01).
// Each fact is still applied by exactly one of them.
func TestRebuildClaimsDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, store.Migrations)
	r := NewRebuilder(nil, store.New(pool), 500, 0, slog.New(slog.DiscardHandler))
	const facts, rounds = 300, 30
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	batch := func(round int, reverse bool) []*bus.Delivery {
		ds := make([]*bus.Delivery, facts)
		for i := range ds {
			id := fmt.Sprintf("o-%d-%03d", round, i)
			ev := &eventsv1.Event{Id: id, TenantId: "shop", OccurredAt: timestamppb.New(at.Add(time.Duration(round*facts+i) * time.Minute)),
				Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
					OrderId: id, CustomerId: fmt.Sprintf("c-%d", i%50), Total: &eventsv1.Money{AmountMinor: 1000, Currency: "EUR"}}}}
			ds[i] = &bus.Delivery{ID: "shop/" + id, Subject: bus.EventSubject("shop", TypeOrderPlaced), Data: testenv.Marshal(t, ev)}
		}
		if reverse {
			slices.Reverse(ds)
		}
		return ds
	}
	applied := make([][2]int64, rounds)
	replay := func(worker int, reverse bool) func(int) error {
		return func(round int) error {
			res, err := r.apply(ctx, "shop", batch(round, reverse), RebuildResult{}, nil)
			applied[round][worker] = res.Applied
			return err
		}
	}
	testenv.Concurrently(t, rounds, replay(0, false), replay(1, true))
	for i, a := range applied {
		if a[0]+a[1] != facts {
			t.Fatalf("round %d: applied %d + %d, want %d in all", i, a[0], a[1], facts)
		}
	}
	var orders int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE tenant = 'shop'`).Scan(&orders); err != nil || orders != facts*rounds {
		t.Fatalf("%d orders stored (%v), want %d", orders, err, facts*rounds)
	}
}

// TestResetAndInboxCleanupDoNotDeadlock: a rebuild's reset deletes the
// tenant's ids from the consumer's inbox while the consumer's hourly
// cleanup deletes the old ones, the tenant's among them. The cleanup
// locks the rows in physical order; a reset taking them in key order
// waited for it in a cycle wherever the two orders differ, as they do for
// ids that did not arrive in key order (SQLSTATE 40P01). A third
// transaction holds the middle id until both deletes wait for a lock, so
// the two always meet half-way.
func TestResetAndInboxCleanupDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, store.Migrations)
	b, err := bus.Connect(ctx, bus.Config{URL: testenv.NATS(t).URL(), Name: "reset-cleanup"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	noop := func(context.Context, pgx.Tx, []*bus.Delivery) error { return nil }
	c, err := bus.NewConsumer(b, pool, bus.ConsumerConfig{Stream: bus.EventsStream, Durable: Durable, InboxRetention: time.Hour}, noop, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(pool)
	// hold stores the tenant's old ids in reverse key order, locks the
	// middle one, lets the reset and the cleanup go, and lets go of the
	// id once both wait on a lock. One round tells, the meeting being
	// forced (and a second would wait for a token a failed one never
	// takes).
	const ids = 200
	start := make(chan struct{})
	hold := func(round int) error {
		if _, err := pool.Exec(ctx, `INSERT INTO bus_inbox (consumer, msg_id, received_at)
			SELECT $1, format('shop/%s-%s', $2::int, lpad(i::text, 5, '0')), now() - interval '2 hours'
			FROM generate_series($3::int, 1, -1) AS i`, Durable, round, ids); err != nil {
			return err
		}
		return pg.InTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT FROM bus_inbox WHERE consumer = $1 AND msg_id = $2 FOR UPDATE`,
				Durable, fmt.Sprintf("shop/%d-%05d", round, ids/2)); err != nil {
				return err
			}
			start <- struct{}{}
			start <- struct{}{}
			for waiting, deadline := 0, time.Now().Add(10*time.Second); waiting < 2; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					return fmt.Errorf("%d of the reset and the cleanup wait for the held id, want both", waiting)
				}
				if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
					return err
				}
			}
			return nil
		})
	}
	reset := func(int) error {
		<-start
		return st.ResetTenant(ctx, "shop", Durable)
	}
	cleanup := func(int) error {
		<-start
		_, err := c.CleanupInbox(ctx)
		return err
	}
	testenv.Concurrently(t, 1, hold, reset, cleanup)
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM bus_inbox`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d inbox ids left (%v), want none", left, err)
	}
}
