package event

import (
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/unknownfields/unknowntest"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func TestUnknownFields(t *testing.T) {
	for _, tc := range []struct {
		name  string
		event func() *eventsv1.Event
		field string
		want  []string // in the description
	}{
		{"none", validOrderPlaced, "", nil},
		{"on the event: a payload of a newer schema", func() *eventsv1.Event {
			return unknowntest.With(t, validOrderPlaced(), 16)
		}, "event", []string{"has field 16 not in", "retain.events.v1.Event has 1 id,", "15 survey_answered", "not stored"}},
		{"several, each named once", func() *eventsv1.Event {
			return unknowntest.With(t, validOrderPlaced(), 99, 16, 99)
		}, "event", []string{"has fields 16, 99 not in"}},
		{"a known number in another wire type (a forked .proto)", func() *eventsv1.Event {
			return unknowntest.With(t, validOrderPlaced(), 1)
		}, "event", []string{"has field 1 as varint (id is string) not in"}},
		{"in the payload (a oneof)", func() *eventsv1.Event {
			ev := validOrderPlaced()
			ev.GetOrderPlaced().Total = unknowntest.With(t, ev.GetOrderPlaced().GetTotal(), 3)
			return ev
		}, "order_placed.total", []string{"field 3", "retain.events.v1.Money", "1 amount_minor, 2 currency"}},
		{"in a repeated message", func() *eventsv1.Event {
			ev := validOrderPlaced()
			o := ev.GetOrderPlaced()
			o.Items = append(o.Items, unknowntest.With(t, o.Items[0], 40))
			return ev
		}, "order_placed.items[1]", []string{"field 40", "retain.events.v1.LineItem"}},
		{"in a message of a repeated one", func() *eventsv1.Event {
			ev := validOrderPlaced()
			it := ev.GetOrderPlaced().Items[0]
			it.UnitPrice = unknowntest.With(t, it.GetUnitPrice(), 5)
			return ev
		}, "order_placed.items[0].unit_price", []string{"field 5"}},
		{"in a well-known type", func() *eventsv1.Event {
			ev := validCustomerUpdated()
			ev.OccurredAt = unknowntest.With(t, ev.GetOccurredAt(), 3)
			return ev
		}, "occurred_at", []string{"field 3", "google.protobuf.Timestamp"}},
		{"the first message in field order", func() *eventsv1.Event {
			ev := validOrderPlaced()
			ev.ReceivedAt = unknowntest.With(t, ev.GetReceivedAt(), 9)
			ev.GetOrderPlaced().Total = unknowntest.With(t, ev.GetOrderPlaced().GetTotal(), 3)
			return ev
		}, "received_at", []string{"field 9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := UnknownFields(tc.event())
			if tc.field == "" {
				if fe != nil {
					t.Fatalf("error %v on an event without unknown fields", fe)
				}
				return
			}
			if fe == nil {
				t.Fatal("no error")
			}
			if fe.GetField() != tc.field {
				t.Errorf("field %q, want %q (%s)", fe.GetField(), tc.field, fe.GetDescription())
			}
			for _, w := range tc.want {
				if !strings.Contains(fe.GetDescription(), w) {
					t.Errorf("description %q lacks %q", fe.GetDescription(), w)
				}
			}
		})
	}
}

// Every event taken over gRPC is checked: one without unknown fields costs
// no allocation but protoreflect's view of a repeated field (one a list,
// however many items it has), and none for maps of strings.
func TestUnknownFieldsAllocatesLittleForAKnownEvent(t *testing.T) {
	bigOrder := validOrderPlaced()
	o := bigOrder.GetOrderPlaced()
	for range 100 {
		o.Items = append(o.Items, o.Items[0])
	}
	for _, tc := range []struct {
		ev   *eventsv1.Event
		want float64
	}{
		{validSurveyAnswered(), 0},
		{validCustomerUpdated(), 0}, // traits: a map of strings
		{validOrderPlaced(), 1},     // items
		{bigOrder, 1},
	} {
		if n := testing.AllocsPerRun(100, func() { _ = UnknownFields(tc.ev) }); n != tc.want {
			t.Errorf("%s with %d items: %v allocations, want %v", tc.ev.GetType(), len(tc.ev.GetOrderPlaced().GetItems()), n, tc.want)
		}
	}
}
