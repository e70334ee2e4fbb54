package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

func TestPublish(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, b := setupNATS(t, bus.WithTracerProvider(tp))
	ctx := testCtx(t)

	t.Run("stores the message with Retain headers and the caller's trace", func(t *testing.T) {
		ctx, parent := tp.Tracer("test").Start(ctx, "request")
		m := events("single", 1)[0]
		ack, err := b.Publish(ctx, m)
		parent.End()
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if ack.Duplicate || ack.Stream != bus.EventsStream {
			t.Fatalf("unexpected ack %+v", ack)
		}
		s, _ := b.JS.Stream(ctx, bus.EventsStream)
		raw, err := s.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		for k, want := range map[string]string{
			"Nats-Msg-Id":       m.ID,
			"Retain-Event-Type": "order.placed",
			"Content-Type":      "application/protobuf",
		} {
			if got := raw.Header.Get(k); got != want {
				t.Errorf("header %s = %q, want %q", k, got, want)
			}
		}
		tp := raw.Header.Get("traceparent")
		if !strings.Contains(tp, parent.SpanContext().TraceID().String()) {
			t.Errorf("traceparent %q does not carry trace %s", tp, parent.SpanContext().TraceID())
		}
		if string(raw.Data) != string(m.Data) {
			t.Errorf("data %q, want %q", raw.Data, m.Data)
		}
	})
	t.Run("the same id again is reported as a duplicate", func(t *testing.T) {
		ack, err := b.Publish(ctx, events("single", 1)[0])
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if !ack.Duplicate {
			t.Fatal("second publish of the same id not reported as duplicate")
		}
	})
	t.Run("headers of a consumed message can be published again", func(t *testing.T) {
		// Stored messages of an atomic batch carry its Nats-Batch-* headers.
		if err := b.PublishAtomic(ctx, events("orig", 2)); err != nil {
			t.Fatal(err)
		}
		s, _ := b.JS.Stream(ctx, bus.EventsStream)
		raw, err := s.GetLastMsgForSubject(ctx, bus.EventSubject("acme", "order.placed"))
		if err != nil || raw.Header.Get("Nats-Batch-Id") == "" {
			t.Fatalf("setup: last message %+v, %v; want batch headers", raw, err)
		}
		fwd := bus.Message{Subject: raw.Subject, ID: "forwarded", Type: "order.placed", Data: raw.Data, Header: raw.Header}
		ack, err := b.Publish(ctx, fwd)
		if err != nil || ack.Duplicate {
			t.Fatalf("publish with copied headers: %+v, %v", ack, err)
		}
		if _, err := b.PublishDurable(ctx, []bus.Message{fwd, {Subject: raw.Subject, ID: "forwarded-2", Header: raw.Header}}); err != nil {
			t.Fatalf("publish durable with copied headers: %v", err)
		}
	})
	t.Run("a message without id is refused", func(t *testing.T) {
		m := events("noid", 1)[0]
		m.ID = ""
		if _, err := b.Publish(ctx, m); err == nil {
			t.Fatal("published a message without an id")
		}
	})
}

