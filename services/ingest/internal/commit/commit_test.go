package commit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newBus(t *testing.T) *bus.Bus {
	t.Helper()
	ns := testenv.NATS(t)
	b, err := bus.Connect(context.Background(), bus.Config{URL: ns.URL(), Name: "commit-test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(context.Background(), bus.DefaultStreams(bus.StreamOptions{})...); err != nil {
		t.Fatal(err)
	}
	return b
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

func (p *countingPublisher) PublishDurable(ctx context.Context, m []bus.Message) ([]bus.PublishOutcome, error) {
	p.mu.Lock()
	p.batches = append(p.batches, len(m))
	p.mu.Unlock()
	return p.Bus.PublishDurable(ctx, m)
}

// history is an ingest log held in memory.
type history map[string]bool

func (h history) Known(_ context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, id := range ids {
		if h[id] {
			out[id] = true
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
		c, err := commit.New(cfg, pub, nil, quiet)
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
					if out[i] != bus.Published {
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
		h := history{"t/old-1": true}
		c, err := commit.New(commit.DefaultConfig(), pub, h, quiet)
		if err != nil {
			t.Fatal(err)
		}
		start(t, c)
		out, err := c.Submit(context.Background(), msgs("old", 3))
		if err != nil {
			t.Fatal(err)
		}
		want := []bus.PublishOutcome{bus.Published, bus.Duplicate, bus.Published}
		for i := range want {
			if out[i] != want[i] {
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
		c, err := commit.New(cfg, b, nil, quiet) // not running: nothing leaves the queue
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		go func() { _, _ = c.Submit(ctx, msgs("q1", 1)) }()
		time.Sleep(10 * time.Millisecond)
		if _, err := c.Submit(context.Background(), msgs("q2", 1)); !errors.Is(err, commit.ErrOverloaded) {
			t.Fatalf("got %v, want ErrOverloaded", err)
		}
	})

	t.Run("requests queued at shutdown are still published", func(t *testing.T) {
		c, err := commit.New(commit.DefaultConfig(), b, nil, quiet)
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
		time.Sleep(20 * time.Millisecond) // let them queue
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
		_, err := commit.New(cfg, b, nil, quiet)
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

// failingHistory fails its look-ups while down is set.
type failingHistory struct {
	history
	down atomic.Bool
}

func (h *failingHistory) Known(ctx context.Context, ids []string) (map[string]bool, error) {
	if h.down.Load() {
		return nil, errors.New("failed to connect to the ingest database")
	}
	return h.history.Known(ctx, ids)
}

// TestLookupOutageLoggedOnce: an ingest log that stays down is reported
// when it goes and when it comes back, not once per batch (at production
// rates that is thousands of lines a second); publishing goes on.
func TestLookupOutageLoggedOnce(t *testing.T) {
	b := newBus(t)
	var logs testenv.SyncBuffer
	h := &failingHistory{history: history{}}
	h.down.Store(true)
	c, err := commit.New(commit.DefaultConfig(), b, h, slog.New(slog.NewTextHandler(&logs, nil)))
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
