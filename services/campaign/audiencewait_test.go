package campaign_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/campaign/internal/app"
)

// TestAudiencesWaitForTheFactsConsumer: a shop imports its history with
// win-back installed. A scheduled pass over the facts applied so far
// finds every customer whose newer orders are still on the stream lapsed
// (QA: 7,814 active customers enrolled, 40% into an import). While the
// facts consumer has more than the limit of the shop's events yet to
// apply the audiences stay due, and run once it has caught up, on the
// whole history.
func TestAudiencesWaitForTheFactsConsumer(t *testing.T) {
	ctx := context.Background()
	w := newAudienceWait(t)
	w.install(t, "shop")
	// Ten customers: a first order 200 days ago, applied; a second one
	// 10 days ago, still on the stream.
	first, recent := w.history("shop", 10)
	testenv.PublishEvents(t, w.b, "shop", w.now, first...)
	w.catchUp(t)
	testenv.PublishEvents(t, w.b, "shop", w.now, recent...)

	if ran, err := w.e.RunAudiences(ctx); err != nil || ran != 0 {
		t.Fatalf("RunAudiences with 10 events behind = %d, %v; want it to wait", ran, err)
	}
	w.logs.WaitFor(t, "scheduled audiences of the shop wait for its facts to be applied")
	if !strings.Contains(w.logs.String(), "tenant=shop backlog=10 limit=5") {
		t.Errorf("the wait does not say how far behind:\n%s", w.logs.String())
	}

	w.catchUp(t)
	if ran, err := w.e.RunAudiences(ctx); err != nil || ran != 1 {
		t.Fatalf("RunAudiences caught up = %d, %v; want the win-back pass", ran, err)
	}
	w.logs.WaitFor(t, "scheduled audiences of the shop run again: its facts caught up")
	if n := w.enrolled(t, "shop"); n != 0 {
		t.Fatalf("%d win-back enrollments, want none: every customer ordered 10 days ago", n)
	}
}

// TestOneShopsImportHoldsOnlyItsAudiences: shop "importer" imports its
// history while shop "live" is current. The facts consumer as a whole is
// far behind, but only the importer's audience waits: the live shop's,
// whose events are all applied but for fewer than the limit, runs (before
// decision 0037, the consumer's backlog held every shop's).
func TestOneShopsImportHoldsOnlyItsAudiences(t *testing.T) {
	ctx := context.Background()
	w := newAudienceWait(t)
	w.install(t, "importer")
	w.install(t, "live")
	impFirst, impRecent := w.history("importer", 10)
	liveFirst, liveRecent := w.history("live", 10)
	testenv.PublishEvents(t, w.b, "importer", w.now, impFirst...)
	testenv.PublishEvents(t, w.b, "live", w.now, append(liveFirst, liveRecent...)...)
	w.catchUp(t)
	// The import goes on, with a few live orders amid it.
	testenv.PublishEvents(t, w.b, "importer", w.now, impRecent[:5]...)
	testenv.PublishEvents(t, w.b, "live", w.now, orderEv("live-late-1", "late-customer", w.now.Add(-day), 1000))
	testenv.PublishEvents(t, w.b, "importer", w.now, impRecent[5:]...)

	if ran, err := w.e.RunAudiences(ctx); err != nil || ran != 1 {
		t.Fatalf("RunAudiences with the importer 10 events behind and the live shop 1 = %d, %v; want the live shop's pass only", ran, err)
	}
	w.logs.WaitFor(t, "tenant=importer backlog=10 limit=5")
	if strings.Contains(w.logs.String(), "tenant=live") {
		t.Errorf("the live shop's audience waited:\n%s", w.logs.String())
	}
	if n := w.enrolled(t, "live"); n != 0 {
		t.Fatalf("%d win-back enrollments of the live shop, want none: every customer ordered 10 days ago", n)
	}

	w.catchUp(t)
	if ran, err := w.e.RunAudiences(ctx); err != nil || ran != 1 {
		t.Fatalf("RunAudiences caught up = %d, %v; want the importer's pass", ran, err)
	}
	w.logs.WaitFor(t, "scheduled audiences of the shop run again: its facts caught up")
	if n := w.enrolled(t, "importer"); n != 0 {
		t.Fatalf("%d win-back enrollments of the importer, want none: every customer ordered 10 days ago", n)
	}
}

