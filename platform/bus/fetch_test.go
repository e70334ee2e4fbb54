package bus_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/testenv"
)

// batchLog records the batches a handler is given: messages and bytes of
// data each, and every id, before applying them as applyAll does.
type batchLog struct {
	mu      sync.Mutex
	counts  []int
	bytes   []int
	batchOf map[string]int // id -> index of its batch
}

func (l *batchLog) handle(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	l.mu.Lock()
	n := 0
	for _, d := range ds {
		n += len(d.Data)
		l.batchOf[d.ID] = len(l.counts)
	}
	l.counts = append(l.counts, len(ds))
	l.bytes = append(l.bytes, n)
	l.mu.Unlock()
	return applyAll(ctx, tx, ds)
}

func (l *batchLog) snapshot() (counts, bytes []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.counts...), append([]int(nil), l.bytes...)
}

// sized builds n order.placed messages of size bytes of data each, with ids
// prefix-0..n-1.
func sized(prefix string, n, size int) []bus.Message {
	out := events(prefix, n)
	for i := range out {
		out[i].Data = []byte(fmt.Sprintf("%s-%d ", prefix, i) + strings.Repeat("x", size))[:size]
	}
	return out
}

func waitApplied(t *testing.T, l *batchLog, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d applied", want), func() (bool, string) {
		counts, _ := l.snapshot()
		n := 0
		for _, c := range counts {
			n += c
		}
		return n >= want, fmt.Sprintf("%d in %d batches", n, len(counts))
	})
}

// TestConsumerFetchIsBoundedInBytes: large messages come in several
// batches, none over FetchMaxBytes, both from a backlog (the no-wait
// fetch) and when they arrive while the consumer waits (the wait for one,
// then the rest); every message is applied once.
func TestConsumerFetchIsBoundedInBytes(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	const bound, size = 64 << 10, 10 << 10
	if _, err := b.PublishDurable(ctx, sized("backlog", 40, size)); err != nil {
		t.Fatal(err)
	}
	l := &batchLog{batchOf: map[string]int{}}
	c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 100, FetchMaxBytes: bound}, l.handle)
	run(t, c)
	waitApplied(t, l, 40)
	settled(t, b, c.Name())
	if _, err := b.PublishDurable(ctx, sized("live", 40, size)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, l, 80)
	settled(t, b, c.Name())

	counts, bytes := l.snapshot()
	most := 0
	for i := range counts {
		if bytes[i] > bound {
			t.Errorf("batch %d: %d messages of %d bytes of data, over the %d-byte bound", i, counts[i], bytes[i], bound)
		}
		most = max(most, counts[i])
	}
	// 6 messages of 10 KiB and their headers fit in 64 KiB.
	if most < 5 {
		t.Errorf("batches of at most %d messages (%v): the bound should still batch what fits", most, counts)
	}
	if rows, distinct := appliedCounts(t, pool); rows != 80 || distinct != 80 {
		t.Fatalf("applied %d rows for %d ids, want 80 for 80", rows, distinct)
	}
}

// TestConsumerFetchTakesAMessageOverTheBound: a message larger than
// FetchMaxBytes on its own (the server answers a request it does not fit
// with 409 Message Size Exceeds MaxBytes) is still handled, in a batch of
// its own, whether it is first in the backlog, behind others, or arrives
// while the consumer waits; nothing is dead-lettered or left behind.
func TestConsumerFetchTakesAMessageOverTheBound(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	const bound = 64 << 10
	big := func(id string) []bus.Message {
		m := sized(id, 1, 200<<10)
		m[0].ID = id
		return m
	}
	for _, ms := range [][]bus.Message{big("big-first"), sized("small-a", 5, 100), big("big-behind"), sized("small-b", 5, 100)} {
		if _, err := b.PublishDurable(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	l := &batchLog{batchOf: map[string]int{}}
	c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 100, FetchMaxBytes: bound}, l.handle)
	run(t, c)
	waitApplied(t, l, 12)
	settled(t, b, c.Name())
	// Arriving while the consumer waits, with smaller ones after it.
	if _, err := b.PublishDurable(ctx, append(big("big-live"), sized("small-c", 5, 100)...)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, l, 18)
	settled(t, b, c.Name())

	counts, _ := l.snapshot()
	for _, id := range []string{"big-first", "big-behind", "big-live"} {
		l.mu.Lock()
		i, ok := l.batchOf[id]
		l.mu.Unlock()
		if !ok {
			t.Errorf("%s was not handled", id)
		} else if counts[i] != 1 {
			t.Errorf("%s came in a batch of %d, want on its own", id, counts[i])
		}
	}
	if rows, distinct := appliedCounts(t, pool); rows != 18 || distinct != 18 {
		t.Fatalf("applied %d rows for %d ids, want 18 for 18", rows, distinct)
	}
	if n := deadLetterCount(t, pool); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
}

