package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/contacts"
	"github.com/retainhq/retain/services/notifier/internal/policy"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

const capWindow = 7 * 24 * time.Hour

// capBundle is an engine with a cap of 2 marketing messages a week and no
// quiet hours, on a real database, driven by hand: nothing runs the timer
// or the sender unless the test calls it.
type capBundle struct {
	pool   *pgxpool.Pool
	clock  *testenv.Clock
	engine *app.Engine
	start  time.Time
}

func newCapBundle(t *testing.T, customers ...string) *capBundle {
	t.Helper()
	start := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	b := &capBundle{pool: testenv.MigratedPool(t, store.Migrations), clock: testenv.NewClock(start), start: start}
	var err error
	b.engine, err = app.New(b.pool, app.Config{Policy: policy.Config{CapMax: 2, CapWindow: capWindow, DefaultZone: time.UTC},
		DefaultTTL: 30 * 24 * time.Hour, Lease: time.Minute, SendTimeout: time.Second, MaxAttempts: 3,
		RetryInitial: time.Second, RetryMax: time.Minute, SendBatch: 50, SendWorkers: 2, PollInterval: time.Second,
		PublicURL: "http://127.0.0.1", UnsubscribeKey: []byte("an-unsubscribe-key-of-32-bytes!!!"), Now: b.clock.Now},
		nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var cs []contacts.Contact
	for _, id := range customers {
		c, _ := contacts.FromEvent(&eventsv1.Event{TenantId: "shop", OccurredAt: timestamppb.New(start.Add(-time.Hour)),
			Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{CustomerId: id, Email: id + "@example.com",
				Consent: &eventsv1.Consent{EmailMarketing: eventsv1.ConsentState_CONSENT_STATE_GRANTED}}}})
		cs = append(cs, c)
	}
	if err := pg.InTx(context.Background(), b.pool, func(tx pgx.Tx) error { return store.ApplyContacts(context.Background(), tx, cs) }); err != nil {
		t.Fatal(err)
	}
	return b
}

// request is a campaign's marketing email (PRIORITY_NORMAL) as the
// consumer hands it over; rank is the campaign's priority.
func request(t testing.TB, id, customer string, rank int32, at time.Time) *bus.Delivery {
	t.Helper()
	r := &notifierv1.NotificationRequested{RequestId: id, TenantId: "shop", CustomerId: customer, Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Category: notifierv1.Category_CATEGORY_MARKETING, Priority: notifierv1.Priority_PRIORITY_NORMAL, Rank: rank,
		TemplateKey: "winback_90", RequestedAt: timestamppb.New(at)}
	data, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return &bus.Delivery{ID: "shop/" + id, Subject: bus.NotificationSubject("shop", bus.TypeNotificationRequested), Type: bus.TypeNotificationRequested, Data: data}
}

// batch hands requests to the consumer's handler as one batch.
func (b *capBundle) batch(t testing.TB, msgs ...*bus.Delivery) {
	t.Helper()
	if err := pg.InTx(context.Background(), b.pool, func(tx pgx.Tx) error { return b.engine.HandleRequests(context.Background(), tx, msgs) }); err != nil {
		t.Fatal(err)
	}
}

// fillCap has each customer take both slots of the cap, the first at the
// start and the second half an hour later: a week after the start one
// slot frees, the other half an hour after that.
func (b *capBundle) fillCap(t testing.TB, customers ...string) {
	t.Helper()
	for i, at := range []time.Time{b.start, b.start.Add(30 * time.Minute)} {
		b.clock.Set(at)
		var msgs []*bus.Delivery
		for _, c := range customers {
			msgs = append(msgs, request(t, fmt.Sprintf("%s/fill-%d", c, i), c, 50, at))
		}
		b.batch(t, msgs...)
	}
}

// status is a delivery's status, with its reason when deferred (a queued
// one keeps the reason of its last outcome, an earlier deferral).
func (b *capBundle) status(t testing.TB, id string) string {
	t.Helper()
	d, _, err := store.GetDelivery(context.Background(), b.pool, "shop", id)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	if d.Status == store.StatusDeferred {
		return d.Status + " " + d.ReasonCode
	}
	return d.Status
}