// TestAudiencesWaitOnceWhenTheBacklogIsUnreadable: with NATS away, how far
// the facts consumer is behind cannot be read, so every shop's audiences
// wait; that is one line for the deployment, not one a shop, and one when
// it can be read again.
func TestAudiencesWaitOnceWhenTheBacklogIsUnreadable(t *testing.T) {
	ctx := context.Background()
	w := newAudienceWait(t)
	shops := []string{"a-shop", "b-shop", "c-shop"}
	for _, s := range shops {
		w.install(t, s)
		first, recent := w.history(s, 2)
		testenv.PublishEvents(t, w.b, s, w.now, append(first, recent...)...)
	}
	w.catchUp(t)
	w.away.Store(true)
	for range 2 {
		if ran, err := w.e.RunAudiences(ctx); err != nil || ran != 0 {
			t.Fatalf("RunAudiences with the backlog unreadable = %d, %v; want every shop to wait", ran, err)
		}
	}
	const waiting = "scheduled audiences of every shop wait: how far the facts consumer is behind cannot be read"
	if n := strings.Count(w.logs.String(), waiting); n != 1 || strings.Contains(w.logs.String(), "tenant=") {
		t.Errorf("%d lines of the wait, want 1 and none naming a shop:\n%s", n, w.logs.String())
	}
	if !strings.Contains(w.logs.String(), "nats: connection closed") {
		t.Errorf("the wait does not say why:\n%s", w.logs.String())
	}

	w.away.Store(false)
	if ran, err := w.e.RunAudiences(ctx); err != nil || ran != len(shops) {
		t.Fatalf("RunAudiences with the backlog readable = %d, %v; want every shop's pass", ran, err)
	}
	w.logs.WaitFor(t, "scheduled audiences run again where their shop's facts are caught up")
}

// audienceWait is an engine whose scheduled audiences ask the real facts
// consumer for its backlogs, limit 5 events, and that consumer, stopped
// between catchUps.
type audienceWait struct {
	b     *bus.Bus
	pool  *pgxpool.Pool
	e     *app.Engine
	facts *bus.Consumer
	now   time.Time
	logs  *testenv.SyncBuffer
	// away makes the consumer's backlog unreadable, as NATS away does
	// (the bus is shared by the engine, which must stay up).
	away atomic.Bool
}

func newAudienceWait(t *testing.T) *audienceWait {
	t.Helper()
	w := &audienceWait{logs: &testenv.SyncBuffer{}}
	log := slog.New(slog.NewTextHandler(w.logs, nil))
	env := newEngineEnv(t, app.Config{AudienceMaxBacklog: 5,
		FactsBacklog: func(ctx context.Context) (int64, error) {
			if w.away.Load() {
				return 0, nats.ErrConnectionClosed
			}
			return w.facts.Backlog(ctx)
		},
		TenantFactsBacklog: func(ctx context.Context, tenant string) (int64, error) {
			return w.facts.TenantBacklog(ctx, tenant)
		}}, log)
	w.b, w.pool, w.e, w.now = env.pub, env.pool, env.engine, env.clock.Now()
	var err error
	if w.facts, err = bus.NewConsumer(w.b, w.pool, bus.ConsumerConfig{Stream: bus.EventsStream, Durable: campaign.FactsConsumer,
		EventTypes: app.FactTypes, BatchSize: 500}, w.e.HandleFacts, log); err != nil {
		t.Fatal(err)
	}
	if _, err := w.facts.Declare(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w
}

// install installs the win-back playbook for tenant.
func (w *audienceWait) install(t *testing.T, tenant string) {
	t.Helper()
	if _, err := w.e.InstallPlaybook(context.Background(), tenant, "win-back", "", false); err != nil {
		t.Fatal(err)
	}
}

// history is n customers' orders of tenant: a first one 200 days ago and a
// second one 10 days ago.
func (w *audienceWait) history(tenant string, n int) (first, recent []*eventsv1.Event) {
	for i := range n {
		c := string(rune('a'+i)) + "-customer"
		first = append(first, orderEv(tenant+"-"+c+"-1", c, w.now.Add(-200*day), 1000))
		recent = append(recent, orderEv(tenant+"-"+c+"-2", c, w.now.Add(-10*day), 1000))
	}
	return first, recent
}

// catchUp runs the facts consumer until it has applied everything.
func (w *audienceWait) catchUp(t *testing.T) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.facts.Run(ctx) }()
	defer func() { stop(); <-done }()
	if err := w.facts.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// enrolled counts tenant's win-back enrollments.
func (w *audienceWait) enrolled(t *testing.T, tenant string) int {
	t.Helper()
	var n int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM enrollments WHERE tenant = $1 AND campaign_id = 'win-back'`, tenant).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
