package ingest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/unknownfields/unknowntest"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// TestGRPCUnknownFieldsAreRefused: an event with fields ingest's schema does
// not have is rejected on its own, naming where and which, as an unknown JSON
// field is over HTTP, and never reaches the stream; the rest of its batch is
// stored. Before, it was stored with the fields as they came. The gRPC
// server's check of requests leaves events to ingest, and refuses a request
// whose own fields ingest lacks.
func TestGRPCUnknownFieldsAreRefused(t *testing.T) {
	s := setup(t)
	client := ingestv1.NewIngestServiceClient(s.grpc)
	ctx := context.Background()
	creds := grpc.PerRPCCredentials(auth.BearerCredentials{Token: s.token})
	occurred := time.Now().Add(-time.Hour)

	top := unknowntest.With(t, smallOrder("u-top", occurred), 99)
	nested := smallOrder("u-nested", occurred)
	nested.GetOrderPlaced().Items = []*eventsv1.LineItem{
		{Sku: "a", Quantity: 1},
		unknowntest.With(t, &eventsv1.LineItem{Sku: "b", Quantity: 1}, 42),
	}

	r, err := client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{
		smallOrder("u-1", occurred), top, nested, smallOrder("u-2", occurred)}}, creds)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetAccepted() != 2 || r.GetRejected() != 2 {
		t.Fatalf("answer %v, want 2 accepted and the 2 with unknown fields rejected", r)
	}
	for _, want := range []struct {
		index        int
		id, field, n string
	}{{1, "u-top", "event", "field 99 "}, {2, "u-nested", "order_placed.items[1]", "field 42 "}} {
		res := r.GetResults()[want.index]
		if res.GetStatus() != ingestv1.EventStatus_EVENT_STATUS_REJECTED || res.GetId() != want.id || len(res.GetErrors()) != 1 {
			t.Errorf("result %v, want %s rejected with one error", res, want.id)
			continue
		}
		if e := res.GetErrors()[0]; e.GetField() != want.field || !strings.Contains(e.GetDescription(), want.n) {
			t.Errorf("%s: error %v, want one on %s naming %s", want.id, e, want.field, want.n)
		}
	}

	_, err = client.Publish(ctx, &ingestv1.PublishRequest{Event: unknowntest.With(t, smallOrder("u-single", occurred), 77)}, creds)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("publish with an unknown field: %v, want InvalidArgument", err)
	}
	if vs := server.Violations(err); len(vs) != 1 || vs[0].Field != "event" || !strings.Contains(vs[0].Description, "field 77 ") {
		t.Errorf("violations %v, want one on event naming field 77", vs)
	}

	// The request itself is the gRPC server's to check: a batch holding a
	// field ingest lacks (a newer client's option, say) is refused whole.
	_, err = client.PublishBatch(ctx, unknowntest.With(t, &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{smallOrder("u-envelope", occurred)}}, 5), creds)
	if status.Code(err) != codes.InvalidArgument || !server.UnknownRequestFields(err) || !strings.Contains(err.Error(), "request has field 5 not in this server's schema, whose retain.ingest.v1.PublishBatchRequest has 1 events") {
		t.Errorf("a batch request with an unknown field: %v, want it refused naming field 5", err)
	}

	msgs := s.streamMsgs(t)
	for _, id := range []string{"shop/u-1", "shop/u-2"} {
		if msgs[id] == nil {
			t.Errorf("%s is not on the stream", id)
		}
	}
	for _, id := range []string{"shop/u-top", "shop/u-nested", "shop/u-single", "shop/u-envelope"} {
		if ev := msgs[id]; ev != nil {
			t.Errorf("%s is on the stream: %v (unknown fields %q)", id, ev, ev.ProtoReflect().GetUnknown())
		}
	}
}
