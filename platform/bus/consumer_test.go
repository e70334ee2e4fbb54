package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// applyAll is the test projection: one row per applied delivery, written
// with one multi-row insert like a real handler.
func applyAll(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	ids := make([]string, 0, len(ds))
	subjects := make([]string, 0, len(ds))
	payloads := make([][]byte, 0, len(ds))
	for _, d := range ds {
		if rejected, _ := d.Rejected(); rejected {
			continue
		}
		ids = append(ids, d.ID)
		subjects = append(subjects, d.Subject)
		payloads = append(payloads, d.Data)
	}
	_, err := tx.Exec(ctx, `INSERT INTO applied (msg_id, subject, payload)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])`, ids, subjects, payloads)
	return err
}

// appliedCounts returns (rows, distinct ids) of the test projection.
func appliedCounts(t testing.TB, pool *pgxpool.Pool) (int, int) {
	t.Helper()
	var rows, distinct int
	if err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT msg_id) FROM applied`).Scan(&rows, &distinct); err != nil {
		t.Fatalf("count applied: %v", err)
	}
	return rows, distinct
}

func deadLetterCount(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM bus_dead_letters WHERE replayed_at IS NULL`).Scan(&n); err != nil {
		t.Fatalf("count dead letters: %v", err)
	}
	return n
}

// run starts c and returns a stop function that cancels it and waits for
// Run to return (also registered as cleanup).
func run(t testing.TB, c *bus.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newConsumer(t testing.TB, b *bus.Bus, pool *pgxpool.Pool, cfg bus.ConsumerConfig, h bus.Handler) *bus.Consumer {
	t.Helper()
	if cfg.Stream == "" {
		cfg.Stream = bus.EventsStream
	}
	if cfg.Durable == "" {
		cfg.Durable = "test-projection"
	}
	c, err := bus.NewConsumer(b, pool, cfg, h, testLogger())
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	return c
}

// settled waits until the consumer has delivered messages and has nothing
// pending or unacked. (A consumer just created can report nothing pending
// before the server has counted its stream: the first delivery is the sign
// that it has.)
func settled(t testing.TB, b *bus.Bus, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	waitFor(t, "consumer "+durable+" to settle", func() (bool, string) {
		c, err := b.JS.Consumer(context.Background(), bus.EventsStream, durable)
		if err != nil {
			return false, err.Error()
		}
		info, err = c.Info(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return info.Delivered.Consumer > 0 && info.NumPending == 0 && info.NumAckPending == 0,
			fmt.Sprintf("delivered %d, pending %d, ack pending %d", info.Delivered.Consumer, info.NumPending, info.NumAckPending)
	})
	return info
}

func TestConsumerAppliesEveryMessageOnce(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("e", 1000)); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 100, Concurrency: 2}, applyAll)
	run(t, c)
	waitFor(t, "1000 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 1000, fmt.Sprintf("%d rows", rows)
	})
	settled(t, b, c.Name())
	if rows, distinct := appliedCounts(t, pool); rows != 1000 || distinct != 1000 {
		t.Fatalf("applied %d rows for %d ids, want 1000 for 1000", rows, distinct)
	}
}

