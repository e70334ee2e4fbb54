package simulate

import (
	"io"
	"testing"
	"time"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// BenchmarkGenerate reports the generation rate (events/s wall clock, and
// events per CPU-second) of the NDJSON writer, next to the raw baselines
// measured in the same run: the generator alone (no encoding), the protobuf
// stream (Events), and Events encoded with protojson, the reference the NDJSON
// writer replaces. The shop has 20,000 customers (80k events); the rate at a
// million customers is lower (cache misses on the larger active set).
func BenchmarkGenerate(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Customers = 20_000
	shop, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, shop *Shop, stream func() (int, error)) {
		b.Helper()
		var total int
		start, cpu := time.Now(), processCPU()
		for b.Loop() {
			n, err := stream()
			if err != nil {
				b.Fatal(err)
			}
			total += n
		}
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
		// CPU time includes the GC's background work, so this is the rate one
		// core sustains, whatever else the machine is running.
		if used := processCPU() - cpu; used > 0 {
			b.ReportMetric(float64(total)/used.Seconds(), "events/cpu-s")
		}
		b.ReportMetric(float64(shop.Stats().Events), "events/op")
	}
	b.Run("generate-only", func(b *testing.B) {
		run(b, shop, func() (int, error) {
			g := shop.newGenerator()
			n := 0
			for g.next() {
				n++
			}
			return n, nil
		})
	})
	b.Run("ndjson", func(b *testing.B) {
		run(b, shop, func() (int, error) { return WriteNDJSON(io.Discard, shop) })
	})
	b.Run("ndjson-high-volume", func(b *testing.B) {
		// Ten orders per customer, as in the million-customer load test.
		hv, err := New(HighVolumeConfig(50_000))
		if err != nil {
			b.Fatal(err)
		}
		run(b, hv, func() (int, error) { return WriteNDJSON(io.Discard, hv) })
	})
	b.Run("proto-events", func(b *testing.B) {
		run(b, shop, func() (int, error) {
			n := 0
			err := shop.Events(func(*eventsv1.Event) error { n++; return nil })
			return n, err
		})
	})
	b.Run("protojson-baseline", func(b *testing.B) {
		opts := protojson.MarshalOptions{UseProtoNames: true}
		var buf []byte
		run(b, shop, func() (int, error) {
			n := 0
			err := shop.Events(func(ev *eventsv1.Event) error {
				var err error
				buf, err = opts.MarshalAppend(buf[:0], ev)
				n++
				return err
			})
			return n, err
		})
	})
}
