package commit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestevent "github.com/retainhq/retain/services/ingest/event"
	"github.com/retainhq/retain/services/ingest/internal/commit"
	"github.com/retainhq/retain/services/ingest/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newBus(t *testing.T) *bus.Bus {
	t.Helper()
	return testenv.Bus(t, bus.Config{URL: testenv.NATS(t).URL(), Name: "commit-test"})
}

func msgs(prefix string, n int) []bus.Message {
	out := make([]bus.Message, n)
	for i := range out {
		out[i] = bus.Message{Subject: "retain.events.t.order.placed", ID: fmt.Sprintf("t/%s-%d", prefix, i), Type: "order.placed", Data: []byte("x")}
	}
	return out
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// countingPublisher is the real bus, counting how many batches it is asked
// to publish, to observe the grouping.
type countingPublisher struct {
	*bus.Bus
	mu      sync.Mutex
	batches []int
}

func (p *countingPublisher) PublishDurable(ctx context.Context, m []bus.Message) ([]bus.PublishResult, error) {
	p.mu.Lock()
	p.batches = append(p.batches, len(m))
	p.mu.Unlock()
	return p.Bus.PublishDurable(ctx, m)
}

// history is an ingest log held in memory.
type history map[string]commit.Entry

func (h history) Known(_ context.Context, ids []string) (map[string]commit.Entry, error) {
	out := map[string]commit.Entry{}
	for _, id := range ids {
		if e, ok := h[id]; ok {
			out[id] = e
		}
	}
	return out, nil
}

func start(t *testing.T, c *commit.Committer) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return cancel
}

func TestGroupCommit(t *testing.T) {
	b := newBus(t)

	t.Run("concurrent requests share batches and each gets its own outcomes", func(t *testing.T) {
		pub := &countingPublisher{Bus: b}
		cfg := commit.DefaultConfig()
		cfg.Linger = 20 * time.Millisecond // generous, so the grouping shows on a loaded machine
		c, err := commit.New(cfg, pub, nil, nil, quiet)
		if err != nil {
			t.Fatal(err)
		}
		start(t, c)
		var wg sync.WaitGroup
		for r := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := msgs(fmt.Sprintf("g%d", r), 10)
				if r%2 == 1 {
					m[0].ID = "t/shared" // the same id in several requests
				}
				out, err := c.Submit(context.Background(), m)
				if err != nil {
					t.Error(err)
					return
				}
				if len(out) != len(m) {
					t.Errorf("request %d: %d outcomes for %d messages", r, len(out), len(m))
				}
				for i := 1; i < len(out); i++ {
					if out[i].Status != commit.Published {
						t.Errorf("request %d message %d: %v", r, i, out[i])
					}
				}
			}()
		}
		wg.Wait()
		pub.mu.Lock()
		defer pub.mu.Unlock()
		if len(pub.batches) >= 20 {
			t.Errorf("20 concurrent requests took %d batches: no grouping", len(pub.batches))
		}
	})

	t.Run("ids the ingest log knows are duplicates without publishing", func(t *testing.T) {
		pub := &countingPublisher{Bus: b}
		h := history{"t/old-1": {}}
		c, err := commit.New(commit.DefaultConfig(), pub, h, nil, quiet)
		if err != nil {
			t.Fatal(err)
		}
		start(t, c)
		out, err := c.Submit(context.Background(), msgs("old", 3))
		if err != nil {
			t.Fatal(err)
		}
		want := []commit.Status{commit.Published, commit.Duplicate, commit.Published}
		for i := range want {
			if out[i].Status != want[i] {
				t.Errorf("message %d: %v, want %v", i, out[i], want[i])
			}
		}
		if len(pub.batches) != 1 || pub.batches[0] != 2 {
			t.Errorf("published batches %v, want one of 2", pub.batches)
		}
	})

	t.Run("a full queue refuses instead of waiting", func(t *testing.T) {
		cfg := commit.DefaultConfig()
		cfg.QueueDepth = 1
		c, err := commit.New(cfg, b, nil, nil, quiet) // not running: nothing leaves the queue
		if err != nil {
			t.Fatal(err)
		}
		// The first request takes the queue's one place and keeps it, its
		// caller gone: in order, not raced from a goroutine.
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.Submit(gone, msgs("q1", 1)); !errors.Is(err, context.Canceled) {
			t.Fatalf("first request: %v, want it queued and its caller gone", err)
		}
		if _, err := c.Submit(context.Background(), msgs("q2", 1)); !errors.Is(err, commit.ErrOverloaded) {
			t.Fatalf("got %v, want ErrOverloaded", err)
		}
	})

	t.Run("requests queued at shutdown are still published", func(t *testing.T) {
		c, err := commit.New(commit.DefaultConfig(), b, nil, nil, quiet)
		if err != nil {
			t.Fatal(err)
		}
		results := make(chan error, 30)
		for r := range 30 {
			go func() {
				_, err := c.Submit(context.Background(), msgs(fmt.Sprintf("s%d", r), 20))
				results <- err
			}()
		}
		testenv.WaitFor(t, "the 30 requests queued", func() bool { return c.Queued() == 30 })
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Run starts already cancelled: it must only drain
		if err := c.Run(ctx); err != nil {
			t.Fatal(err)
		}
		for range 30 {
			if err := <-results; err != nil {
				t.Errorf("queued request failed: %v", err)
			}
		}
	})

	t.Run("bad configuration names the setting", func(t *testing.T) {
		cfg := commit.DefaultConfig()
		cfg.MaxBatch = 5000
		cfg.Publishers = 0
		_, err := commit.New(cfg, b, nil, nil, quiet)
		if err == nil || !errorsContain(err, "max batch", "publishers") {
			t.Fatalf("got %v", err)
		}
	})
}

