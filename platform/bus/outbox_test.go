package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func newRelay(t testing.TB, b *bus.Bus, pool *pgxpool.Pool, cfg bus.RelayConfig) *bus.Relay {
	t.Helper()
	r, err := bus.NewRelay(b, pool, cfg, testLogger())
	if err != nil {
		t.Fatalf("new relay: %v", err)
	}
	return r
}

func enqueue(t testing.TB, pool *pgxpool.Pool, msgs ...bus.Message) {
	t.Helper()
	if err := pg.InTx(testCtx(t), pool, func(tx pgx.Tx) error {
		return bus.Enqueue(testCtx(t), tx, msgs...)
	}); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
}

func signal(id string) bus.Message {
	return bus.Message{Subject: bus.SignalSubject("acme", "churn.risk_changed"), ID: id, Type: "churn.risk_changed", Data: []byte(id)}
}

func unpublished(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM bus_outbox WHERE published_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func relayOnce(t testing.TB, r *bus.Relay) int {
	t.Helper()
	n, err := r.RelayOnce(testCtx(t))
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	return n
}

func TestOutboxRelay(t *testing.T) {
	t.Run("publishes committed rows with their msg id, once", func(t *testing.T) {
		_, b := setupNATS(t)
		pool := setupPG(t)
		r := newRelay(t, b, pool, bus.RelayConfig{})
		enqueue(t, pool, signal("s-1"), signal("s-2"), signal("s-3"))
		if n := relayOnce(t, r); n != 3 {
			t.Fatalf("relayed %d, want 3", n)
		}
		if n := relayOnce(t, r); n != 0 {
			t.Fatalf("second pass relayed %d, want 0", n)
		}
		s, _ := b.JS.Stream(testCtx(t), bus.SignalsStream)
		for seq, want := range map[uint64]string{1: "s-1", 2: "s-2", 3: "s-3"} {
			m, err := s.GetMsg(testCtx(t), seq)
			if err != nil || m.Header.Get("Nats-Msg-Id") != want || m.Header.Get("Retain-Event-Type") != "churn.risk_changed" {
				t.Fatalf("message %d: %+v, %v; want id %s", seq, m, err, want)
			}
		}
	})
	t.Run("WaitRelayed waits for the rows committed so far", func(t *testing.T) {
		_, b := setupNATS(t)
		pool := setupPG(t)
		r := newRelay(t, b, pool, bus.RelayConfig{})
		enqueue(t, pool, signal("w-1"), signal("w-2"))
		short, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
		defer cancel()
		if err := r.WaitRelayed(short); err == nil {
			t.Fatal("WaitRelayed returned with two rows unpublished")
		}
		done := make(chan error, 1)
		go func() { done <- r.WaitRelayed(testCtx(t)) }()
		relayOnce(t, r)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := streamMsgs(t, b, bus.SignalsStream); n != 2 {
			t.Fatalf("stream holds %d once relayed, want 2", n)
		}
	})
	t.Run("rows of a rolled back transaction are never published", func(t *testing.T) {
		_, b := setupNATS(t)
		pool := setupPG(t)
		r := newRelay(t, b, pool, bus.RelayConfig{})
		ctx := testCtx(t)
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.Enqueue(ctx, tx, signal("ghost")); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if n := relayOnce(t, r); n != 0 {
			t.Fatalf("relayed %d rows of a rolled back transaction", n)
		}
	})
	t.Run("a message without id gets one and the same id twice is stored once", func(t *testing.T) {
		_, b := setupNATS(t)
		pool := setupPG(t)
		r := newRelay(t, b, pool, bus.RelayConfig{})
		noID := signal("")
		enqueue(t, pool, noID, signal("same"))
		enqueue(t, pool, signal("same"))
		if n := relayOnce(t, r); n != 2 {
			t.Fatalf("relayed %d, want 2", n)
		}
		if n := streamMsgs(t, b, bus.SignalsStream); n != 2 {
			t.Fatalf("stream holds %d, want 2", n)
		}
	})
	t.Run("rows committed out of id order are not skipped", func(t *testing.T) {
		_, b := setupNATS(t)
		pool := setupPG(t)
		r := newRelay(t, b, pool, bus.RelayConfig{})
		ctx := testCtx(t)

		// A takes the lower id but commits last.
		txA, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = txA.Rollback(context.Background()) })
		if err := bus.Enqueue(ctx, txA, signal("a")); err != nil {
			t.Fatal(err)
		}
		enqueue(t, pool, signal("b"))
		var idA, idB int64
		if err := txA.QueryRow(ctx, `SELECT id FROM bus_outbox WHERE msg_id = 'a'`).Scan(&idA); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT id FROM bus_outbox WHERE msg_id = 'b'`).Scan(&idB); err != nil {
			t.Fatal(err)
		}
		if idA >= idB {
			t.Fatalf("setup: id of a (%d) should be below id of b (%d)", idA, idB)
		}

		if n := relayOnce(t, r); n != 1 {
			t.Fatalf("relayed %d before A commits, want 1 (b)", n)
		}
		if err := txA.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if n := relayOnce(t, r); n != 1 {
			t.Fatalf("relayed %d after A commits, want 1 (a)", n)
		}
		if n := streamMsgs(t, b, bus.SignalsStream); n != 2 {
			t.Fatalf("stream holds %d, want both messages", n)
		}
	})
	t.Run("rows locked by another relay are skipped, not waited for", func(t *testing.T) {
		_, b := setupNATS(t)
		pool := setupPG(t)
		r := newRelay(t, b, pool, bus.RelayConfig{})
		ctx := testCtx(t)
		var msgs []bus.Message
		for i := range 10 {
			msgs = append(msgs, signal(fmt.Sprintf("s-%d", i)))
		}
		enqueue(t, pool, msgs...)

		// Another relay's transaction holds the 4 oldest rows.
		other, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = other.Rollback(context.Background()) })
		if _, err := other.Exec(ctx, `SELECT id FROM bus_outbox WHERE published_at IS NULL ORDER BY id LIMIT 4 FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		if n := relayOnce(t, r); n != 6 {
			t.Fatalf("relayed %d, want the 6 unlocked rows", n)
		}
		if err := other.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if n := relayOnce(t, r); n != 4 {
			t.Fatalf("relayed %d after the lock is released, want 4", n)
		}
	})
	t.Run("a commit wakes the running relay", func(t *testing.T) {
		_, b := setupNATS(t)
		pool := setupPG(t)
		// Polling once an hour: only the notification can wake it in time.
		r := newRelay(t, b, pool, bus.RelayConfig{PollInterval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay run: %v", err)
			}
		})
		waitFor(t, "the relay to listen", func() (bool, string) {
			var n int
			_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'`).Scan(&n)
			return n > 0, "not listening"
		})
		enqueue(t, pool, signal("wake"))
		waitFor(t, "the row to be published", func() (bool, string) {
			n := streamMsgs(t, b, bus.SignalsStream)
			return n == 1, fmt.Sprintf("%d in stream", n)
		})
	})
}