func TestPublishAtomic(t *testing.T) {
	_, b := setupNATS(t)
	ctx := testCtx(t)

	t.Run("stores the whole batch", func(t *testing.T) {
		if err := b.PublishAtomic(ctx, events("atomic", 100)); err != nil {
			t.Fatalf("publish atomic: %v", err)
		}
		if n := streamMsgs(t, b, bus.EventsStream); n != 100 {
			t.Fatalf("stream holds %d messages, want 100", n)
		}
	})
	t.Run("a batch holding a stored id is rejected whole", func(t *testing.T) {
		batch := append(events("fresh", 10), events("atomic", 1)...)
		err := b.PublishAtomic(ctx, batch)
		if !errors.Is(err, bus.ErrBatchDuplicate) {
			t.Fatalf("got %v, want ErrBatchDuplicate", err)
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10201 {
			t.Fatalf("got %v, want JetStream err_code 10201", err)
		}
		if n := streamMsgs(t, b, bus.EventsStream); n != 100 {
			t.Fatalf("stream holds %d messages, want 100: part of a rejected batch was stored", n)
		}
	})
	t.Run("an id twice in one batch is rejected", func(t *testing.T) {
		batch := append(events("twice", 3), events("twice", 1)...)
		if err := b.PublishAtomic(ctx, batch); !errors.Is(err, bus.ErrBatchDuplicate) {
			t.Fatalf("got %v, want ErrBatchDuplicate", err)
		}
	})
	t.Run("the server maximum of 1000 messages is accepted", func(t *testing.T) {
		if err := b.PublishAtomic(ctx, events("max", 1000)); err != nil {
			t.Fatalf("publish 1000: %v", err)
		}
	})
	t.Run("more than the maximum is refused before sending", func(t *testing.T) {
		if err := b.PublishAtomic(ctx, events("toobig", 1001)); err == nil {
			t.Fatal("published a batch above the server limit")
		}
	})
	t.Run("a batch spanning two streams is refused", func(t *testing.T) {
		batch := events("span", 2)
		batch[1].Subject = bus.SignalSubject("acme", "churn.risk_changed")
		if err := b.PublishAtomic(ctx, batch); err == nil || !strings.Contains(err.Error(), "spans streams") {
			t.Fatalf("got %v, want a spans-streams error", err)
		}
	})
}

func TestPublishDurable(t *testing.T) {
	tests := []struct {
		name string
		// stored are published before; batch is then published durably.
		stored       []string
		batch        []string
		maxBatchSize int
	}{
		{name: "all new", batch: ids("a", 0, 300)},
		{name: "all duplicates", stored: ids("a", 0, 300), batch: ids("a", 0, 300)},
		{name: "one duplicate among many", stored: ids("a", 150, 151), batch: ids("a", 0, 300)},
		{name: "scattered duplicates", stored: []string{"a-3", "a-77", "a-140", "a-299"}, batch: ids("a", 0, 300)},
		{name: "dense duplicates", stored: ids("a", 0, 200), batch: ids("a", 0, 300)},
		{name: "repeated id within the call", batch: []string{"a-1", "a-2", "a-1", "a-3", "a-2"}},
		{name: "repeated stored id within the call", stored: []string{"a-2"}, batch: []string{"a-1", "a-2", "a-1", "a-3", "a-2"}},
		{name: "split into several batches", stored: ids("a", 10, 20), batch: ids("a", 0, 95), maxBatchSize: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := setupNATS(t)
			b := connect(t, srv.URL(), bus.Config{MaxBatchSize: tt.maxBatchSize})
			if err := b.EnsureStreams(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			storedSeq := map[string]uint64{}
			for _, id := range tt.stored {
				ack, err := b.Publish(ctx, msg(id))
				if err != nil {
					t.Fatal(err)
				}
				storedSeq[id] = ack.Sequence
			}
			batch := make([]bus.Message, len(tt.batch))
			for i, id := range tt.batch {
				batch[i] = msg(id)
			}
			out, err := b.PublishDurable(ctx, batch)
			if err != nil {
				t.Fatalf("publish durable: %v", err)
			}
			seen := map[string]bool{}
			for i, id := range tt.batch {
				// A duplicate of a stored message names its sequence; a
				// repeat within the call has none to name and says it is
				// a repeat, whose first message's outcome is the id's.
				want := bus.PublishResult{Outcome: bus.Published}
				if seen[id] {
					want = bus.PublishResult{Outcome: bus.Duplicate, Repeat: true}
				} else if seq, ok := storedSeq[id]; ok {
					want = bus.PublishResult{Outcome: bus.Duplicate, Original: seq}
				}
				seen[id] = true
				if out[i] != want {
					t.Errorf("message %d (%s): %+v, want %+v", i, id, out[i], want)
				}
			}
			for id := range storedSeq {
				seen[id] = true
			}
			if n := streamMsgs(t, b, bus.EventsStream); n != uint64(len(seen)) {
				t.Fatalf("stream holds %d messages, want %d distinct ids", n, len(seen))
			}
		})
	}
}

func TestPublishDurableGroupsByStream(t *testing.T) {
	_, b := setupNATS(t)
	ctx := testCtx(t)
	batch := events("e", 5)
	for i := range 5 {
		batch = append(batch, bus.Message{Subject: bus.SignalSubject("acme", "churn.risk_changed"), ID: fmt.Sprintf("s-%d", i), Type: "churn.risk_changed"})
	}
	out, err := b.PublishDurable(ctx, batch)
	if err != nil {
		t.Fatalf("publish durable: %v", err)
	}
	if slices.ContainsFunc(out, func(o bus.PublishResult) bool { return o.Outcome != bus.Published }) {
		t.Fatalf("outcomes %v, want all published", out)
	}
	if e, s := streamMsgs(t, b, bus.EventsStream), streamMsgs(t, b, bus.SignalsStream); e != 5 || s != 5 {
		t.Fatalf("events %d, signals %d; want 5 and 5", e, s)
	}
}

// TestPublishSurvivesRestart restarts the server while a publisher sends
// atomic batches in a loop, retrying each batch until it is acked. Every
// acked message must be in the stream afterwards and, thanks to msg ids,
// none twice.
func TestPublishSurvivesRestart(t *testing.T) {
	srv, b := setupNATS(t)
	ctx := testCtx(t)
	const batches, size = 30, 50

	var acked atomic.Int64
	restart := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := range batches {
			batch := events(fmt.Sprintf("r%d", i), size)
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := b.PublishDurable(pctx, batch)
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					done <- fmt.Errorf("batch %d never acked: %w", i, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			acked.Add(size)
			if i == batches/3 {
				close(restart)
			}
		}
		done <- nil
	}()

	<-restart
	before := acked.Load()
	srv.Restart(t)
	// What was acked before the restart is on disk, whatever happens next.
	if n := streamMsgs(t, b, bus.EventsStream); n < uint64(before) {
		t.Fatalf("after restart the stream holds %d messages, but %d were acked before it", n, before)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, b, bus.EventsStream); n != batches*size {
		t.Fatalf("stream holds %d messages, want exactly %d (no loss, no duplicates)", n, batches*size)
	}
}

func ids(prefix string, from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

func msg(id string) bus.Message {
	return bus.Message{Subject: bus.EventSubject("acme", "order.placed"), ID: id, Type: "order.placed", Data: []byte(id)}
}

// TestPublishRefusedWhileDisconnected: with the server gone, a publish is
// refused at once with ErrNotConnected (not after PublishTimeout, with the
// messages buffered for a reconnect the caller was told failed), and
// publishing works again once the connection is back.
func TestPublishRefusedWhileDisconnected(t *testing.T) {
	srv, b := setupNATS(t)
	ctx := testCtx(t)
	srv.Shutdown()
	waitFor(t, "the connection to notice", func() (bool, string) {
		s := b.NC.Status()
		return s == nats.RECONNECTING || s == nats.DISCONNECTED, s.String()
	})
	if _, err := b.PublishDurable(ctx, events("down", 3)); !errors.Is(err, bus.ErrNotConnected) {
		t.Fatalf("PublishDurable while disconnected: %v, want ErrNotConnected", err)
	}
	if _, err := b.Publish(ctx, msg("down-single")); !errors.Is(err, bus.ErrNotConnected) {
		t.Fatalf("Publish while disconnected: %v, want ErrNotConnected", err)
	}
	srv.Restart(t)
	waitFor(t, "the connection to come back", func() (bool, string) {
		return b.NC.IsConnected(), b.NC.Status().String()
	})
	if _, err := b.PublishDurable(ctx, events("up", 3)); err != nil {
		t.Fatalf("PublishDurable after the reconnect: %v", err)
	}
	// Nothing refused was stored behind the caller's back.
	if n := streamMsgs(t, b, bus.EventsStream); n != 3 {
		t.Fatalf("stream holds %d messages, want the 3 published after the reconnect", n)
	}
}

// TestTransient: the failures a retry of the same publish can get past,
// however wrapped, and those it cannot.
func TestTransient(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("publish batch: %w", err) }
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{wrap(bus.ErrNotConnected), true},
		{wrap(bus.ErrBatchRetryable), true},
		{wrap(nats.ErrTimeout), true},
		{wrap(nats.ErrNoResponders), true},
		{wrap(jetstream.ErrNoStreamResponse), true},
		{wrap(&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}), true},
		{wrap(&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "maximum messages exceeded"}), false},
		{wrap(bus.ErrBatchDuplicate), false},
		{wrap(bus.ErrStorageFull), true},
		{errors.New("bus: message on retain.events.x has no ID"), false},
	} {
		if got := bus.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}