// TestConsumerSmallMessagesBatchAsBefore: the byte bound leaves batches of
// usual messages at BatchSize, from a backlog and from a burst that
// arrives while the consumer waits.
func TestConsumerSmallMessagesBatchAsBefore(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("backlog", 500)); err != nil {
		t.Fatal(err)
	}
	l := &batchLog{batchOf: map[string]int{}}
	c := newConsumer(t, b, pool, bus.ConsumerConfig{BatchSize: 100}, l.handle)
	if got := c.Config().FetchMaxBytes; got != bus.DefaultFetchMaxBytes {
		t.Fatalf("FetchMaxBytes = %d, want the bus's default %d", got, bus.DefaultFetchMaxBytes)
	}
	run(t, c)
	waitApplied(t, l, 500)
	counts, _ := l.snapshot()
	if len(counts) != 5 {
		t.Errorf("backlog of 500 in batches %v, want 5 of 100", counts)
	}
	settled(t, b, c.Name())
	if _, err := b.PublishDurable(ctx, events("burst", 1000)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, l, 1500)
	counts, _ = l.snapshot()
	most := 0
	for _, n := range counts[5:] {
		most = max(most, n)
	}
	if most != 100 {
		t.Errorf("burst of 1000 in batches %v, want full ones of 100", counts[5:])
	}
}

// TestConsumerFetchMaxBytesFromTheBus: a consumer that sets no bound takes
// the bus's (RETAIN_NATS_FETCH_MAX_BYTES); one that sets its own keeps it.
func TestConsumerFetchMaxBytesFromTheBus(t *testing.T) {
	srv, _ := setupNATS(t)
	pool := setupPG(t)
	b := connect(t, srv.URL(), bus.Config{FetchMaxBytes: 1 << 20})
	noop := func(context.Context, pgx.Tx, []*bus.Delivery) error { return nil }
	if got := newConsumer(t, b, pool, bus.ConsumerConfig{}, noop).Config().FetchMaxBytes; got != 1<<20 {
		t.Errorf("FetchMaxBytes = %d, want the bus's %d", got, 1<<20)
	}
	if got := newConsumer(t, b, pool, bus.ConsumerConfig{FetchMaxBytes: 128 << 10}, noop).Config().FetchMaxBytes; got != 128<<10 {
		t.Errorf("FetchMaxBytes = %d, want its own %d", got, 128<<10)
	}
}

func TestFetchMaxBytesSetting(t *testing.T) {
	fromEnv := func(env map[string]string) bus.Config {
		t.Helper()
		var c bus.Config
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		c.RegisterConsumerFlags(fs)
		if err := config.Parse(fs, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Fatalf("parse %v: %v", env, err)
		}
		return c
	}
	if got := fromEnv(nil).FetchMaxBytes; got != bus.DefaultFetchMaxBytes {
		t.Errorf("default FetchMaxBytes = %d, want %d", got, bus.DefaultFetchMaxBytes)
	}
	c := fromEnv(map[string]string{"RETAIN_NATS_FETCH_MAX_BYTES": "1048576"})
	if c.FetchMaxBytes != 1<<20 {
		t.Errorf("FetchMaxBytes = %d, want 1048576", c.FetchMaxBytes)
	}
	c.FetchMaxBytes = 8
	err := c.Validate()
	if want := "RETAIN_NATS_FETCH_MAX_BYTES (-nats-fetch-max-bytes): must be at least 65536 bytes (64 KiB), such as 8388608 (8 MiB), got 8"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
	cc := bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "d", FetchMaxBytes: 1000}
	if err := cc.Validate(); err == nil || !strings.Contains(err.Error(), "FetchMaxBytes") {
		t.Errorf("ConsumerConfig.Validate() = %v, want an error naming FetchMaxBytes", err)
	}
}