// TestConsumerSkipsOtherEventTypes: with EventTypes the handler gets only
// those types, whatever the tenant; the others are acknowledged without
// entering the inbox, and the consumer is caught up.
func TestConsumerSkipsOtherEventTypes(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	var msgs []bus.Message
	for i := range 300 {
		typ := []string{"order.placed", "ticket.opened", "survey.answered"}[i%3]
		msgs = append(msgs, bus.Message{Subject: bus.EventSubject(fmt.Sprintf("shop%d", i%7), typ), ID: fmt.Sprintf("m-%d", i), Type: typ,
			Data: []byte(typ)})
	}
	if _, err := b.PublishDurable(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 50, Concurrency: 2, EventTypes: []string{"order.placed", "survey.answered"}}, applyAll)
	run(t, c)
	if err := c.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var applied, tickets, inbox int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE subject LIKE '%ticket.opened'),
		(SELECT count(*) FROM bus_inbox) FROM applied`).Scan(&applied, &tickets, &inbox); err != nil {
		t.Fatal(err)
	}
	if applied != 200 || tickets != 0 || inbox != 200 {
		t.Fatalf("applied %d (%d tickets), inbox %d; want 200 applied, no tickets, 200 in the inbox", applied, tickets, inbox)
	}
}

// TestConsumerRedeliveryIsHarmless covers the two honest ways the same msg
// id reaches a consumer again.
func TestConsumerRedeliveryIsHarmless(t *testing.T) {
	t.Run("crash after commit, before the acks", func(t *testing.T) {
		srv, _ := setupNATS(t)
		pool := setupPG(t)
		ctx := testCtx(t)
		if _, err := connect(t, srv.URL(), bus.Config{}).PublishDurable(ctx, events("e", 200)); err != nil {
			t.Fatal(err)
		}
		cfg := bus.ConsumerConfig{Durable: "crashy", BatchSize: 50, AckWait: 500 * time.Millisecond}

		// First instance: applies its first batch, and its connection dies
		// before the transaction commits, so the commit succeeds but no ack
		// can reach the server.
		b1 := connect(t, srv.URL(), bus.Config{})
		var firstBatch atomic.Int64
		c1 := newConsumer(t, b1, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			if !firstBatch.CompareAndSwap(0, int64(len(ds))) {
				return errors.New("instance 1 is dead")
			}
			b1.NC.Close()
			return applyAll(ctx, tx, ds)
		})
		stop1 := run(t, c1)
		waitFor(t, "first instance to apply a batch", func() (bool, string) {
			rows, _ := appliedCounts(t, pool)
			return rows > 0, fmt.Sprintf("%d rows", rows)
		})
		stop1()

		// Second instance: gets the unacked batch again after AckWait.
		reader := sdkmetric.NewManualReader()
		b2 := connect(t, srv.URL(), bus.Config{}, bus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
		var handled atomic.Int64
		c2 := newConsumer(t, b2, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			for _, d := range ds {
				if d.NumDelivered > 1 {
					return fmt.Errorf("handler got redelivered %s (delivery %d): the inbox should have skipped it", d.ID, d.NumDelivered)
				}
			}
			handled.Add(int64(len(ds)))
			return applyAll(ctx, tx, ds)
		})
		run(t, c2)
		settled(t, b2, cfg.Durable)

		if rows, distinct := appliedCounts(t, pool); rows != 200 || distinct != 200 {
			t.Fatalf("applied %d rows for %d ids, want 200 for 200", rows, distinct)
		}
		if got, want := handled.Load(), 200-firstBatch.Load(); got != want {
			t.Fatalf("second instance handled %d messages, want %d", got, want)
		}
		if dups := testenv.CounterSum(t, reader, "retain.bus.consumer.messages", "outcome=duplicate"); dups != firstBatch.Load() {
			t.Fatalf("second instance acked %d redeliveries as duplicates, want %d", dups, firstBatch.Load())
		}
	})

	t.Run("client retries after the dedupe window", func(t *testing.T) {
		srv := testenv.NATS(t)
		b := connect(t, srv.URL(), bus.Config{})
		ctx := testCtx(t)
		if err := b.EnsureStreams(ctx, bus.EventsStreamConfig(bus.StreamOptions{Duplicates: 100 * time.Millisecond})); err != nil {
			t.Fatal(err)
		}
		pool := setupPG(t)
		m := events("late", 1)[0]
		if _, err := b.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
		// Retry until the stream no longer recognises the id: it now holds
		// the same event twice, and only the inbox stands in the way.
		waitFor(t, "the dedupe window to pass", func() (bool, string) {
			ack, err := b.Publish(ctx, m)
			if err != nil {
				return false, err.Error()
			}
			return !ack.Duplicate, "still deduplicated"
		})
		if n := streamMsgs(t, b, bus.EventsStream); n != 2 {
			t.Fatalf("stream holds %d copies, want 2", n)
		}
		c := newConsumer(t, b, pool, bus.ConsumerConfig{}, applyAll)
		run(t, c)
		settled(t, b, c.Name())
		if rows, _ := appliedCounts(t, pool); rows != 1 {
			t.Fatalf("applied %d times, want once", rows)
		}
	})
}

func TestConsumerPoisonMessageIsDeadLettered(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	batch := events("e", 10)
	batch[3].Type, batch[7].Type = "poison", "poison"
	batch[5].Type = "" // published without the type header, as by hand
	if _, err := b.PublishDurable(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	c := newConsumer(t, b, pool, bus.ConsumerConfig{}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		calls.Add(1)
		for _, d := range ds {
			if d.Type == "poison" || d.Type == "" {
				d.Reject("cannot decode: not an OrderPlaced")
			}
		}
		return applyAll(ctx, tx, ds)
	})
	run(t, c)
	info := settled(t, b, c.Name())

	if rows, _ := appliedCounts(t, pool); rows != 7 {
		t.Fatalf("applied %d, want the 7 good messages", rows)
	}
	if info.NumRedelivered != 0 {
		t.Fatalf("%d redeliveries: poison messages must be terminated, not retried", info.NumRedelivered)
	}
	dls, err := c.DeadLetters(ctx, bus.DeadLetterQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dls))
	}
	// The one without the header is typed by its subject.
	for i, want := range []struct{ id, typ string }{{"e-3", "poison"}, {"e-5", "order.placed"}, {"e-7", "poison"}} {
		dl := dls[i]
		if dl.MsgID != want.id || dl.Reason != "cannot decode: not an OrderPlaced" || dl.NumDelivered != 1 ||
			dl.Type != want.typ || dl.Subject != batch[3].Subject || string(dl.Data) != "payload "+want.id ||
			dl.Header.Get("Nats-Msg-Id") != want.id {
			t.Errorf("dead letter %d = %+v", i, dl)
		}
	}
}

func TestConsumerMaxDeliverDeadLetters(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	batch := events("e", 20)
	batch[5].Type = "flaky"
	if _, err := b.PublishDurable(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var flakyAttempts atomic.Int64
	cfg := bus.ConsumerConfig{MaxDeliver: 3, Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	c := newConsumer(t, b, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		for _, d := range ds {
			if d.Type == "flaky" {
				flakyAttempts.Add(1)
				return errors.New("smtp relay unavailable")
			}
		}
		return applyAll(ctx, tx, ds)
	})
	run(t, c)
	waitFor(t, "the flaky message to be dead-lettered", func() (bool, string) {
		n := deadLetterCount(t, pool)
		return n == 1, fmt.Sprintf("%d dead letters", n)
	})
	settled(t, b, c.Name())

	if rows, distinct := appliedCounts(t, pool); rows != 19 || distinct != 19 {
		t.Fatalf("applied %d rows for %d ids, want the 19 good messages once each", rows, distinct)
	}
	if n := flakyAttempts.Load(); n < 3 {
		t.Fatalf("handler saw the flaky message %d times, want at least MaxDeliver (3)", n)
	}
	dls, err := c.DeadLetters(ctx, bus.DeadLetterQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].MsgID != "e-5" || dls[0].NumDelivered != 3 ||
		!strings.Contains(dls[0].Reason, "failed 3 deliveries") || !strings.Contains(dls[0].Reason, "smtp relay unavailable") {
		t.Fatalf("dead letters %+v", dls)
	}
}

func TestConsumerTransientFailureIsRetried(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("e", 50)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	cfg := bus.ConsumerConfig{Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	c := newConsumer(t, b, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		// Apply, then fail: the rollback must undo both the effect and the
		// inbox rows, or the retry would skip the messages.
		if err := applyAll(ctx, tx, ds); err != nil {
			return err
		}
		if calls.Add(1) <= 2 {
			return errors.New("database is failing over")
		}
		return nil
	})
	run(t, c)
	waitFor(t, "50 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 50, fmt.Sprintf("%d rows", rows)
	})
	settled(t, b, c.Name())
	if rows, distinct := appliedCounts(t, pool); rows != 50 || distinct != 50 {
		t.Fatalf("applied %d rows for %d ids, want 50 for 50", rows, distinct)
	}
	if n := deadLetterCount(t, pool); n != 0 {
		t.Fatalf("%d dead letters after a transient failure", n)
	}
}

func TestConsumerHandlerPanicIsAFailure(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("e", 10)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	cfg := bus.ConsumerConfig{Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	c := newConsumer(t, b, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		if calls.Add(1) == 1 {
			panic("nil map in projection")
		}
		return applyAll(ctx, tx, ds)
	})
	run(t, c)
	waitFor(t, "10 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 10, fmt.Sprintf("%d rows", rows)
	})
	settled(t, b, c.Name())
	if rows, distinct := appliedCounts(t, pool); rows != 10 || distinct != 10 {
		t.Fatalf("applied %d rows for %d ids, want 10 for 10", rows, distinct)
	}
}

func TestReplay(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	batch := events("e", 5)
	batch[1].Type, batch[2].Type = "v2", "v2"
	if _, err := b.PublishDurable(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Until "deployed", the handler cannot decode v2 payloads. It counts
	// the v2 messages it applied once committed, as a cache or a metric
	// does (AfterCommit).
	var understandsV2 atomic.Bool
	var committedV2 atomic.Int32
	c := newConsumer(t, b, pool, bus.ConsumerConfig{}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		for _, d := range ds {
			if d.Type == "v2" && !understandsV2.Load() {
				d.Reject("unknown payload version")
			} else if d.Type == "v2" && !bus.AfterCommit(ctx, func() { committedV2.Add(1) }) {
				return errors.New("AfterCommit refused the handler's context")
			}
		}
		return applyAll(ctx, tx, ds)
	})
	run(t, c)
	settled(t, b, c.Name())
	// Consumer info can read settled before the first batch is delivered
	// (seen once in CI-like load); the dead-letter rows are what this test
	// needs, so wait for them.
	var dls []bus.DeadLetter
	waitFor(t, "2 dead letters", func() (bool, string) {
		var err error
		dls, err = c.DeadLetters(ctx, bus.DeadLetterQuery{Limit: 10})
		return err == nil && len(dls) == 2, fmt.Sprintf("%d dead letters, err %v", len(dls), err)
	})

	t.Run("a replay rejected again stays dead", func(t *testing.T) {
		var rej *bus.RejectedError
		if err := c.Replay(ctx, dls[0].ID); !errors.As(err, &rej) || rej.Reason != "unknown payload version" {
			t.Fatalf("got %v, want RejectedError", err)
		}
		if n := deadLetterCount(t, pool); n != 2 {
			t.Fatalf("%d pending dead letters, want 2", n)
		}
	})
	understandsV2.Store(true)
	t.Run("after the fix the replay applies the stored message", func(t *testing.T) {
		for _, dl := range dls {
			if err := c.Replay(ctx, dl.ID); err != nil {
				t.Fatalf("replay %d: %v", dl.ID, err)
			}
		}
		if rows, distinct := appliedCounts(t, pool); rows != 5 || distinct != 5 {
			t.Fatalf("applied %d rows for %d ids, want 5 for 5", rows, distinct)
		}
		if n := committedV2.Load(); n != 2 {
			t.Fatalf("the handler's after-commit hooks ran for %d replayed messages, want 2", n)
		}
		left, err := c.DeadLetters(ctx, bus.DeadLetterQuery{Limit: 10})
		if err != nil || len(left) != 0 {
			t.Fatalf("pending dead letters after replay: %v, %v", left, err)
		}
	})
	t.Run("replaying twice is refused", func(t *testing.T) {
		if err := c.Replay(ctx, dls[0].ID); !errors.Is(err, bus.ErrAlreadyReplayed) {
			t.Fatalf("got %v, want ErrAlreadyReplayed", err)
		}
	})
	t.Run("an unknown dead letter is not found", func(t *testing.T) {
		if err := c.Replay(ctx, 999999); !errors.Is(err, bus.ErrDeadLetterNotFound) {
			t.Fatalf("got %v, want ErrDeadLetterNotFound", err)
		}
	})
	t.Run("a redelivery after the replay is a duplicate", func(t *testing.T) {
		// The replayed id is in the inbox now, like any applied message.
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM bus_inbox WHERE consumer = $1 AND msg_id = ANY($2)`,
			c.Name(), []string{"e-1", "e-2"}).Scan(&n); err != nil || n != 2 {
			t.Fatalf("replayed ids in inbox: %d, %v; want 2", n, err)
		}
	})
}

