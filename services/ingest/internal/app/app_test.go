package app_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/ingest/internal/app"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

// TestRefusedEventsAreCounted: events answered 429 for a retry (ingest
// shedding load) are counted as refused, so load shedding shows in the
// same metric as what was accepted.
func TestRefusedEventsAreCounted(t *testing.T) {
	cfg := commit.DefaultConfig()
	cfg.QueueDepth = 1
	// Not running: the first request waits in the queue, the next finds it
	// full. Nothing is published, so no bus is needed.
	c, err := commit.New(cfg, nil, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	in, err := app.New(c, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	events := func(ids ...string) []*eventsv1.Event {
		var out []*eventsv1.Event
		for _, id := range ids {
			out = append(out, &eventsv1.Event{Id: id, OccurredAt: timestamppb.Now(), Payload: &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{CustomerId: "c", TicketId: id}}})
		}
		return out
	}
	waiting, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go func() { _, _ = in.Publish(waiting, "shop", events("w-1"), nil) }()
	var refused error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, refused = in.Publish(context.Background(), "shop", events("r-1", "r-2", "r-3"), nil); errors.Is(refused, commit.ErrOverloaded) {
			break
		}
	}
	if !errors.Is(refused, commit.ErrOverloaded) {
		t.Fatalf("second request: %v, want ErrOverloaded", refused)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "retain.ingest.events" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if r, _ := dp.Attributes.Value(attribute.Key("result")); r.AsString() == "refused" {
					got += dp.Value
				}
			}
		}
	}
	if got != 3 {
		t.Fatalf("refused events counted %d, want the 3 of the refused request", got)
	}
}
