package event

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/unknownfields/unknowntest"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func FuzzDecodeBatch(f *testing.F) {
	for _, ev := range []string{
		orderJSONProtoNames,
		orderJSONCamelNames,
		`{"customerUpdated":{"customerId":"c1","email":"ana@example.com","locale":"fa-IR","timeZone":"Asia/Tehran","consent":{"emailMarketing":"CONSENT_STATE_GRANTED"},"traits":{"renewal_date":"2025-09-01"}},"occurredAt":"2025-06-01T10:00:00Z"}`,
		`{"order_refunded":{"customer_id":"c1","order_id":"o1","refund_id":"r1","amount":{"amount_minor":"500","currency":"eur"}},"occurred_at":"2025-06-01T10:00:00+02:00"}`,
		`{"ticket_opened":{"customer_id":"c1","ticket_id":"t1","category":"TICKET_CATEGORY_BILLING_PRICING"},"occurred_at":"2025-06-01T10:00:00Z","type":"ticket.opened"}`,
		`{"ticket_resolved":{"customer_id":"c1","ticket_id":"t1"},"occurred_at":"2025-06-01T10:00:00Z"}`,
		`{"survey_answered":{"customer_id":"c1","kind":"SURVEY_KIND_CSAT","score":4},"occurred_at":"2025-06-01T10:00:00Z"}`,
		`{"order_placed":{"total":{"amount_minor":12.5}}}`,
		`{"order_placed":{},"ticket_opened":{}}`,
		`{"occurred_at":"yesterday","survey_answered":{"score":"x"}}`,
		`{"customer_updated":{"traits":{"a":"1","a":2}}}`,
		`{"ticket_opened":{"category":99}}`,
		`null`, `[]`, `"x"`, `{"id":"a b","type":"order.created"}`,
	} {
		f.Add([]byte(`{"events":[` + ev + `]}`))
	}
	f.Add([]byte(`{"events":[` + orderJSONProtoNames + `,null,` + orderJSONCamelNames + `]}`))
	f.Add([]byte(`{"events":{}}`))
	f.Add([]byte(`{"events":[],"x":1}`))
	f.Add([]byte(`[`))
	f.Add([]byte(``))

	f.Fuzz(func(t *testing.T, body []byte) {
		events, bad, err := DecodeBatch(bytes.NewReader(body))
		if err != nil {
			if events != nil || bad != nil {
				t.Fatalf("results returned with request error %v", err)
			}
			return
		}
		if len(events) > MaxBatchEvents {
			t.Fatalf("%d events accepted", len(events))
		}
		failed := map[int]bool{}
		for _, de := range bad {
			if de.Index < 0 || de.Index >= len(events) {
				t.Fatalf("decode error index %d outside [0,%d)", de.Index, len(events))
			}
			if failed[de.Index] {
				t.Fatalf("two decode errors for index %d", de.Index)
			}
			failed[de.Index] = true
			if events[de.Index] != nil {
				t.Fatalf("index %d both decoded and failed", de.Index)
			}
			if strings.TrimSpace(de.Message) == "" {
				t.Fatalf("empty message for index %d", de.Index)
			}
			if !utf8.ValidString(de.ID) {
				t.Fatalf("index %d: id %q is not UTF-8", de.Index, de.ID)
			}
		}
		for i, ev := range events {
			if ev == nil {
				if !failed[i] {
					t.Fatalf("index %d neither decoded nor failed", i)
				}
				continue
			}
			Normalize(ev, "acme", testNow, func() string { return "generated" })
			errs := Validate(ev, testNow)
			for _, fe := range errs {
				if fe.GetDescription() == "" {
					t.Fatalf("event %d: empty description on %q", i, fe.GetField())
				}
			}
			if len(errs) > 0 {
				continue
			}
			// A valid event survives the trip to JSON and back unchanged,
			// so what ingest publishes is what the client meant.
			data, err := protojson.Marshal(ev)
			if err != nil {
				t.Fatalf("event %d: marshal valid event: %v", i, err)
			}
			back, fe := UnmarshalEvent(data)
			if fe != nil {
				t.Fatalf("event %d: re-decode %s: %v", i, data, fe)
			}
			if !proto.Equal(back, ev) {
				t.Fatalf("event %d: round trip changed it:\n%v\n%v", i, ev, back)
			}
		}
	})
}

func FuzzUnmarshalEvent(f *testing.F) {
	f.Add([]byte(orderJSONProtoNames))
	f.Add([]byte(orderJSONCamelNames))
	f.Add([]byte(`{"customerUpdated":{"customerId":"c1","traits":{"renewal_date":"2025-09-01"}},"occurredAt":"2025-06-01T10:00:00Z"}`))
	f.Add([]byte(`{"ticket_opened":{"category":"TICKET_CATEGORY_OTHER"}}`))
	f.Add([]byte(`{"order_placed":{"items":[{"unit_price":{"amount_minor":1.5}}]}}`))
	f.Add([]byte(`{"":""}`))
	f.Add([]byte(`{"id":`))
	f.Add([]byte(`{"id":"e1","id":"e2"}`))
	f.Add([]byte(`{"id":"x\ud800y"}`))
	f.Add([]byte(`{"id":"e1","order_placed":{"total":{"amount_minor":1.5}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, fe := UnmarshalEvent(data)
		if (ev == nil) == (fe == nil) {
			t.Fatalf("want exactly one of event and error, got %v and %v", ev, fe)
		}
		if fe != nil && strings.TrimSpace(fe.GetDescription()) == "" {
			t.Fatalf("empty description for field %q", fe.GetField())
		}
		// The lenient look at the id never disagrees with the real decoder.
		if id := LenientID(data); ev != nil && id != "" && id != ev.GetId() {
			t.Fatalf("LenientID = %q, decoded id = %q", id, ev.GetId())
		}
	})
}

// FuzzUnknownFields decodes protobuf as the gRPC API does: an event is
// refused for unknown fields exactly when it holds some, anywhere in it.
func FuzzUnknownFields(f *testing.F) {
	for _, ev := range []*eventsv1.Event{validCustomerUpdated(), validOrderPlaced(), validSurveyAnswered()} {
		data, err := proto.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(protowire.AppendVarint(protowire.AppendTag(data, 99, protowire.VarintType), 7))
		f.Add(protowire.AppendBytes(protowire.AppendTag(data, 16, protowire.BytesType), []byte{0x0a, 0x01, 'x'}))
	}
	item, err := proto.Marshal(unknowntest.With(f, &eventsv1.LineItem{Sku: "s", Quantity: 1}, 40))
	if err != nil {
		f.Fatal(err)
	}
	order := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), item)
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 11, protowire.BytesType), order))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev := &eventsv1.Event{}
		if proto.Unmarshal(data, ev) != nil {
			return
		}
		known := &eventsv1.Event{}
		if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, known); err != nil {
			t.Fatalf("decodes keeping unknown fields, not discarding them: %v", err)
		}
		// proto.Equal compares unknown fields too.
		has := !proto.Equal(ev, known)
		fe := UnknownFields(ev)
		if (fe != nil) != has {
			t.Fatalf("error %v for an event with unknown fields: %v", fe, has)
		}
		if fe != nil && (fe.GetField() == "" || !strings.Contains(fe.GetDescription(), "has field")) {
			t.Fatalf("error %v", fe)
		}
	})
}