func TestConsumerDrainsInFlightBatchOnShutdown(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("e", 20)); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 20}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		once.Do(func() { close(entered) })
		<-release
		return applyAll(ctx, tx, ds)
	})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a batch was in flight", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	// Returned only after commit and acks of the in-flight batch.
	if rows, _ := appliedCounts(t, pool); rows != 20 {
		t.Fatalf("applied %d, want the whole in-flight batch of 20", rows)
	}
	settled(t, b, c.Name())
}

func TestConsumerSpanLinksToProducer(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, b := setupNATS(t, bus.WithTracerProvider(tp))
	pool := setupPG(t)
	ctx := testCtx(t)

	pctx, producer := tp.Tracer("test").Start(ctx, "ingest request")
	if _, err := b.PublishDurable(pctx, events("e", 3)); err != nil {
		t.Fatal(err)
	}
	producer.End()
	var handlerTrace atomic.Value
	c := newConsumer(t, b, pool, bus.ConsumerConfig{Durable: "traced"}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		handlerTrace.Store(traceIDOf(ctx))
		return applyAll(ctx, tx, ds)
	})
	run(t, c)
	settled(t, b, c.Name())

	// The span ends just after the acks that settled the consumer.
	var process sdktrace.ReadOnlySpan
	waitFor(t, "the consumer span to end", func() (bool, string) {
		for _, s := range rec.Ended() {
			if s.Name() == "process traced" {
				process = s
			}
		}
		return process != nil, "no consumer span recorded"
	})
	linked := false
	for _, l := range process.Links() {
		linked = linked || l.SpanContext.TraceID() == producer.SpanContext().TraceID()
	}
	if !linked {
		t.Fatalf("consumer span links %v do not include the producer trace %s", process.Links(), producer.SpanContext().TraceID())
	}
	if got := handlerTrace.Load(); got != process.SpanContext().TraceID().String() {
		t.Fatalf("handler context carries trace %v, want the consumer span's %s", got, process.SpanContext().TraceID())
	}
}

