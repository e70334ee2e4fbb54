package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
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
	in, err := app.New(c, func() int { return 1 << 20 }, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
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

// TestEventAtTheLimitIsStored: the size an event is held to covers the
// message as the bus sends it in an atomic batch (headers included), so an
// event at the limit, when the limit is the NATS server's max_payload, is
// stored, and one byte more is rejected before it reaches the bus.
func TestEventAtTheLimitIsStored(t *testing.T) {
	ctx := context.Background()
	b := testenv.Bus(t, bus.Config{URL: testenv.NATS(t).URL(), Name: "app-test"})
	c, err := commit.New(commit.DefaultConfig(), b, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	limit := int(b.NC.MaxPayload())
	in, err := app.New(c, func() int { return limit }, noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}

	// An order with names of x bytes in all (the validator takes 4 KiB a
	// name), after a small event in the same request: the two go in one
	// atomic batch, the big one last, with the batch's commit header.
	// Every publish of x bytes of names is the same size: ids of one
	// width, and an instant of whole seconds (protobuf writes nanoseconds
	// in as few bytes as their value needs), or the search would chase a
	// limit that moves by a byte or two between calls.
	n := 0
	at := timestamppb.New(time.Now().Add(-time.Hour).Truncate(time.Second))
	publish := func(x int) *ingestv1.EventResult {
		t.Helper()
		n++
		id := fmt.Sprintf("o-%06d", n)
		small := &eventsv1.Event{Id: id + "-small", OccurredAt: at, Payload: &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{CustomerId: "c", TicketId: id}}}
		o := &eventsv1.OrderPlaced{CustomerId: "c", OrderId: id, Total: &eventsv1.Money{AmountMinor: 1, Currency: "EUR"}}
		for left := x; left > 0; left -= 4000 {
			o.Items = append(o.Items, &eventsv1.LineItem{Name: strings.Repeat("n", min(left, 4000)), Quantity: 1})
		}
		big := &eventsv1.Event{Id: id, OccurredAt: at, Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: o}}
		resp, err := in.Publish(ctx, "shop", []*eventsv1.Event{small, big}, nil)
		if err != nil {
			t.Fatalf("names of %d bytes: %v", x, err)
		}
		if r := resp.GetResults()[0]; r.GetStatus() != ingestv1.EventStatus_EVENT_STATUS_ACCEPTED {
			t.Fatalf("names of %d bytes: the small event %v", x, r)
		}
		return resp.GetResults()[1]
	}
	accepted := func(r *ingestv1.EventResult) bool {
		return r.GetStatus() == ingestv1.EventStatus_EVENT_STATUS_ACCEPTED
	}
	// The most bytes of names taken, between lo (taken) and hi (not).
	lo, hi := limit-64<<10, limit
	if !accepted(publish(lo)) || accepted(publish(hi)) {
		t.Fatalf("want names of %d bytes taken and %d not", lo, hi)
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if accepted(publish(mid)) {
			lo = mid
		} else {
			hi = mid
		}
	}
	// Every publish above that the limit let through was stored: none
	// failed at the bus. The largest event is not held far below the
	// limit: the names are all but the framing of its ~260 line items
	// (about 9 bytes each) and a few hundred bytes of headers.
	if lo < limit-4096 {
		t.Errorf("the largest event taken has %d bytes of names, want within 4 KiB of the limit %d", lo, limit)
	}
	r := publish(lo + 1)
	if errs := r.GetErrors(); len(errs) != 1 || errs[0].GetField() != "event" || !strings.Contains(errs[0].GetDescription(), fmt.Sprintf("at most %d bytes", limit)) {
		t.Errorf("one byte more: %v", r)
	}
}
