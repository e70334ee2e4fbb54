package app_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/testenv"
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
	// Not running, so nothing is published and no bus is needed.
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
	// The first request takes the queue's one place and stays there (its
	// caller gives up); the next finds the queue full.
	waiting, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := in.Publish(waiting, "shop", events("w-1"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first request: %v, want it queued until its deadline", err)
	}
	_, refused := in.Publish(context.Background(), "shop", events("r-1", "r-2", "r-3"), nil)
	if !errors.Is(refused, commit.ErrOverloaded) {
		t.Fatalf("second request: %v, want ErrOverloaded", refused)
	}

	if got := testenv.CounterSum(t, reader, "retain.ingest.events", "result=refused"); got != 3 {
		t.Fatalf("refused events counted %d, want the 3 of the refused request", got)
	}
}