// TestCaughtUp: a consumer is caught up only once everything its filters
// match has been applied, also right after a publish, and messages outside
// its filters do not hold it back.
func TestCaughtUp(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{FilterSubjects: []string{bus.EventTypeFilter("order.placed")}}, applyAll)
	if _, err := c.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CaughtUp(ctx); err != nil || !ok {
		t.Fatalf("an empty stream: caught up = %v, %v", ok, err)
	}
	for i := range 20 {
		if _, err := b.PublishDurable(ctx, events(fmt.Sprintf("r%d", i), 1)); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.CaughtUp(ctx); err != nil || ok {
			t.Fatalf("round %d: caught up = %v, %v right after a publish nobody consumed", i, ok, err)
		}
	}
	other := bus.Message{Subject: bus.EventSubject("acme", "ticket.opened"), ID: "t-1", Type: "ticket.opened", Data: []byte("x")}
	if _, err := b.PublishDurable(ctx, []bus.Message{other}); err != nil {
		t.Fatal(err)
	}
	run(t, c)
	if err := c.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, _ := appliedCounts(t, pool); rows != 20 {
		t.Fatalf("caught up with %d of 20 messages applied", rows)
	}
}

// TestLastAttemptSurvivesAnOutageAndARestart: a message on its last
// attempt is held through a database outage and the process stops before
// the database is back, so the batch is handed back unsettled and comes
// again past MaxDeliver. That delivery still runs the handler once (the
// outage was not the message's fault): the message is applied, not
// dead-lettered unrun.
func TestLastAttemptSurvivesAnOutageAndARestart(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("last", 1)); err != nil {
		t.Fatal(err)
	}
	cfg := bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "last-attempt", MaxDeliver: 2, AckWait: time.Second, Backoff: bus.Backoff{Initial: time.Second, Max: time.Second}}
	var seen [4]atomic.Bool // deliveries the handler saw
	handler := func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		for _, d := range ds {
			seen[min(d.NumDelivered, 3)].Store(true)
			if d.NumDelivered == 1 {
				return errors.New("a transient failure of the first attempt")
			}
		}
		return applyAll(ctx, tx, ds)
	}
	var logs testenv.SyncBuffer
	first, err := bus.NewConsumer(b, pool, cfg, handler, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, first)
	// The first attempt's failure is counted before the outage starts: an
	// outage while it is being decided on holds that attempt instead.
	logs.WaitFor(t, "batch failed, redelivering with backoff")
	// The second and last attempt comes a second later, into an outage,
	// and is held before the process stops: stopped earlier, the process
	// would leave it undelivered for the restart.
	endOutage := testenv.DatabaseOutage(t, pool)
	logs.WaitFor(t, "database unreachable; holding the batch")
	stop()
	endOutage()

	run(t, newConsumer(t, b, pool, cfg, handler))
	waitFor(t, "the message applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows == 1, fmt.Sprintf("%d applied, %d dead letters", rows, deadLetterCount(t, pool))
	})
	if n := deadLetterCount(t, pool); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	if seen[2].Load() {
		t.Error("the handler ran the held last attempt during the outage")
	}
}

