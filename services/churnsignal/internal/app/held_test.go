package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// heldShop is a migrated database holding tenant "a"'s shop of customers
// (loadShop), as of the start it returns.
func heldShop(t *testing.T, customers int) (*pgxpool.Pool, time.Time) {
	t.Helper()
	pool := testenv.MigratedPool(t, store.Migrations)
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	loadShop(t, pool, "a", customers, start)
	return pool, start
}

// TestPassHoldsOnceBehind: a full pass asks whether to hold band changes
// for each range once its rows are locked, not once at its start. The
// consumer starts applying a batch an hour behind the stream just after
// the pass began (a shop's import starting while the hourly pass of a big
// tenant runs): what the pass found from then on is held, not published.
// Once the consumer is idle again, the held changes are published by
// reading the held rows alone, one churn.risk_changed each, and a full
// pass after that publishes nothing more.
func TestPassHoldsOnceBehind(t *testing.T) {
	ctx := context.Background()
	const tenant = "a"
	pool, start := heldShop(t, 300)

	var (
		mu     sync.Mutex
		at     = start
		calls  int
		onCall func(n int)
	)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if onCall != nil {
			onCall(calls)
		}
		return at
	}
	e, err := New(pool, Config{ChunkSize: 100, Workers: 1, Now: clock}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	outbox := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM bus_outbox`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	heldRows := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM churn_scores WHERE tenant_id = $1 AND held_from IS NOT NULL`, tenant).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := e.RescoreAll(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	published := outbox()

	// A year on, many bands move. The pass reads the clock as it
	// begins (1), then as its first range is read (2): the consumer has
	// fetched a batch an hour behind by then, and applies it all along.
	var done func()
	mu.Lock()
	at = start.AddDate(1, 0, 0)
	calls, onCall = 0, func(n int) {
		if n == 2 {
			done = e.applying(time.Now().Add(-time.Hour))
		}
	}
	mu.Unlock()
	st, err := e.RescoreAll(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	onCall = nil
	mu.Unlock()
	if done == nil {
		t.Fatal("the pass read the clock fewer than twice")
	}
	if n := outbox() - published; n != 0 || st.BandChanges != 0 {
		t.Errorf("%d band changes published (pass: %+v) after the consumer fell behind, want none", n, st)
	}
	held := heldRows()
	if held == 0 || st.Held != held {
		t.Fatalf("%d rows held, the pass counted %d: the scenario tests nothing", held, st.Held)
	}

	// The batch is applied, and the consumer idle since: the held rows,
	// and only they, are rescored, each change published once.
	done()
	e.wmu.Lock()
	e.lastBatch = time.Now().Add(-consumerIdle)
	e.wmu.Unlock()
	if got := e.heldTenants(); len(got) != 1 || got[0] != tenant {
		t.Errorf("tenants to release %v, want [%s]", got, tenant)
	}
	rel, err := e.releaseHeld(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Customers != held || rel.BandChanges != held || rel.Held != 0 {
		t.Errorf("release of %d held rows: %+v, want each read and published", held, rel)
	}
	if n := outbox() - published; n != held {
		t.Errorf("%d band changes published, want %d", n, held)
	}
	if n := heldRows(); n != 0 {
		t.Errorf("%d rows still held", n)
	}
	if got := e.heldTenants(); len(got) != 0 {
		t.Errorf("tenants to release %v after the release, want none", got)
	}
	again, err := e.RescoreAll(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if again.BandChanges != 0 || again.Held != 0 {
		t.Errorf("a full pass after the release: %+v, want nothing published or held", again)
	}
}

// TestReleaseFindsChangesHeldByAnotherReplica: replica A holds band
// changes while its consumer is behind, and stops before releasing them.
// Replica B, running since before A held them, publishes them at its next
// round of the refit loop, each once: the database tells which tenants
// have rows held, not B's memory of its own batches.
func TestReleaseFindsChangesHeldByAnotherReplica(t *testing.T) {
	ctx := context.Background()
	const tenant = "a"
	pool, start := heldShop(t, 300)
	var (
		mu sync.Mutex
		at = start
	)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newEngine := func() *Engine {
		e, err := New(pool, Config{ChunkSize: 100, Workers: 1, Now: clock}, log)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := newEngine(), newEngine()
	if _, err := a.RescoreAll(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	var published int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM bus_outbox`).Scan(&published); err != nil {
		t.Fatal(err)
	}
	b.releaseAll(ctx) // a round with nothing held: B knows of no tenant

	// A year on, A's consumer applies a batch an hour behind (an import):
	// A's pass holds the bands that moved, and A stops.
	mu.Lock()
	at = start.AddDate(1, 0, 0)
	mu.Unlock()
	a.applying(time.Now().Add(-time.Hour))
	st, err := a.RescoreAll(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if st.Held == 0 || st.BandChanges != 0 {
		t.Fatalf("A's pass behind: %+v, want changes held and none published: the scenario tests nothing", st)
	}

	b.releaseAll(ctx)
	var n, left int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM bus_outbox), (SELECT count(*) FROM churn_scores WHERE held_from IS NOT NULL)`).Scan(&n, &left); err != nil {
		t.Fatal(err)
	}
	if n-published != st.Held || left != 0 {
		t.Errorf("B's round published %d band changes and left %d rows held, want the %d A held published", n-published, left, st.Held)
	}
}

// TestRestartKeepsHoldingWithoutAModel: a tenant without a model has band
// changes held (here while the consumer was behind; as much after an
// automatic fit refused as unusable, which only the process that tried it
// knows). After a restart, a batch of its NPS answers, without an order,
// arrives before this process ran the tenant's fit check: its customers'
// held changes stay held rather than published under no model.
func TestRestartKeepsHoldingWithoutAModel(t *testing.T) {
	ctx := context.Background()
	const tenant = "a"
	pool, start := heldShop(t, 300)
	at := start.AddDate(1, 0, 0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{ChunkSize: 100, Workers: 1, RescoreInterval: time.Hour, Now: func() time.Time { return at }}
	before, err := New(pool, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	before.applying(time.Now().Add(-time.Hour))
	if _, err := before.RescoreAll(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.LoadModel(ctx, pool, tenant); err != nil || ok {
		t.Fatalf("model stored %v (%v): the scenario tests nothing", ok, err)
	}
	rows, err := pool.Query(ctx, `SELECT customer_id FROM churn_scores WHERE tenant_id = $1 AND held_from IS NOT NULL ORDER BY customer_id LIMIT 5`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(held) == 0 {
		t.Fatal("nothing held: the scenario tests nothing")
	}
	var published int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM bus_outbox`).Scan(&published); err != nil {
		t.Fatal(err)
	}

	after, err := New(pool, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	var ds []*bus.Delivery
	for _, c := range held {
		ev := &eventsv1.Event{Id: "nps-" + c, Type: "survey.answered", OccurredAt: timestamppb.New(at), Payload: &eventsv1.Event_SurveyAnswered{
			SurveyAnswered: &eventsv1.SurveyAnswered{CustomerId: c, SurveyId: "nps", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: 0}}}
		ds = append(ds, &bus.Delivery{Subject: bus.EventSubject(tenant, ev.Type), Data: testenv.Marshal(t, ev), Timestamp: time.Now()})
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return after.Handle(ctx, tx, ds) }); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if bad, why := d.Rejected(); bad {
			t.Fatalf("%s rejected: %s", d.Subject, why)
		}
	}
	var n, still int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM bus_outbox),
		(SELECT count(*) FROM churn_scores WHERE tenant_id = $1 AND held_from IS NOT NULL AND customer_id = ANY($2))`, tenant, held).Scan(&n, &still); err != nil {
		t.Fatal(err)
	}
	if n != published || still != len(held) {
		t.Errorf("after the restart a batch without orders published %d band changes and left %d of %d customers held, want none published",
			n-published, still, len(held))
	}
}

// TestRefitDeferralLoggedOnce: while the consumer is behind (an import),
// every batch wakes a tenant's refit check and the check is deferred
// again; that is logged once until a check gets past the lag, not once a
// batch (QA: 301 of an import's 320 lines).
func TestRefitDeferralLoggedOnce(t *testing.T) {
	ctx := context.Background()
	e, _, logs := loggedShop(t)
	rounds := func() {
		for range 5 {
			if _, err := e.autoRefit(ctx, "a"); err != nil {
				t.Fatal(err)
			}
		}
	}
	setBehind(e, true)
	rounds()
	if n := strings.Count(logs.String(), "refit deferred"); n != 1 {
		t.Fatalf("%d lines for five deferred checks, want 1:\n%s", n, logs.String())
	}
	// Caught up, the check gets past the lag (its fit of this small shop
	// is refused, which is not the point here).
	setBehind(e, false)
	_, _ = e.autoRefit(ctx, "a")
	setBehind(e, true)
	rounds()
	if n := strings.Count(logs.String(), "refit deferred"); n != 2 {
		t.Fatalf("%d lines after catching up and falling behind again, want 2:\n%s", n, logs.String())
	}
}

// loggedShop is an engine on heldShop's shop of 50 customers, its clock
// stopped at the shop's start, logging to logs.
func loggedShop(t *testing.T) (e *Engine, pool *pgxpool.Pool, logs *testenv.SyncBuffer) {
	t.Helper()
	pool, start := heldShop(t, 50)
	logs = &testenv.SyncBuffer{}
	e, err := New(pool, Config{ChunkSize: 100, Workers: 1, MaxLag: time.Minute, Now: func() time.Time { return start }}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return e, pool, logs
}

// TestTenantBehindAsksItsBacklog: while the consumer is behind, a tenant
// is behind only with more than HoldMinBacklog of its facts yet to apply,
// asked of the server at most every backlogFresh; while the consumer is
// not, nobody is and nothing is asked. A backlog that cannot be read
// holds, and a tenant found caught up wakes the refit loop, which
// publishes what it held.
func TestTenantBehindAsksItsBacklog(t *testing.T) {
	ctx := context.Background()
	pool, start := heldShop(t, 10)
	var (
		mu      sync.Mutex
		asked   int
		backlog = map[string]int64{"importer": 5000, "live": 3}
	)
	e, err := New(pool, Config{MaxLag: time.Minute, HoldMinBacklog: 1000, Now: func() time.Time { return start },
		TenantBacklog: func(_ context.Context, tenant string) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			asked++
			if tenant == "unreadable" {
				return 0, errors.New("no answer")
			}
			return backlog[tenant], nil
		}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	askedSoFar := func() int {
		mu.Lock()
		defer mu.Unlock()
		return asked
	}
	setBehind(e, false)
	if e.tenantBehind(ctx, "importer") || askedSoFar() != 0 {
		t.Fatalf("consumer current: importer behind %t, %d backlogs asked; want neither", e.tenantBehind(ctx, "importer"), askedSoFar())
	}
	setBehind(e, true)
	for tenant, want := range map[string]bool{"importer": true, "live": false, "unreadable": true} {
		if got := e.tenantBehind(ctx, tenant); got != want {
			t.Errorf("consumer behind: %s behind = %t, want %t", tenant, got, want)
		}
	}
	e.tenantBehind(ctx, "importer")
	if n := askedSoFar(); n != 3 {
		t.Errorf("%d backlogs asked, want 3: an answer is reused for %s", n, backlogFresh)
	}

	// The importer catches up while the consumer is still behind: asked
	// again once its answer is stale, it is not behind, and the loop wakes.
	mu.Lock()
	backlog["importer"] = 0
	mu.Unlock()
	e.bmu.Lock()
	a := e.backlogs["importer"]
	a.at = a.at.Add(-backlogFresh)
	e.backlogs["importer"] = a
	e.bmu.Unlock()
	select {
	case <-e.wake:
	default:
	}
	if e.tenantBehind(ctx, "importer") {
		t.Error("the importer caught up, still behind")
	}
	select {
	case <-e.wake:
	default:
		t.Error("the refit loop was not woken for the importer's held changes")
	}
}

// setBehind makes e's last batch just applied, an hour behind the stream
// (on) or current, as the consumer's batches tell e.behind.
func setBehind(e *Engine, on bool) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.lastBatch, e.lastBatchNewest = time.Now(), time.Now()
	if on {
		e.lastBatchNewest = e.lastBatch.Add(-time.Hour)
	}
}
