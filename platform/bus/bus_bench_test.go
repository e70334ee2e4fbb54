package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// Run with the Postgres cluster durable too, so commits include their fsync:
//
//	RETAIN_TEST_PG_DURABLE=1 go test -run '^$' -bench . -benchtime 20000x ./bus/
//
// NATS always runs with sync_interval always (testenv), as in production.

var benchSeq atomic.Int64

// benchMessages returns n ~300 B messages with ids never used before.
func benchMessages(subject string, n int) []bus.Message {
	payload := make([]byte, 300)
	out := make([]bus.Message, n)
	for i := range out {
		out[i] = bus.Message{Subject: subject, ID: fmt.Sprintf("bench-%d", benchSeq.Add(1)), Type: "order.placed", Data: payload}
	}
	return out
}

// BenchmarkAtomicPublish measures durable publishing (fsync on every write)
// in atomic batches of 500, 100 and 50 (one op = one message), each
// reported next to the raw rate
// of synchronous single publishes (one fsync each) measured in the same run.
func BenchmarkAtomicPublish(b *testing.B) {
	_, bb := setupNATS(b)
	ctx := context.Background()
	subject := bus.EventSubject("bench", "order.placed")

	// Raw limit: one message, one fsync, one round trip.
	single := benchMessages(subject, 2000)
	start := time.Now()
	for _, m := range single {
		if _, err := bb.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	rawRate := float64(len(single)) / time.Since(start).Seconds()

	for _, size := range []int{500, 100, 50} {
		// One op is one message, so -benchtime Nx means N messages.
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			msgs := benchMessages(subject, b.N)
			b.ResetTimer()
			for len(msgs) > 0 {
				k := min(len(msgs), size)
				if err := bb.PublishAtomic(ctx, msgs[:k]); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[k:]
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(rawRate, "raw-single-fsync-msgs/s")
		})
	}
}

// BenchmarkConsumerRunner measures events/s through fetch -> one Postgres
// transaction per batch (inbox + multi-row insert) -> ack, next to a raw
// fetch -> ack loop over the same kind of messages in the same run. One op
// is one event.
func BenchmarkConsumerRunner(b *testing.B) {
	_, bb := setupNATS(b)
	pool := setupPG(b)
	ctx := context.Background()
	var round atomic.Int64

	// publish puts n fresh messages on a subject of their own and returns it.
	publish := func(b *testing.B, n int) string {
		subject := bus.EventSubject(fmt.Sprintf("bench%d", round.Add(1)), "order.placed")
		msgs := benchMessages(subject, n)
		for len(msgs) > 0 {
			k := min(len(msgs), 1000)
			if err := bb.PublishAtomic(ctx, msgs[:k]); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[k:]
		}
		return subject
	}

	var rawRate float64
	b.Run("raw-fetch-ack", func(b *testing.B) {
		subject := publish(b, b.N)
		cons, err := bb.JS.CreateOrUpdateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("raw%d", round.Load()), AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: subject, MaxAckPending: 10_000,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for got := 0; got < b.N; {
			batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				b.Fatal(err)
			}
			for m := range batch.Messages() {
				if err := m.Ack(); err != nil {
					b.Fatal(err)
				}
				got++
			}
		}
		b.StopTimer()
		rawRate = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rawRate, "msgs/s")
	})

	// exclusive: the lease's fence (a key-share lock on its row) in every batch.
	for _, tc := range []struct {
		batch, workers int
		exclusive      bool
	}{{500, 1, false}, {500, 2, false}, {500, 2, true}, {100, 2, false}, {100, 2, true}} {
		name := fmt.Sprintf("runner/batch=%d/workers=%d", tc.batch, tc.workers)
		if tc.exclusive {
			name += "/exclusive"
		}
		b.Run(name, func(b *testing.B) {
			subject := publish(b, b.N)
			testenv.TimeConsumer(b, bb, pool, bus.ConsumerConfig{
				Stream:         bus.EventsStream,
				Durable:        fmt.Sprintf("runner%d", round.Load()),
				FilterSubjects: []string{subject},
				BatchSize:      tc.batch,
				Concurrency:    tc.workers,
				Exclusive:      tc.exclusive,
			}, applyAll)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(rawRate, "raw-fetch-ack-msgs/s")
		})
	}
}
