package commit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

// BenchmarkGroupCommit drives the committer on a real JetStream server with
// fsync on every write: 32 concurrent requests of 10 messages, the case
// group commit exists for. It reports messages/s next to the raw rate of one
// atomic batch per request measured in the same run.
func BenchmarkGroupCommit(b *testing.B) {
	bs := testenv.Bus(b, bus.Config{URL: testenv.NATS(b).URL(), Name: "bench"})
	ctx := context.Background()
	var seq atomic.Int64
	req := func(n int) []bus.Message {
		msgs := make([]bus.Message, n)
		for i := range msgs {
			msgs[i] = bus.Message{Subject: "retain.events.bench.order.placed", ID: "bench/" + strconv.FormatInt(seq.Add(1), 10), Type: "order.placed", Data: make([]byte, 300)}
		}
		return msgs
	}
	const clients, perReq = 32, 10
	run := func(submit func([]bus.Message) error) float64 {
		var wg sync.WaitGroup
		var sent atomic.Int64
		start := time.Now()
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < 3*time.Second {
					if err := submit(req(perReq)); err != nil {
						b.Error(err)
						return
					}
					sent.Add(perReq)
				}
			}()
		}
		wg.Wait()
		return float64(sent.Load()) / time.Since(start).Seconds()
	}
	for range b.N {
		raw := run(func(m []bus.Message) error { return bs.PublishAtomic(ctx, m) })
		c, err := commit.New(commit.DefaultConfig(), bs, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx) }()
		grouped := run(func(m []bus.Message) error { _, err := c.Submit(ctx, m); return err })
		cancel()
		<-done
		b.ReportMetric(raw, "one-batch-per-request-msgs/s")
		b.ReportMetric(grouped, "group-commit-msgs/s")
		fmt.Printf("32 x 10-message requests: one atomic batch each %.0f msgs/s, group commit %.0f msgs/s (%.1fx)\n", raw, grouped, grouped/raw)
	}
}