// TestConsumerHoldsBatchesThroughDatabaseOutage: while the database refuses
// connections for longer than MaxDeliver attempts with their backoff (and
// than AckWait) would last, the consumer holds its batch instead of
// spending deliveries on it; once the database is back every message is
// applied once, nothing is dead-lettered and nothing was redelivered.
func TestConsumerHoldsBatchesThroughDatabaseOutage(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	endOutage := testenv.DatabaseOutage(t, pool)

	if _, err := b.PublishDurable(ctx, events("e", 20)); err != nil {
		t.Fatal(err)
	}
	cfg := bus.ConsumerConfig{MaxDeliver: 2, AckWait: time.Second, Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	var maxDelivered atomic.Uint64
	c := newConsumer(t, b, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		for _, d := range ds {
			if d.NumDelivered > maxDelivered.Load() {
				maxDelivered.Store(d.NumDelivered)
			}
		}
		return applyAll(ctx, tx, ds)
	})
	run(t, c)
	// The outage outlasts the two attempts' backoff a hundred times over
	// and AckWait three times.
	time.Sleep(3 * time.Second)
	endOutage()

	waitFor(t, "20 applied", func() (bool, string) {
		var rows int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM applied`).Scan(&rows); err != nil {
			return false, err.Error()
		}
		return rows >= 20, fmt.Sprintf("%d rows", rows)
	})
	appliedEachOnce(t, b, pool, c.Name(), 20, &maxDelivered, "a database outage", "")
}

// appliedEachOnce checks, once durable has settled, that its n messages
// were applied once each, none was dead-lettered and each was delivered
// once (the handler saw no delivery past maxDelivered's 1): what they went
// through, after, costs no attempt. log, when set, is shown on a failure.
func appliedEachOnce(t *testing.T, b *bus.Bus, pool *pgxpool.Pool, durable string, n int, maxDelivered *atomic.Uint64, after, log string) {
	t.Helper()
	info := settled(t, b, durable)
	if rows, distinct := appliedCounts(t, pool); rows != n || distinct != n {
		t.Fatalf("applied %d rows for %d ids, want %d for %d", rows, distinct, n, n)
	}
	if dl := deadLetterCount(t, pool); dl != 0 {
		t.Fatalf("%d dead letters after %s", dl, after)
	}
	if info.Delivered.Consumer != uint64(n) || maxDelivered.Load() != 1 {
		t.Errorf("%d deliveries of %d messages (the handler saw delivery %d at most), want each delivered once%s",
			info.Delivered.Consumer, n, maxDelivered.Load(), log)
	}
}

// TestConsumerRetriesABatchWhoseConnectionBroke: a batch whose connection
// is terminated under it (as a crash or a restart of the database leaves
// the pool's connections) while the database answers is run again on
// another connection without spending a delivery (decision 0052).
func TestConsumerRetriesABatchWhoseConnectionBroke(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("e", 20)); err != nil {
		t.Fatal(err)
	}
	cfg := bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "broken-conn", MaxDeliver: 2,
		Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	var (
		terminated   atomic.Bool
		maxDelivered atomic.Uint64
	)
	var logs testenv.SyncBuffer
	c, err := bus.NewConsumer(b, pool, cfg,
		func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			for _, d := range ds {
				if d.NumDelivered > maxDelivered.Load() {
					maxDelivered.Store(d.NumDelivered)
				}
			}
			if !terminated.Swap(true) {
				if err := terminateBackend(ctx, pool, tx); err != nil {
					return err
				}
			}
			return applyAll(ctx, tx, ds)
		}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitFor(t, "20 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 20, fmt.Sprintf("%d rows", rows)
	})
	appliedEachOnce(t, b, pool, c.Name(), 20, &maxDelivered, "a broken connection", "; log:\n"+logs.String())
	if !strings.Contains(logs.String(), "database connection failed; retrying the batch on another") {
		t.Fatalf("the retry is not logged:\n%s", logs.String())
	}
}

// terminateBackend ends the session of tx's connection, as a crash or a
// restart of the database does, and returns once it has ended.
func terminateBackend(ctx context.Context, pool *pgxpool.Pool, tx pgx.Tx) error {
	var pid int32
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		return err
	}
	// The backend ends before the batch's next statement.
	for gone := false; !gone; time.Sleep(5 * time.Millisecond) {
		if err := pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&gone); err != nil {
			return err
		}
	}
	return nil
}

// TestConsumerKeepsARetriedBatchInProgress: a batch whose connection
// breaks late in its AckWait and whose retry runs past it is kept in
// progress meanwhile: the server neither redelivers it (a delivery spent)
// nor hands a second copy to run alongside.
func TestConsumerKeepsARetriedBatchInProgress(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("e", 1)); err != nil {
		t.Fatal(err)
	}
	const ackWait = 2 * time.Second
	cfg := bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "late-broken-conn", AckWait: ackWait, MaxDeliver: 2,
		Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	var (
		attempts     atomic.Int32
		maxDelivered atomic.Uint64
	)
	c, err := bus.NewConsumer(b, pool, cfg,
		func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			for _, d := range ds {
				if d.NumDelivered > maxDelivered.Load() {
					maxDelivered.Store(d.NumDelivered)
				}
			}
			switch attempts.Add(1) {
			case 1: // breaks its connection at 70% of AckWait
				time.Sleep(ackWait * 7 / 10)
				if err := terminateBackend(ctx, pool, tx); err != nil {
					return err
				}
			case 2: // the retry ends past the first delivery's AckWait
				time.Sleep(ackWait / 2)
			}
			return applyAll(ctx, tx, ds)
		}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitFor(t, "1 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 1, fmt.Sprintf("%d rows", rows)
	})
	info := settled(t, b, c.Name())
	if info.Delivered.Consumer != 1 || maxDelivered.Load() != 1 {
		t.Fatalf("%d deliveries (the handler saw delivery %d at most, in %d attempts), want 1",
			info.Delivered.Consumer, maxDelivered.Load(), attempts.Load())
	}
}