func errorsContain(err error, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(strings.ToLower(err.Error()), p) {
			return false
		}
	}
	return true
}

// failingHistory cannot reach its database while down is set.
type failingHistory struct {
	history
	down atomic.Bool
}

func (h *failingHistory) Known(ctx context.Context, ids []string) (map[string]commit.Entry, error) {
	if h.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return h.history.Known(ctx, ids)
}

// TestLookupOutageLoggedOnce: an ingest log that stays down is reported
// when it goes and when it comes back, not once per batch (at production
// rates that is thousands of lines a second); publishing goes on, relying
// on the stream's duplicate window.
func TestLookupOutageLoggedOnce(t *testing.T) {
	b := newBus(t)
	var logs testenv.SyncBuffer
	h := &failingHistory{history: history{}}
	h.down.Store(true)
	c, err := commit.New(commit.DefaultConfig(), b, h, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	start(t, c)
	for i := range 5 {
		if _, err := c.Submit(context.Background(), msgs(fmt.Sprintf("down%d", i), 3)); err != nil {
			t.Fatal(err)
		}
	}
	h.down.Store(false)
	if _, err := c.Submit(context.Background(), msgs("up", 3)); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "look-up failed"); n != 1 {
		t.Errorf("%d failure lines for one outage of 5 batches, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "answers again") || !strings.Contains(out, "failed_lookups=5") {
		t.Errorf("no recovery line counting the 5 failed look-ups:\n%s", out)
	}
}

// slowHistory answers its look-ups no sooner than the caller gives up, as
// a database busy under a burst does.
type slowHistory struct{ history }

func (h slowHistory) Known(ctx context.Context, _ []string) (map[string]commit.Entry, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestSlowLookupRefusesRatherThanPublishingBlind: an ingest log that
// answers, but not within HistoryTimeout, fails the batch's requests for a
// retry. Publishing it without the look-up would answer a late retry
// "accepted" and accept a reused id's different event, which every
// consumer's inbox then skips: lost, though the client was told otherwise.
func TestSlowLookupRefusesRatherThanPublishingBlind(t *testing.T) {
	b := newBus(t)
	cfg := commit.DefaultConfig()
	cfg.HistoryTimeout = 50 * time.Millisecond
	c, err := commit.New(cfg, b, slowHistory{}, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	start(t, c)
	_, err = c.Submit(context.Background(), []bus.Message{event(t, "late-1", "changed")})
	if !errors.Is(err, commit.ErrUnresolved) || !errors.Is(err, commit.ErrLogUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit with a slow ingest log: %v, want ErrLogUnavailable (a retry), not the client's deadline", err)
	}
	st, err := b.JS.Stream(context.Background(), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("the stream holds %d messages: a batch was published without its look-up", info.State.Msgs)
	}
}

// lateAcks is the real bus with a NATS whose acknowledgements come as late
// as the publish may wait: it leaves nothing of the batch's PublishTimeout.
type lateAcks struct{ *bus.Bus }

func (p lateAcks) PublishDurable(ctx context.Context, m []bus.Message) ([]bus.PublishResult, error) {
	res, err := p.Bus.PublishDurable(ctx, m)
	<-ctx.Done()
	return res, err
}

// TestSlowPublishLeavesIngestReady: the look-up of a refused duplicate's
// first use, after a publish that took the whole PublishTimeout, runs on
// its own timeout, and refuses nothing: ingest stays ready, and no outage
// of the ingest log is reported while it answers.
func TestSlowPublishLeavesIngestReady(t *testing.T) {
	b := newBus(t)
	var logs testenv.SyncBuffer
	cfg := commit.DefaultConfig()
	cfg.PublishTimeout = 200 * time.Millisecond
	log := store.NewLog(testenv.MigratedPool(t, store.Migrations))
	c, err := commit.New(cfg, lateAcks{b}, log, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	start(t, c)
	for _, want := range []commit.Status{commit.Published, commit.Duplicate} {
		out, err := c.Submit(context.Background(), []bus.Message{event(t, "slow-1", "a")})
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Status != want {
			t.Fatalf("answered %+v, want status %v", out[0], want)
		}
	}
	if err := c.LogReady(); err != nil {
		t.Fatalf("ingest not ready after a slow publish: %v", err)
	}
	if strings.Contains(logs.String(), "look-up failed") {
		t.Fatalf("an ingest log outage reported while it answers:\n%s", logs.String())
	}
}

// event returns a message for id whose content is body, fingerprinted as
// the ingest use case does.
func event(t *testing.T, id, body string) bus.Message {
	t.Helper()
	ev := &eventsv1.Event{Id: id, Type: "ticket.opened", Source: body, Payload: &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{CustomerId: "c", TicketId: id}}}
	data, fp, err := ingestevent.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{Subject: "retain.events.t.ticket.opened", ID: "t/" + id, Type: "ticket.opened", Data: data,
		Header: nats.Header{ingestevent.HeaderFingerprint: []string{fp}}}
}

// TestConflictsInsideTheStreamWindow: without the ingest log (its row not
// written yet, or the log down), a duplicate JetStream refuses is checked
// against the original stored on the stream.
func TestConflictsInsideTheStreamWindow(t *testing.T) {
	b := newBus(t)
	originals := &commit.StreamOriginals{Bus: b, Stream: bus.EventsStream}
	c, err := commit.New(commit.DefaultConfig(), b, nil, originals, quiet)
	if err != nil {
		t.Fatal(err)
	}
	start(t, c)
	ctx := context.Background()
	submit := func(msgs ...bus.Message) []commit.Outcome {
		t.Helper()
		out, err := c.Submit(ctx, msgs)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	if out := submit(event(t, "w-1", "a")); out[0].Status != commit.Published {
		t.Fatalf("first send: %+v", out)
	}
	before := time.Now()
	out := submit(event(t, "w-1", "a"), event(t, "w-1", "b"), event(t, "w-2", "a"), event(t, "w-2", "b"), event(t, "w-2", "a"))
	want := []commit.Status{commit.Duplicate, commit.Conflict, commit.Published, commit.Conflict, commit.Duplicate}
	for i := range want {
		if out[i].Status != want[i] {
			t.Errorf("message %d: %+v, want status %v", i, out[i], want[i])
		}
	}
	if o := out[1].Original; o.Type != "ticket.opened" || o.AcceptedAt.IsZero() || o.AcceptedAt.After(before) {
		t.Errorf("conflict's original %+v: want the type and the time the stream stored w-1", o)
	}

	st, err := b.JS.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want w-1 and w-2 once each", info.State.Msgs)
	}

	t.Run("an original stored without a fingerprint is fingerprinted from its data", func(t *testing.T) {
		legacy := event(t, "w-legacy", "a")
		legacy.Header = nil
		if _, err := b.Publish(ctx, legacy); err != nil {
			t.Fatal(err)
		}
		out := submit(event(t, "w-legacy", "a"), event(t, "w-legacy", "b"))
		if out[0].Status != commit.Duplicate || out[1].Status != commit.Conflict {
			t.Fatalf("answered %+v, want duplicate then conflict", out)
		}
	})

	t.Run("an original gone from the stream is a duplicate of unknown content", func(t *testing.T) {
		if out := submit(event(t, "w-deleted", "a")); out[0].Status != commit.Published {
			t.Fatalf("first send: %+v", out)
		}
		last, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteMsg(ctx, last.State.LastSeq); err != nil {
			t.Fatal(err)
		}
		if out := submit(event(t, "w-deleted", "b")); out[0].Status != commit.Duplicate {
			t.Fatalf("answered %+v, want duplicate: the original's content is unknown", out)
		}
	})

	t.Run("two committers racing with one id: one publishes, the other conflicts", func(t *testing.T) {
		other, err := commit.New(commit.DefaultConfig(), b, nil, originals, quiet)
		if err != nil {
			t.Fatal(err)
		}
		start(t, other)
		for i := range 10 {
			id := fmt.Sprintf("race-%d", i)
			var wg sync.WaitGroup
			outs := make([][]commit.Outcome, 2)
			for k, cc := range []*commit.Committer{c, other} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o, err := cc.Submit(ctx, []bus.Message{event(t, id, fmt.Sprint(k))})
					if err != nil {
						t.Error(err)
						return
					}
					outs[k] = o
				}()
			}
			wg.Wait()
			if outs[0] == nil || outs[1] == nil {
				return
			}
			got := []commit.Status{outs[0][0].Status, outs[1][0].Status}
			if !(got[0] == commit.Published && got[1] == commit.Conflict) && !(got[0] == commit.Conflict && got[1] == commit.Published) {
				t.Errorf("%s: %v, want one published and one conflict", id, got)
			}
		}
	})
}