// TestConsumerFetchAtMaxAckPending: with as many messages unacked as the
// consumer's MaxAckPending, the server holds a no-wait request unanswered;
// that is nothing to take now, not a failed fetch (no warning, no
// back-off), and every message is applied once the batch is.
func TestConsumerFetchAtMaxAckPending(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	if _, err := b.PublishDurable(ctx, events("held", 20)); err != nil {
		t.Fatal(err)
	}
	var first sync.Once
	l := &batchLog{batchOf: map[string]int{}}
	h := func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		// The first batch stays unacked past the no-wait's answer wait.
		first.Do(func() { time.Sleep(2500 * time.Millisecond) })
		return l.handle(ctx, tx, ds)
	}
	logs := &testenv.SyncBuffer{}
	c, err := bus.NewConsumer(b, pool, bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "held", BatchSize: 5, Concurrency: 2, MaxAckPending: 5}, h,
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitApplied(t, l, 20)
	if strings.Contains(logs.String(), "fetch failed") {
		t.Errorf("a consumer at MaxAckPending logged a failed fetch:\n%s", logs)
	}
	if rows, distinct := appliedCounts(t, pool); rows != 20 || distinct != 20 {
		t.Fatalf("applied %d rows for %d ids, want 20 for 20", rows, distinct)
	}
}

// TestConsumerKeepsToTheRequestLimits: an operator gives the running
// consumer a MaxRequestBatch and a MaxRequestMaxBytes below its batch; the
// server refuses a request over either whole, and the consumer asks within
// them instead of failing every fetch, saying so once.
func TestConsumerKeepsToTheRequestLimits(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	l := &batchLog{batchOf: map[string]int{}}
	logs := &testenv.SyncBuffer{}
	c, err := bus.NewConsumer(b, pool, bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "limited", BatchSize: 50, FetchMaxBytes: 1 << 20}, l.handle,
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	var cons jetstream.Consumer
	waitFor(t, "the consumer to be declared", func() (bool, string) {
		cons, err = b.JS.Consumer(ctx, bus.EventsStream, "limited")
		return err == nil, fmt.Sprint(err)
	})
	cfg := cons.CachedInfo().Config
	cfg.MaxRequestBatch, cfg.MaxRequestMaxBytes = 8, 128<<10
	if _, err := b.JS.UpdateConsumer(ctx, bus.EventsStream, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishDurable(ctx, sized("limited", 200, 1<<10)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, l, 200)
	counts, _ := l.snapshot()
	for i, n := range counts {
		// A batch is at most the wait for one message and a request
		// for up to 8 more.
		if n > 9 {
			t.Errorf("batch %d of %d messages, over the consumer's MaxRequestBatch of 8 (and the one waited for)", i, n)
		}
	}
	for _, want := range []string{"setting=MaxRequestBatch limit=8", "setting=MaxRequestMaxBytes limit=131072"} {
		if strings.Count(logs.String(), want) != 1 {
			t.Errorf("want %q logged once:\n%s", want, logs)
		}
	}
	if strings.Contains(logs.String(), "fetch failed") {
		t.Errorf("fetches failed:\n%s", logs)
	}
	if rows, distinct := appliedCounts(t, pool); rows != 200 || distinct != 200 {
		t.Fatalf("applied %d rows for %d ids, want 200 for 200", rows, distinct)
	}
}
