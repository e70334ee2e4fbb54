package unknownfields

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/retainhq/retain/platform/unknownfields/unknowntest"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

func order() *eventsv1.Event {
	return &eventsv1.Event{Id: "e1", Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
		CustomerId: "c1", OrderId: "o1",
		Total: &eventsv1.Money{AmountMinor: 100, Currency: "EUR"},
		Items: []*eventsv1.LineItem{{Sku: "a", Quantity: 1}},
	}}}
}

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     func() proto.Message
		path    string // "-": nothing found
		numbers string
		message protoreflect.FullName
	}{
		{"none", func() proto.Message { return order() }, "-", "", ""},
		{"on the message itself, each number once and in order", func() proto.Message {
			return unknowntest.With(t, order(), 99, 16, 99)
		}, "", "fields 16, 99", "retain.events.v1.Event"},
		{"a known number in another wire type (a forked .proto)", func() proto.Message {
			return unknowntest.With(t, order(), 1)
		}, "", "field 1 as varint (id is string)", "retain.events.v1.Event"},
		{"in a oneof's message", func() proto.Message {
			ev := order()
			ev.GetOrderPlaced().Total = unknowntest.With(t, ev.GetOrderPlaced().GetTotal(), 3)
			return ev
		}, "order_placed.total", "field 3", "retain.events.v1.Money"},
		{"in a list item", func() proto.Message {
			ev := order()
			o := ev.GetOrderPlaced()
			o.Items = append(o.Items, unknowntest.With(t, o.Items[0], 40))
			return ev
		}, "order_placed.items[1]", "field 40", "retain.events.v1.LineItem"},
		{"the first in field order", func() proto.Message {
			ev := order()
			ev.ReceivedAt = unknowntest.With(t, ev.GetReceivedAt(), 9)
			ev.GetOrderPlaced().Total = unknowntest.With(t, ev.GetOrderPlaced().GetTotal(), 3)
			return ev
		}, "received_at", "field 9", "google.protobuf.Timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Find(tc.msg().ProtoReflect(), nil)
			if tc.path == "-" {
				if f != nil {
					t.Fatalf("found %+v in a message without unknown fields", f)
				}
				return
			}
			if f == nil {
				t.Fatal("nothing found")
			}
			if f.Path != tc.path || f.Numbers() != tc.numbers || f.Message.FullName() != tc.message {
				t.Errorf("found %s in %s at %q, want %s in %s at %q", f.Numbers(), f.Message.FullName(), f.Path, tc.numbers, tc.message, tc.path)
			}
		})
	}
}

func TestSchema(t *testing.T) {
	f := Find(unknowntest.With(t, &eventsv1.Money{}, 5).ProtoReflect(), nil)
	if got := f.Schema(); got != "1 amount_minor, 2 currency" {
		t.Errorf("schema %q", got)
	}
	f = Find(unknowntest.With(t, &emptypb.Empty{}, 5).ProtoReflect(), nil)
	if got := f.Schema(); got != "no fields" {
		t.Errorf("schema of Empty %q", got)
	}
}

// Map values are looked at in key order: the answer is the same whatever
// order Go iterates the map in.
func TestFindInMapValues(t *testing.T) {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{
		"a": structpb.NewStringValue("x"),
		"b": unknowntest.With(t, structpb.NewNumberValue(1), 20),
		"c": unknowntest.With(t, structpb.NewBoolValue(true), 21),
	}}
	for range 5 {
		f := Find(s.ProtoReflect(), nil)
		if f == nil || f.Path != `fields["b"]` || f.Numbers() != "field 20" {
			t.Fatalf("found %+v", f)
		}
	}
}

// A skipped field's messages are left to their handler; the rest of the
// message is still walked.
func TestFindSkips(t *testing.T) {
	events := (&ingestv1.PublishBatchRequest{}).ProtoReflect().Descriptor().Fields().ByName("events")
	skipEvents := func(fd protoreflect.FieldDescriptor) bool { return fd == events }
	req := &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{order(), unknowntest.With(t, order(), 16)}}
	if f := Find(req.ProtoReflect(), skipEvents); f != nil {
		t.Errorf("found %+v under a skipped field", f)
	}
	if f := Find(req.ProtoReflect(), nil); f == nil || f.Path != "events[1]" {
		t.Errorf("without skipping: found %+v, want events[1]", f)
	}
	req = unknowntest.With(t, req, 9)
	if f := Find(req.ProtoReflect(), skipEvents); f == nil || f.Path != "" || f.Numbers() != "field 9" {
		t.Errorf("found %+v, want field 9 of the request itself", f)
	}
}

// A long string key is cut in the path: the key is the sender's.
func TestFindCutsLongKeys(t *testing.T) {
	long := strings.Repeat("k", 200)
	s := &structpb.Struct{Fields: map[string]*structpb.Value{long: unknowntest.With(t, structpb.NewNumberValue(1), 20)}}
	if f := Find(s.ProtoReflect(), nil); f == nil || f.Path != `fields["`+long[:64]+`"...]` {
		t.Errorf("found %+v", f)
	}
}