// TestPublishWhenStorageIsFull: JetStream refusing to store for lack of
// room is ErrStorageFull, which a retry can get past once room is made,
// whether the refusal is an answer or a batch ack that never comes; and
// publishing the same messages again stores none of them twice.
func TestPublishWhenStorageIsFull(t *testing.T) {
	srv, b := setupNATS(t)
	ctx := testCtx(t)
	if err := b.PublishAtomic(ctx, events("before", 4)); err != nil {
		t.Fatal(err)
	}
	info, err := b.JS.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perMsg := int64(info.Store) / 4

	t.Run("an account with room for part of a batch", func(t *testing.T) {
		// Room for 3 of the 10: the server stores those and never acks.
		srv.LimitStore(t, int64(info.Store)+3*perMsg+perMsg/2)
		t.Cleanup(func() { srv.LimitStore(t, -1) })
		batch := events("part", 10)
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.PublishDurable(short, batch)
		if !errors.Is(err, bus.ErrStorageFull) || !bus.Transient(err) {
			t.Fatalf("got %v, want ErrStorageFull, transient", err)
		}
		stored := streamMsgs(t, b, bus.EventsStream) - 4
		if stored == 0 || stored >= 10 {
			t.Fatalf("%d of the batch stored; want some (the server stores up to its limit)", stored)
		}

		// Full now: refused with an answer, at once.
		start := time.Now()
		if _, err := b.PublishDurable(ctx, batch); !errors.Is(err, bus.ErrStorageFull) || !bus.Transient(err) {
			t.Fatalf("again: got %v, want ErrStorageFull, transient", err)
		} else if !strings.Contains(err.Error(), "resource limits exceeded for account") {
			t.Errorf("again: %v does not carry the server's reason", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refused after %s: want the server's answer, not a timeout", d)
		}

		srv.LimitStore(t, -1)
		out, err := b.PublishDurable(ctx, batch)
		if err != nil {
			t.Fatalf("with room again: %v", err)
		}
		var dups uint64
		for i, o := range out {
			switch {
			case o.Outcome == bus.Duplicate && o.Original > 0:
				dups++
			case o.Outcome != bus.Published:
				t.Errorf("message %d: %+v", i, o)
			}
		}
		if dups != stored {
			t.Errorf("%d answered duplicate, want the %d stored before", dups, stored)
		}
		if n := streamMsgs(t, b, bus.EventsStream); n != 14 {
			t.Fatalf("stream holds %d messages, want 14: each id once", n)
		}
	})

	t.Run("a stream at its max_msgs with discard new", func(t *testing.T) {
		st, err := b.JS.Stream(ctx, bus.EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		cfg.Discard, cfg.MaxMsgs = jetstream.DiscardNew, 16
		if _, err := b.JS.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		// An atomic batch over the limit is refused whole.
		if _, err := b.PublishDurable(ctx, events("over", 3)); !errors.Is(err, bus.ErrStorageFull) || !bus.Transient(err) {
			t.Fatalf("batch: got %v, want ErrStorageFull, transient", err)
		}
		if n := streamMsgs(t, b, bus.EventsStream); n != 14 {
			t.Fatalf("stream holds %d messages, want 14: part of a refused batch was stored", n)
		}
		for _, id := range []string{"single-1", "single-2"} {
			if _, err := b.Publish(ctx, msg(id)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.Publish(ctx, msg("single-3")); !errors.Is(err, bus.ErrStorageFull) || !strings.Contains(err.Error(), "maximum messages exceeded") {
			t.Fatalf("single: got %v, want ErrStorageFull naming the stream's limit", err)
		}
	})
}

// TestPublishWhenTierStorageIsFull: with tiered JetStream limits (R1, R3:
// operator mode, Synadia Cloud) the account info's flat limits are all
// zero and the limit that counts is the tier of the stream's replicas. An
// ack that does not come while that tier has room is not storage full;
// one the tier is too short for still is, whatever other tiers hold.
func TestPublishWhenTierStorageIsFull(t *testing.T) {
	srv := testenv.NATS(t)
	limitTiers := func(t *testing.T, r1, r3 int64) {
		t.Helper()
		tier := func(maxStore int64) server.JetStreamAccountLimits {
			return server.JetStreamAccountLimits{MaxMemory: -1, MaxStore: maxStore, MaxStreams: -1, MaxConsumers: -1}
		}
		err := srv.Server().GlobalAccount().UpdateJetStreamLimits(map[string]server.JetStreamAccountLimits{
			"R1": tier(r1), "R3": tier(r3)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Before the streams exist: a stream is bound to its tier when created.
	limitTiers(t, 64<<20, 64<<20)
	b := connect(t, srv.URL(), bus.Config{})
	ctx := testCtx(t)
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishAtomic(ctx, events("before", 4)); err != nil {
		t.Fatal(err)
	}
	info, err := b.JS.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r1 := info.Tiers["R1"]
	if info.Limits.MaxStore != 0 || r1.Limits.MaxStore != 64<<20 || r1.Store == 0 {
		t.Fatalf("setup: account limits %+v, R1 tier %+v; want tiered limits only", info.Limits, r1)
	}
	perMsg := int64(r1.Store) / 4

	t.Run("an ack not in time with room in the tier is a timeout", func(t *testing.T) {
		// The R3 tier has no room, but the streams are R1.
		limitTiers(t, 64<<20, 1)
		late, cancel := context.WithDeadline(ctx, time.Now())
		defer cancel()
		err := b.PublishAtomic(late, events("late", 10))
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, bus.ErrStorageFull) {
			t.Fatalf("got %v, want a plain timeout, not ErrStorageFull", err)
		}
	})

	t.Run("a tier with room for part of a batch is storage full", func(t *testing.T) {
		limitTiers(t, int64(r1.Store)+3*perMsg+perMsg/2, 64<<20)
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.PublishDurable(short, events("part", 10))
		if !errors.Is(err, bus.ErrStorageFull) || !bus.Transient(err) {
			t.Fatalf("got %v, want ErrStorageFull, transient", err)
		}
		if stored := streamMsgs(t, b, bus.EventsStream) - 4; stored == 0 || stored >= 10 {
			t.Fatalf("%d of the batch stored; want some (the server stores up to the tier's limit)", stored)
		}
	})
}

// TestPublishWhenServerStorageIsFull: a server's own max_file_store, with
// no account limit, stops an atomic batch's commit like an account limit
// does, but the account info does not show it: the missing ack stays a
// timeout (decision 0030), not a storage full guessed from no limit.
func TestPublishWhenServerStorageIsFull(t *testing.T) {
	srv := runServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), JetStreamMaxStore: 2000, SyncAlways: true})
	b := connect(t, "nats://"+srv.Addr().String(), bus.Config{})
	ctx := testCtx(t)
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := b.PublishAtomic(short, events("over", 20))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, bus.ErrStorageFull) {
		t.Fatalf("got %v, want a plain timeout, not ErrStorageFull", err)
	}
	if stored := streamMsgs(t, b, bus.EventsStream); stored == 0 || stored >= 20 {
		t.Fatalf("%d of the batch stored; want some (the server stores up to its limit)", stored)
	}
}