// deferTwo has the customers ask, over the full cap, for a priority-60
// campaign's email and an hour later, in another batch, a priority-90
// one's: both are deferred until the first slot frees, the older one
// first in requested time and in the table.
func (b *capBundle) deferTwo(t testing.TB, customers ...string) {
	t.Helper()
	for _, x := range []struct {
		id    string
		rank  int32
		after time.Duration
	}{{"p60", 60, time.Hour}, {"p90", 90, 2 * time.Hour}} {
		at := b.start.Add(x.after)
		b.clock.Set(at)
		var msgs []*bus.Delivery
		for _, c := range customers {
			msgs = append(msgs, request(t, c+"/"+x.id, c, x.rank, at))
		}
		b.batch(t, msgs...)
		for _, c := range customers {
			if got := b.status(t, c+"/"+x.id); got != "deferred frequency_cap" {
				t.Fatalf("%s/%s: %s, want deferred frequency_cap", c, x.id, got)
			}
		}
	}
}

// checkRankWon expects the freed slot to have gone to each customer's
// priority-90 request, the priority-60 one deferred to the next slot.
func (b *capBundle) checkRankWon(t testing.TB, customers ...string) {
	t.Helper()
	for _, c := range customers {
		for id, want := range map[string]string{"p90": "queued", "p60": "deferred frequency_cap"} {
			if got := b.status(t, c+"/"+id); got != want {
				t.Errorf("%s/%s: %s, want %s", c, id, got, want)
			}
		}
	}
}

// A request of a lower rank arriving once a higher-ranked one's deferral
// has ended, before a timer pass took it, is decided with it: the
// priority-90 email takes the freed slot, not the priority-60 one that
// happens to be new, nor the priority-60 one deferred earlier.
func TestNewRequestIsDecidedWithDueHigherRankedOnes(t *testing.T) {
	b := newCapBundle(t, "c")
	b.fillCap(t, "c")
	b.deferTwo(t, "c")
	at := b.start.Add(capWindow + time.Minute)
	b.clock.Set(at)
	b.batch(t, request(t, "c/p60-new", "c", 60, at))
	b.checkRankWon(t, "c")
	if got := b.status(t, "c/p60-new"); got != "deferred frequency_cap" {
		t.Errorf("c/p60-new: %s, want deferred frequency_cap", got)
	}
}

// Timer passes that each take a few due rows (two replicas at once, and
// the consumer deciding new requests of the same customers meanwhile)
// still give every customer's freed slot to its priority-90 request:
// a pass takes all of a customer's due requests, under its lock, or none.
func TestTimerPassesGiveTheFreedSlotByRankAcrossBatches(t *testing.T) {
	var customers []string
	for i := range 40 {
		customers = append(customers, fmt.Sprintf("c%02d", i))
	}
	b := newCapBundle(t, customers...)
	b.fillCap(t, customers...)
	b.deferTwo(t, customers...)
	at := b.start.Add(capWindow + time.Minute)
	b.clock.Set(at)
	ctx := context.Background()
	due := func() int {
		var n int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE status = 'deferred' AND due_at <= $1`, at).Scan(&n); err != nil {
			t.Error(err)
		}
		return n
	}
	// A pass of 3 rows cuts through customers' pairs of due requests.
	timers := func(int) error {
		for due() > 0 {
			if _, err := b.engine.FireTimers(ctx, 3); err != nil {
				return err
			}
		}
		return nil
	}
	newcomers := func(int) error {
		for i := 0; i < len(customers); i += 5 {
			var msgs []*bus.Delivery
			for _, c := range customers[i : i+5] {
				msgs = append(msgs, request(t, c+"/p10", c, 10, at))
			}
			if err := pg.InTx(ctx, b.pool, func(tx pgx.Tx) error { return b.engine.HandleRequests(ctx, tx, msgs) }); err != nil {
				return err
			}
		}
		return nil
	}
	testenv.Concurrently(t, 1, timers, timers, newcomers)
	b.checkRankWon(t, customers...)
	for _, c := range customers {
		if got := b.status(t, c+"/p10"); got != "deferred frequency_cap" {
			t.Errorf("%s/p10: %s, want deferred frequency_cap", c, got)
		}
	}
}
