package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
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
	r := NewRebuilder(nil, store.New(pool), 500, slog.New(slog.DiscardHandler))
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
			n, _, err := r.apply(ctx, batch(round, reverse))
			applied[round][worker] = n
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
