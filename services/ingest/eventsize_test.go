package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest"
)

// bigOrder is a valid order of about size bytes: line items with the
// longest names the validator allows.
func bigOrder(id string, occurred time.Time, size int) *eventsv1.Event {
	o := &eventsv1.OrderPlaced{CustomerId: "c-big", OrderId: id, Total: &eventsv1.Money{AmountMinor: 1, Currency: "EUR"}}
	name := strings.Repeat("n", 4000)
	for n := 0; n < size; n += len(name) + 16 {
		o.Items = append(o.Items, &eventsv1.LineItem{Sku: fmt.Sprint(len(o.Items)), Name: name, Quantity: 1})
	}
	return &eventsv1.Event{Id: id, OccurredAt: timestamppb.New(occurred), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: o}}
}

func smallOrder(id string, occurred time.Time) *eventsv1.Event {
	return &eventsv1.Event{Id: id, OccurredAt: timestamppb.New(occurred), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
		CustomerId: "c-1", OrderId: id, Total: &eventsv1.Money{AmountMinor: 100, Currency: "EUR"}}}}
}

// TestEventLargerThanTheBusTakes: an event larger than the per-event limit
// (at most what the NATS server takes in one message) is rejected on its
// own, naming the limit, and the other events of its request, and of the
// requests sharing its atomic batch, are stored. Before the limit, a 2 MiB
// event over gRPC (which takes 4 MiB) failed its whole atomic batch with
// "nats: maximum payload exceeded": INTERNAL for every request in it.
func TestEventLargerThanTheBusTakes(t *testing.T) {
	// A long linger puts the concurrent requests below in one batch.
	s := setup(t, func(c *ingest.Config) { c.Linger = 50 * time.Millisecond })
	client := ingestv1.NewIngestServiceClient(s.grpc)
	ctx := context.Background()
	creds := grpc.PerRPCCredentials(auth.BearerCredentials{Token: s.token})
	occurred := time.Now().Add(-time.Hour)
	limit := ingest.DefaultConfig().MaxEventBytes

	t.Run("gRPC batch: the big event is rejected, the others stored", func(t *testing.T) {
		var wg sync.WaitGroup
		var other *ingestv1.PublishBatchResponse
		var otherErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(10 * time.Millisecond) // inside the first request's linger
			other, otherErr = client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{smallOrder("s-other", occurred)}}, creds)
		}()
		r, err := client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{
			smallOrder("s-1", occurred), bigOrder("s-big", occurred, 2<<20), smallOrder("s-2", occurred)}}, creds)
		wg.Wait()
		if err != nil {
			t.Fatalf("batch with one big event: %v", err)
		}
		if r.GetAccepted() != 2 || r.GetRejected() != 1 {
			t.Fatalf("answer %v, want 2 accepted and the big one rejected", r)
		}
		big := r.GetResults()[1]
		if big.GetStatus() != ingestv1.EventStatus_EVENT_STATUS_REJECTED || big.GetId() != "s-big" || len(big.GetErrors()) != 1 {
			t.Fatalf("big event's result %v", big)
		}
		if e := big.GetErrors()[0]; e.GetField() != "event" || !strings.Contains(e.GetDescription(), fmt.Sprintf("at most %d bytes", limit)) {
			t.Errorf("big event's error %v, want field event naming the limit %d", e, limit)
		}
		if otherErr != nil || other.GetAccepted() != 1 {
			t.Errorf("a request sharing the batch: %v %v", other, otherErr)
		}
		msgs := s.streamMsgs(t)
		for _, id := range []string{"shop/s-1", "shop/s-2", "shop/s-other"} {
			if msgs[id] == nil {
				t.Errorf("%s is not on the stream", id)
			}
		}
		if msgs["shop/s-big"] != nil {
			t.Error("the rejected event is on the stream")
		}
	})

	t.Run("gRPC publish: INVALID_ARGUMENT with a violation of event", func(t *testing.T) {
		_, err := client.Publish(ctx, &ingestv1.PublishRequest{Event: bigOrder("p-big", occurred, 2<<20)}, creds)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("publish of a 2 MiB event: %v, want InvalidArgument", err)
		}
		vs := server.Violations(err)
		if len(vs) != 1 || vs[0].Field != "event" || !strings.Contains(vs[0].Description, fmt.Sprintf("at most %d bytes", limit)) {
			t.Errorf("violations %v", vs)
		}
	})

	t.Run("HTTP: an event within the body limit but over the event limit", func(t *testing.T) {
		items := make([]string, 0, 200)
		for i := range 200 {
			items = append(items, fmt.Sprintf(`{"sku":"%d","name":%q,"quantity":1}`, i, strings.Repeat("n", 4000)))
		}
		big := fmt.Sprintf(`{"id":"h-big","occurred_at":"2026-01-02T10:00:00Z","order_placed":{"customer_id":"c","order_id":"h-big","total":{"amount_minor":1,"currency":"EUR"},"items":[%s]}}`, strings.Join(items, ","))
		resp, a := s.post(t, s.token, batch(order("h-1", "c-1", 100), big))
		if resp.StatusCode != http.StatusOK || a.Accepted != 1 || a.Rejected != 1 {
			t.Fatalf("HTTP %d %+v", resp.StatusCode, a)
		}
		if r := a.Results[1]; r.ID != "h-big" || r.Status != "rejected" || len(r.Errors) != 1 || r.Errors[0].Field != "event" {
			t.Errorf("big event's result %+v", r)
		}
	})
}

// TestEventLimitAboveTheServers: a limit set above what the NATS server
// takes in one message is lowered to the server's max_payload, so an event
// between the two is still rejected on its own, not failed at the bus.
func TestEventLimitAboveTheServers(t *testing.T) {
	s := setup(t, func(c *ingest.Config) { c.MaxEventBytes = 8 << 20 })
	client := ingestv1.NewIngestServiceClient(s.grpc)
	creds := grpc.PerRPCCredentials(auth.BearerCredentials{Token: s.token})
	_, err := client.Publish(context.Background(), &ingestv1.PublishRequest{Event: bigOrder("b-big", time.Now().Add(-time.Hour), 2<<20)}, creds)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("publish of a 2 MiB event to a server taking 1 MiB: %v, want InvalidArgument", err)
	}
	// The embedded server's max_payload: nats-server's default.
	if vs := server.Violations(err); len(vs) != 1 || !strings.Contains(vs[0].Description, fmt.Sprintf("at most %d bytes", 1<<20)) {
		t.Errorf("violations %v, want the server's 1 MiB named", vs)
	}
}
