package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/metrics/internal/consumer"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// TestRebuildKeepsTheCustomerCacheCurrent: the live consumer applies a
// shop's facts (caching its customers), then a rebuild resets and replays
// them. The rebuild's batches fill the cache once they commit, as the
// runner's do (bus.InHandlerTx), so it ends holding every customer at the
// tenant's version: the next live batch reads none of them again. Without
// the hooks the cache stayed at the version before the rebuild, and every
// customer was read from the table until a live batch had cached it again.
func TestRebuildKeepsTheCustomerCacheCurrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := testenv.NATS(t)
	b := testenv.Bus(t, bus.Config{URL: nats.URL(), Name: t.Name()})
	pool := testenv.MigratedPool(t, store.Migrations)
	st := store.New(pool)
	log := slog.New(slog.DiscardHandler)

	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	evs := make([]*eventsv1.Event, 20)
	for i := range evs {
		id := fmt.Sprintf("o-%02d", i)
		evs[i] = &eventsv1.Event{Id: id, Type: consumer.TypeOrderPlaced, OccurredAt: timestamppb.New(at.Add(time.Duration(i) * time.Hour)),
			Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
				OrderId: id, CustomerId: fmt.Sprintf("c-%d", i%7), Total: &eventsv1.Money{AmountMinor: 1000, Currency: "EUR"}}}}
	}
	testenv.PublishEvents(t, b, "shop", at, evs...)

	live, err := bus.NewConsumer(b, pool, bus.ConsumerConfig{
		Stream: bus.EventsStream, Durable: consumer.Durable, EventTypes: consumer.Types(), BatchSize: 5,
	}, consumer.Handler(st, log), log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- live.Run(runCtx) }()
	if err := live.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	before, _, _ := store.CachedCustomers(st, "shop")

	// Batches of 3: the replay commits several times.
	r := consumer.NewRebuilder(b, st, 3, 0, log)
	runRebuilder(t, r)
	res, err := rebuildOnce(ctx, r, "shop")
	if err != nil || res.Applied != int64(len(evs)) {
		t.Fatalf("rebuild: %+v, %v; want %d applied", res, err, len(evs))
	}

	var version int64
	if err := pool.QueryRow(ctx, `SELECT version FROM tenant_state WHERE tenant = 'shop'`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{}
	rows, err := pool.Query(ctx, `SELECT customer_id, cseq FROM customers WHERE tenant = 'shop'`)
	if err != nil {
		t.Fatal(err)
	}
	var (
		id   string
		cseq int32
	)
	for rows.Next() {
		if err := rows.Scan(&id, &cseq); err != nil {
			t.Fatal(err)
		}
		want[id] = uint32(cseq)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	cachedAt, got, ok := store.CachedCustomers(st, "shop")
	if !ok || cachedAt != version {
		t.Fatalf("after the rebuild the customer cache holds the shop at version %d (cached %v; %d before the rebuild), want the tenant's %d", cachedAt, ok, before, version)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("after the rebuild the customer cache holds %v, want the table's %v", got, want)
	}
}

// rebuildOnce asks r, whose Run is starting, for a rebuild of tenant.
// runRebuilder runs r until the test ends.
func runRebuilder(t *testing.T, r *consumer.Rebuilder) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
}

