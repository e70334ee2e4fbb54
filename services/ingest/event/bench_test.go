package event

import (
	"testing"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func BenchmarkNormalizeValidate(b *testing.B) {
	events := []*eventsv1.Event{validCustomerUpdated(), validOrderPlaced(), validOrderRefunded(), validTicketOpened(), validTicketResolved(), validSurveyAnswered()}
	newID := func() string { return "id" }
	b.Run("NormalizeValidate", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			ev := events[i%len(events)]
			Normalize(ev, "acme", testNow, newID)
			if errs := Validate(ev, testNow); len(errs) != 0 {
				b.Fatal(errs)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	// Baseline: marshalling the same event to protobuf, which ingest does
	// anyway before publishing it.
	b.Run("baseline-proto.Marshal", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := proto.Marshal(events[i%len(events)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	// What ingest does instead since fingerprints: the deterministic
	// encoding, its SHA-256 and the stamps appended.
	b.Run("Encode", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, _, err := Encode(events[i%len(events)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