// TestOutboxConcurrentRelays runs two relays (two replicas of a service)
// over rows committed concurrently by several writers. Every row must be
// published, and no row by both relays: each relay counts how the stream
// acked its publishes, and a row sent twice would show up as a duplicate.
func TestOutboxConcurrentRelays(t *testing.T) {
	srv, _ := setupNATS(t)
	pool := setupPG(t)
	const writers, perWriter = 4, 250

	readers := make([]*sdkmetric.ManualReader, 2)
	relays := make([]*bus.Relay, 2)
	for i := range relays {
		readers[i] = sdkmetric.NewManualReader()
		b := connect(t, srv.URL(), bus.Config{}, bus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(readers[i]))))
		relays[i] = newRelay(t, b, pool, bus.RelayConfig{BatchSize: 50, PollInterval: 20 * time.Millisecond})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range relays {
		wg.Go(func() {
			if err := r.Run(ctx); err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Go(func() {
			for i := 0; i < perWriter; i += 10 {
				var msgs []bus.Message
				for j := i; j < i+10; j++ {
					msgs = append(msgs, signal(fmt.Sprintf("w%d-%d", w, j)))
				}
				enqueue(t, pool, msgs...)
			}
		})
	}
	writersWG.Wait()

	check := connect(t, srv.URL(), bus.Config{})
	waitFor(t, "every row published", func() (bool, string) {
		n := unpublished(t, pool)
		return n == 0, fmt.Sprintf("%d unpublished", n)
	})
	if n := streamMsgs(t, check, bus.SignalsStream); n != writers*perWriter {
		t.Fatalf("stream holds %d, want %d", n, writers*perWriter)
	}
	var published, duplicates [2]int64
	for i, r := range readers {
		published[i] = testenv.CounterSum(t, r, "retain.bus.outbox.published", "outcome=published")
		duplicates[i] = testenv.CounterSum(t, r, "retain.bus.outbox.published", "outcome=duplicate")
	}
	if published[0]+published[1] != writers*perWriter || duplicates[0]+duplicates[1] != 0 {
		t.Fatalf("relays published %v and saw duplicates %v; want %d in total and no duplicates",
			published, duplicates, writers*perWriter)
	}
	t.Logf("rows published per relay: %v", published)
}

func TestOutboxCleanup(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	r := newRelay(t, b, pool, bus.RelayConfig{Retention: time.Hour})
	enqueue(t, pool, signal("old"), signal("recent"), signal("pending"))
	ctx := testCtx(t)
	if _, err := pool.Exec(ctx, `UPDATE bus_outbox SET published_at = now() - interval '2 hours' WHERE msg_id = 'old';
		UPDATE bus_outbox SET published_at = now() WHERE msg_id = 'recent'`); err != nil {
		t.Fatal(err)
	}
	n, err := r.Cleanup(ctx)
	if err != nil || n != 1 {
		t.Fatalf("cleanup deleted %d (%v), want 1", n, err)
	}
	rows, err := pool.Query(ctx, `SELECT msg_id FROM bus_outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(left, ",") != "recent,pending" {
		t.Fatalf("rows left %v (%v), want recent,pending", left, err)
	}
}

func TestInboxCleanup(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{InboxRetention: time.Hour}, applyAll)
	ctx := testCtx(t)
	if _, err := pool.Exec(ctx, `INSERT INTO bus_inbox (consumer, msg_id, received_at) VALUES
		($1, 'old', now() - interval '2 hours'), ($1, 'recent', now()), ('other', 'old', now() - interval '2 hours')`, c.Name()); err != nil {
		t.Fatal(err)
	}
	n, err := c.CleanupInbox(ctx)
	if err != nil || n != 1 {
		t.Fatalf("cleanup deleted %d (%v), want 1 (only this consumer's old id)", n, err)
	}
}

// TestOutboxRelayLogsAnOutageOnce: a relay polling through a real database
// outage (connections refused, backends ended) logs it when it starts and
// when it ends, for its passes and for its LISTEN connection, instead of a
// line per retry, and relays what was enqueued once the database is back.
func TestOutboxRelayLogsAnOutageOnce(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	logs := runLoggedRelay(t, b, pool)

	endOutage := testenv.DatabaseOutage(t, pool)
	time.Sleep(3 * time.Second) // several retries of both loops
	endOutage()
	enqueue(t, pool, signal("after"))
	waitFor(t, "the row enqueued after the outage relayed", func() (bool, string) { return unpublished(t, pool) == 0, "" })
	waitFor(t, "both loops to log the end of the outage", func() (bool, string) {
		out := logs.String()
		return strings.Contains(out, "outbox relay: database answers again") && strings.Contains(out, "outbox listen: database answers again"), out
	})
	out := logs.String()
	for what, want := range map[string]int{
		"outbox relay: database unreachable": 1, "outbox relay: database answers again": 1,
		"outbox listen: database unreachable": 1, "outbox listen: database answers again": 1,
		"outbox relay pass failed": 0, "outbox listen connection lost": 0,
	} {
		if n := strings.Count(out, what); n != want {
			t.Errorf("%d lines %q for one outage, want %d:\n%s", n, what, want, out)
		}
	}
	if !regexp.MustCompile(`msg="outbox relay: database answers again" .*outage=\S+ failed_passes=[2-9]`).MatchString(out) {
		t.Errorf("the end of the outage does not count the relay's failed passes:\n%s", out)
	}
}

// TestOutboxRelayPacesAPublishFailure: while NATS is down, and while
// JetStream has no storage left, every relay pass fails alike; the relay
// says so once, with what to check, and once when it publishes again,
// instead of a line per retry.
func TestOutboxRelayPacesAPublishFailure(t *testing.T) {
	t.Run("NATS down", func(t *testing.T) {
		var url string
		relayThroughPublishFailure(t, func(srv *testenv.NATSServer, _ *bus.Bus) func() {
			url = srv.URL()
			srv.Shutdown()
			return func() { srv.Restart(t) }
		}, func() string { return "check that NATS at " + url + " (RETAIN_NATS_URL) is up" })
	})
	t.Run("no storage left", func(t *testing.T) {
		relayThroughPublishFailure(t, func(srv *testenv.NATSServer, b *bus.Bus) func() {
			info, err := b.JS.AccountInfo(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			srv.LimitStore(t, int64(info.Store)) // full
			return func() { srv.LimitStore(t, -1) }
		}, func() string { return "check the stream's limits" })
	})
}

// TestOutboxRelayEmptyPassesDoNotEndAPublishFailure: while NATS is down,
// another replica holding the rows (SKIP LOCKED) while its publish waits
// out leaves this relay passes that claim nothing, between its failed
// ones. They publish nothing, so they do not end the failure run: the
// relay says it publishes again once, when a row is published.
func TestOutboxRelayEmptyPassesDoNotEndAPublishFailure(t *testing.T) {
	srv, b := setupNATS(t)
	pool := setupPG(t)
	logs := runLoggedRelay(t, b, pool)
	const (
		cannot = "outbox relay cannot publish"
		again  = "outbox relay publishes again"
	)
	srv.Shutdown()
	enqueue(t, pool, signal("during"))
	waitFor(t, "the failure logged", func() (bool, string) { return strings.Contains(logs.String(), cannot), logs.String() })
	for range 2 {
		// The other replica's pass: longer than this relay's backoff so
		// far, so that it has a pass that claims nothing.
		tx, err := pool.Begin(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(testCtx(t), `SELECT id FROM bus_outbox WHERE published_at IS NULL FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if err := tx.Rollback(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(600 * time.Millisecond) // this relay fails again
	}
	if out := logs.String(); strings.Contains(out, again) {
		t.Fatalf("a pass that claimed nothing ended the failure run while NATS was down:\n%s", out)
	}
	srv.Restart(t)
	waitFor(t, "the row relayed", func() (bool, string) { return unpublished(t, pool) == 0, "" })
	waitFor(t, "the end logged", func() (bool, string) { return strings.Contains(logs.String(), again), logs.String() })
	out := logs.String()
	for what, want := range map[string]int{cannot: 1, again: 1} {
		if n := strings.Count(out, what); n != want {
			t.Errorf("%d lines %q, want %d:\n%s", n, what, want, out)
		}
	}
}

// runLoggedRelay runs a relay polling every 20 ms until the test ends, and
// returns its log once it has relayed a first row.
func runLoggedRelay(t *testing.T, b *bus.Bus, pool *pgxpool.Pool) *testenv.SyncBuffer {
	t.Helper()
	var logs testenv.SyncBuffer
	r, err := bus.NewRelay(b, pool, bus.RelayConfig{PollInterval: 20 * time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	enqueue(t, pool, signal("before"))
	waitFor(t, "the first row relayed", func() (bool, string) { return unpublished(t, pool) == 0, "" })
	return &logs
}

// relayThroughPublishFailure runs a relay, makes it fail to publish for a
// few seconds with fail (which returns the cure) and checks the log.
func relayThroughPublishFailure(t *testing.T, fail func(*testenv.NATSServer, *bus.Bus) (heal func()), hint func() string) {
	srv, b := setupNATS(t)
	pool := setupPG(t)
	logs := runLoggedRelay(t, b, pool)

	heal := fail(srv, b)
	enqueue(t, pool, signal("during"))
	time.Sleep(3 * time.Second) // several retries
	heal()
	waitFor(t, "the row relayed", func() (bool, string) { return unpublished(t, pool) == 0, "" })
	const (
		cannot = "outbox relay cannot publish"
		again  = "outbox relay publishes again"
	)
	waitFor(t, "the end logged", func() (bool, string) { return strings.Contains(logs.String(), again), logs.String() })
	out := logs.String()
	for what, want := range map[string]int{cannot: 1, again: 1, "outbox relay pass failed": 0} {
		if n := strings.Count(out, what); n != want {
			t.Errorf("%d lines %q, want %d:\n%s", n, what, want, out)
		}
	}
	if !strings.Contains(out, hint()) {
		t.Errorf("no hint %q:\n%s", hint(), out)
	}
	if !regexp.MustCompile(`msg="` + again + `" .*failed_passes=[2-9]`).MatchString(out) {
		t.Errorf("the end does not count the failed passes:\n%s", out)
	}
}