func rebuildOnce(ctx context.Context, r *consumer.Rebuilder, tenant string) (consumer.RebuildResult, error) {
	for {
		res, err := r.Rebuild(ctx, tenant)
		if !errors.Is(err, consumer.ErrRebuilderStopped) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestRebuildFetchesAreBoundedInBytes: a rebuild replays facts of 40 KiB
// under a fetch bound of 100 KiB, with one of 150 KiB among them. Each of
// its fetches, as the server delivers them (seen from another connection),
// holds at most the bound, or the larger fact alone, and every fact is
// applied. By message count alone, a fetch of 10 took about 500 KiB.
func TestRebuildFetchesAreBoundedInBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := testenv.NATS(t)
	bcfg := bus.Config{URL: srv.URL(), Name: t.Name()}
	b := testenv.Bus(t, bcfg)
	pool := testenv.MigratedPool(t, store.Migrations)
	st := store.New(pool)
	log := slog.New(slog.DiscardHandler)

	const bound, large = 100 << 10, 5
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	evs := make([]*eventsv1.Event, 12)
	for i := range evs {
		id := fmt.Sprintf("o-%02d", i)
		size := 40 << 10
		if i == large {
			size = 150 << 10
		}
		evs[i] = &eventsv1.Event{Id: id, Type: consumer.TypeOrderPlaced, OccurredAt: timestamppb.New(at.Add(time.Duration(i) * time.Hour)),
			Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
				OrderId: id, CustomerId: fmt.Sprintf("c-%d", i%3), CouponCode: strings.Repeat("x", size),
				Total: &eventsv1.Money{AmountMinor: 1000, Currency: "EUR"}}}}
	}
	testenv.PublishEvents(t, b, "shop", at, evs...)

	// The server's deliveries to the rebuild's inboxes, by fetch: the
	// replay creates its consumer anew for each fetch, whose deliveries
	// start again at consumer sequence 1. API answers and status messages
	// have no JetStream reply subject.
	mon, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	var (
		mu      sync.Mutex
		fetches [][]int
	)
	if _, err := mon.Subscribe(bcfg.InboxPrefix()+".>", func(m *nats.Msg) {
		if md, err := m.Metadata(); err == nil {
			mu.Lock()
			if md.Sequence.Consumer == 1 || len(fetches) == 0 {
				fetches = append(fetches, nil)
			}
			fetches[len(fetches)-1] = append(fetches[len(fetches)-1], m.Size())
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := mon.Flush(); err != nil {
		t.Fatal(err)
	}

	r := consumer.NewRebuilder(b, st, 10, bound, log)
	runRebuilder(t, r)
	res, err := rebuildOnce(ctx, r, "shop")
	if err != nil || res.Applied != int64(len(evs)) {
		t.Fatalf("rebuild: %+v, %v; want %d applied", res, err, len(evs))
	}
	var orders int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE tenant = 'shop'`).Scan(&orders); err != nil {
		t.Fatal(err)
	}
	if orders != len(evs) {
		t.Fatalf("%d orders after the rebuild, want %d", orders, len(evs))
	}

	// The server sent the monitor its copies before it answers the flush.
	if err := mon.Flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	delivered := 0
	for i, sizes := range fetches {
		sum := 0
		for _, s := range sizes {
			sum += s
		}
		if sum > bound && len(sizes) > 1 {
			t.Errorf("fetch %d took %d messages of %d bytes in all, over the bound of %d: %v", i, len(sizes), sum, bound, sizes)
		}
		delivered += len(sizes)
	}
	if delivered != len(evs) {
		t.Errorf("the rebuild's fetches took %d messages, want each of the %d once", delivered, len(evs))
	}
}

// TestRebuildsShareTheirConsumerName: every rebuild replays through one
// consumer name (consumer.RebuildName, which the service's NATS
// permissions name). Rebuilds of several tenants in one process and in a
// second replica run at once, with the name first taken by a consumer a
// stopped process left (another tenant's, from elsewhere): each applies
// every fact of its tenant once, and none of their consumers stays.
func TestRebuildsShareTheirConsumerName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := testenv.NATS(t)
	b := testenv.Bus(t, bus.Config{URL: srv.URL(), Name: t.Name()})
	pool := testenv.MigratedPool(t, store.Migrations)
	log := slog.New(slog.DiscardHandler)

	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	tenants := []string{"shop-a", "shop-b", "shop-c", "shop-d"}
	for i, tn := range tenants {
		evs := make([]*eventsv1.Event, 10*(i+1))
		for j := range evs {
			id := fmt.Sprintf("o-%03d", j)
			evs[j] = &eventsv1.Event{Id: id, Type: consumer.TypeOrderPlaced, OccurredAt: timestamppb.New(at.Add(time.Duration(j) * time.Hour)),
				Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
					OrderId: id, CustomerId: fmt.Sprintf("c-%d", j%3), Total: &eventsv1.Money{AmountMinor: 1000, Currency: "EUR"}}}}
		}
		testenv.PublishEvents(t, b, tn, at, evs...)
	}
	if _, err := b.JS.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Name: consumer.RebuildName,
		FilterSubjects: consumer.TenantSubjects("elsewhere"), AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true,
		InactiveThreshold: time.Second}); err != nil {
		t.Fatal(err)
	}

	// Batches of 4: each rebuild creates its consumer several times.
	replicas := make([]*consumer.Rebuilder, 2)
	for i := range replicas {
		rb := testenv.Bus(t, bus.Config{URL: srv.URL(), Name: fmt.Sprintf("%s-%d", t.Name(), i)})
		replicas[i] = consumer.NewRebuilder(rb, store.New(pool), 4, 0, log)
		runRebuilder(t, replicas[i])
	}
	rebuild := func(i int) func(int) error {
		return func(int) error {
			tn := tenants[i]
			res, err := rebuildOnce(ctx, replicas[i%2], tn)
			if err == nil && res.Applied != int64(10*(i+1)) {
				err = fmt.Errorf("%s: %d applied, want %d", tn, res.Applied, 10*(i+1))
			}
			return err
		}
	}
	testenv.Concurrently(t, 1, rebuild(0), rebuild(1), rebuild(2), rebuild(3))
	for i, tn := range tenants {
		var orders int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE tenant = $1`, tn).Scan(&orders); err != nil || orders != 10*(i+1) {
			t.Errorf("%s: %d orders (%v), want %d", tn, orders, err, 10*(i+1))
		}
	}
	stream, err := b.JS.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("%d consumers left on the stream, want none", n)
	}
}
