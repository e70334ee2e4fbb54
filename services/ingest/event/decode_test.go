package event

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

const (
	orderJSONProtoNames = `{"id":"e1","occurred_at":"2025-06-01T10:00:00Z","order_placed":{"customer_id":"c1","order_id":"o1","total":{"amount_minor":1250,"currency":"GBP"},"items":[{"sku":"S","quantity":1}]}}`
	orderJSONCamelNames = `{"id":"e1","occurredAt":"2025-06-01T10:00:00Z","orderPlaced":{"customerId":"c1","orderId":"o1","total":{"amountMinor":"1250","currency":"GBP"},"items":[{"sku":"S","quantity":1}]}}`
)

func TestDecodeBatchAcceptsBothNameStyles(t *testing.T) {
	body := `{"events":[` + orderJSONProtoNames + `,` + orderJSONCamelNames + `]}`
	events, bad, err := DecodeBatch(strings.NewReader(body))
	if err != nil || len(bad) != 0 {
		t.Fatalf("DecodeBatch: err=%v bad=%v", err, bad)
	}
	if len(events) != 2 {
		t.Fatalf("got %d events", len(events))
	}
	if !proto.Equal(events[0], events[1]) {
		t.Errorf("proto and lowerCamel forms differ:\n%v\n%v", events[0], events[1])
	}
	if got := events[0].GetOrderPlaced().GetTotal().GetAmountMinor(); got != 1250 {
		t.Errorf("amount = %d", got)
	}
}

func TestDecodeBatchRequestErrors(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr error
		want    string
	}{
		{"empty body", "", ErrInvalidBody, `body: is empty`},
		{"not JSON", "hello", ErrInvalidBody, "body: invalid JSON"},
		{"truncated", `{"events":[{"id":"a"}`, ErrInvalidBody, "unexpected end"},
		{"array instead of object", `[{"id":"a"}]`, ErrInvalidBody, `body: must be a JSON object {"events": [...]}, got an array`},
		{"events missing", `{}`, ErrInvalidBody, `body: "events" is required`},
		{"events not an array", `{"events":{"id":"a"}}`, ErrInvalidBody, `body: "events" must be an array, got an object`},
		{"events null", `{"events":null}`, ErrInvalidBody, `body: "events" must be an array, got null`},
		{"events a string", `{"events":"x"}`, ErrInvalidBody, `body: "events" must be an array, got a string`},
		{"unknown top-level field", `{"events":[],"event":{}}`, ErrInvalidBody, `body: unknown field "event"`},
		{"events twice", `{"events":[],"events":[]}`, ErrInvalidBody, `"events" appears more than once`},
		{"trailing data", `{"events":[]} {}`, ErrInvalidBody, "unexpected data after the JSON object"},
		{"syntax error inside an event", `{"events":[{"id":}]}`, ErrInvalidBody, "invalid JSON at offset"},
		{"too many events", `{"events":[` + strings.Repeat(`{},`, MaxBatchEvents) + `{}]}`, ErrTooManyEvents, "more than 500 events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, bad, err := DecodeBatch(strings.NewReader(tt.body))
			if err == nil {
				t.Fatalf("no error; events=%d bad=%v", len(events), bad)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if events != nil || bad != nil {
				t.Errorf("partial results returned with a request error")
			}
		})
	}
}

func TestDecodeBatchReadErrorIsWrapped(t *testing.T) {
	cause := errors.New("connection reset")
	_, _, err := DecodeBatch(io.MultiReader(strings.NewReader(`{"events":[`), iotest.ErrReader(cause)))
	if !errors.Is(err, cause) {
		t.Fatalf("err = %v, want it to wrap %v", err, cause)
	}
	if errors.Is(err, ErrInvalidBody) {
		t.Errorf("a read error must not look like the client's fault: %v", err)
	}
}

func TestDecodeBatchLimits(t *testing.T) {
	t.Run("exactly the maximum is accepted", func(t *testing.T) {
		body := `{"events":[` + strings.TrimSuffix(strings.Repeat(`{},`, MaxBatchEvents), ",") + `]}`
		events, bad, err := DecodeBatch(strings.NewReader(body))
		if err != nil || len(bad) != 0 || len(events) != MaxBatchEvents {
			t.Fatalf("events=%d bad=%d err=%v", len(events), len(bad), err)
		}
	})
	t.Run("an empty array is not an error", func(t *testing.T) {
		events, bad, err := DecodeBatch(strings.NewReader(` {"events": []} `))
		if err != nil || len(bad) != 0 || len(events) != 0 {
			t.Fatalf("events=%d bad=%d err=%v", len(events), len(bad), err)
		}
	})
}

func TestDecodeBatchPerEventErrors(t *testing.T) {
	tests := []struct {
		name      string
		event     string
		field     string
		wantParts []string
	}{
		{"non-integer money", `{"order_placed":{"total":{"amount_minor":12.5,"currency":"GBP"}}}`,
			"order_placed.total.amount_minor", []string{"must be an integer number of minor units (e.g. cents), got 12.5"}},
		{"non-integer money in camel case", `{"orderPlaced":{"total":{"amountMinor":12.5}}}`,
			"order_placed.total.amount_minor", []string{"minor units", "got 12.5"}},
		{"non-integer money as a string", `{"order_refunded":{"amount":{"amount_minor":"12.50"}}}`,
			"order_refunded.amount.amount_minor", []string{"minor units", `"12.50"`}},
		{"money out of int64 range", `{"order_placed":{"total":{"amount_minor":92233720368547758070}}}`,
			"order_placed.total.amount_minor", []string{"out of range for a 64-bit integer"}},
		{"string where a number is expected", `{"survey_answered":{"score":"ten"}}`,
			"survey_answered.score", []string{`must be an integer, got the string "ten"`}},
		{"fractional score", `{"survey_answered":{"score":8.5}}`,
			"survey_answered.score", []string{"must be an integer, got 8.5"}},
		{"score out of int32 range", `{"survey_answered":{"score":3000000000}}`,
			"survey_answered.score", []string{"out of range for a 32-bit integer"}},
		{"number where a string is expected", `{"id":42}`, "id", []string{"must be a string, got 42"}},
		{"unknown top-level field", `{"customer":"c1"}`, "customer", []string{"unknown field", "customer_updated"}},
		{"unknown nested field", `{"order_placed":{"totl":{}}}`, "order_placed.totl", []string{"unknown field", "known fields: customer_id, order_id, total, items, coupon_code"}},
		{"unknown field in a line item", `{"order_placed":{"items":[{},{"qty":1}]}}`, "order_placed.items[1].qty", []string{"unknown field"}},
		{"bad value in a line item", `{"order_placed":{"items":[{"quantity":1},{"quantity":true}]}}`, "order_placed.items[1].quantity", []string{"must be an integer, got true"}},
		{"null line item", `{"order_placed":{"items":[null]}}`, "order_placed.items[0]", []string{"must be a JSON object, got null"}},
		{"items not an array", `{"order_placed":{"items":{}}}`, "order_placed.items", []string{"must be an array, got an object"}},
		{"payload not an object", `{"order_placed":"o1"}`, "order_placed", []string{"must be a JSON object, got a string"}},
		{"bad timestamp", `{"occurred_at":"yesterday"}`, "occurred_at", []string{"RFC 3339", `"yesterday"`}},
		{"timestamp without zone", `{"occurredAt":"2025-06-01 10:00:00"}`, "occurred_at", []string{"RFC 3339"}},
		{"timestamp as a number", `{"occurred_at":1717236000}`, "occurred_at", []string{"RFC 3339", "1717236000"}},
		{"unknown enum name", `{"ticket_opened":{"category":"SHIPPING"}}`, "ticket_opened.category", []string{`unknown value "SHIPPING"`, "TICKET_CATEGORY_DELIVERY"}},
		{"enum as a bool", `{"survey_answered":{"kind":true}}`, "survey_answered.kind", []string{"unknown value true", "SURVEY_KIND_NPS"}},
		{"trait value not a string", `{"customer_updated":{"traits":{"vip":true}}}`, `customer_updated.traits["vip"]`, []string{"must be a string, got true"}},
		{"traits not an object", `{"customer_updated":{"traits":["vip"]}}`, "customer_updated.traits", []string{"must be a JSON object, got an array"}},
		{"duplicate trait key", `{"customer_updated":{"traits":{"a":"1","a":"2"}}}`, `customer_updated.traits["a"]`, []string{"more than once"}},
		{"field given in both name styles", `{"occurred_at":"2025-06-01T10:00:00Z","occurredAt":"2025-06-01T10:00:00Z"}`, "occurred_at", []string{"set more than once", `"occurred_at"`, `"occurredAt"`}},
		{"two payloads", `{"order_placed":{},"survey_answered":{}}`, "payload", []string{"only one of", "got order_placed and survey_answered"}},
		{"event not an object", `"order"`, "", []string{"an event must be a JSON object, got a string"}},
		{"event null", `null`, "", []string{"got null"}},
		{"invalid UTF-8 in a string", "{\"source\":\"\xff\"}", "source", []string{"valid UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"events":[` + orderJSONProtoNames + `,` + tt.event + `,` + orderJSONCamelNames + `]}`
			events, bad, err := DecodeBatch(strings.NewReader(body))
			if err != nil {
				t.Fatalf("request error: %v", err)
			}
			if len(events) != 3 || events[0] == nil || events[2] == nil {
				t.Fatalf("the valid neighbours were not decoded: %v", events)
			}
			if events[1] != nil {
				t.Errorf("bad event decoded: %v", events[1])
			}
			if len(bad) != 1 {
				t.Fatalf("want one decode error, got %v", bad)
			}
			de := bad[0]
			if de.Index != 1 {
				t.Errorf("index = %d, want 1", de.Index)
			}
			if de.Field != tt.field {
				t.Errorf("field = %q, want %q (message %q)", de.Field, tt.field, de.Message)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(de.Message, part) {
					t.Errorf("message %q lacks %q", de.Message, part)
				}
			}
			wantErr := fmt.Sprintf("events[1].%s: ", tt.field)
			if tt.field == "" {
				wantErr = "events[1]: "
			}
			if !strings.HasPrefix(de.Error(), wantErr) {
				t.Errorf("Error() = %q, want prefix %q", de.Error(), wantErr)
			}
			if fe := de.FieldError(); fe.GetField() != de.Field || fe.GetDescription() != de.Message {
				t.Errorf("FieldError() = %v", fe)
			}
		})
	}
}

func TestDecodeBatchNamesTheIDOfAFailedEvent(t *testing.T) {
	body := `{"events":[` +
		`{"id":"frac-1","order_placed":{"total":{"amount_minor":12.5}}},` +
		`{"order_placed":{"totl":{}},"id":"unknown-1"},` +
		`{"order_placed":{"totl":{}}}` + `]}`
	_, bad, err := DecodeBatch(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"frac-1", "unknown-1", ""}
	if len(bad) != len(want) {
		t.Fatalf("want %d decode errors, got %v", len(want), bad)
	}
	for i, de := range bad {
		if de.Index != i || de.ID != want[i] {
			t.Errorf("decode error %d: index %d id %q, want index %d id %q", i, de.Index, de.ID, i, want[i])
		}
	}
}

func TestLenientID(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`{"id":"e1","order_placed":{"total":{"amount_minor":12.5}}}`, "e1"},
		{`{"occurred_at":"x","nested":{"id":"inner"},"id":"outer"}`, "outer"},
		{`{"id":"caf\u00e9 \"q\""}`, `café "q"`},
		{`{"id":"ok-é"}`, "ok-é"},
		{`{"id":""}`, ""},
		{`{"order_placed":{"id":"inner"}}`, ""},
		{`{"ID":"upper"}`, ""},      // protojson knows only "id"
		{`{"id":"a","id":"b"}`, ""}, // ambiguous
		{`{"id":42}`, ""},           // not a string
		{`{"id":null}`, ""},
		{`{"id":"x\ud800"}`, ""},   // a lone surrogate would not echo back as sent
		{"{\"id\":\"x\xff\"}", ""}, // invalid UTF-8
		{`["id","e1"]`, ""},        // not an object
		{`null`, ""},
		{`{"id":`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		if got := LenientID([]byte(tt.raw)); got != tt.want {
			t.Errorf("LenientID(%s) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestUnmarshalEventRoundTrip(t *testing.T) {
	for _, ev := range []*eventsv1.Event{validCustomerUpdated(), validOrderPlaced(), validOrderRefunded(), validTicketOpened(), validTicketResolved(), validSurveyAnswered()} {
		t.Run(TypeOf(ev), func(t *testing.T) {
			for _, useProto := range []bool{true, false} {
				data, err := protojson.MarshalOptions{UseProtoNames: useProto}.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				got, fe := UnmarshalEvent(data)
				if fe != nil {
					t.Fatalf("UnmarshalEvent(%s): %v", data, fe)
				}
				if !proto.Equal(got, ev) {
					t.Errorf("round trip changed the event:\n%v\n%v", ev, got)
				}
			}
		})
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	body := `{"events":[` + strings.TrimSuffix(strings.Repeat(orderJSONCamelNames+",", MaxBatchEvents), ",") + `]}`
	raw := []byte(orderJSONCamelNames)
	b.Run("DecodeBatch/500", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, _, err := DecodeBatch(strings.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*MaxBatchEvents)/b.Elapsed().Seconds(), "events/s")
	})
	// Baseline: protojson alone on the same 500 events, the floor of any
	// decoder that keeps per-event errors.
	b.Run("baseline-protojson/500", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			for range MaxBatchEvents {
				if err := protojson.Unmarshal(raw, &eventsv1.Event{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*MaxBatchEvents)/b.Elapsed().Seconds(), "events/s")
	})
}

func TestFieldErrorsByIndex(t *testing.T) {
	if m := FieldErrorsByIndex(nil); m != nil {
		t.Errorf("nil input gave %v", m)
	}
	m := FieldErrorsByIndex([]DecodeError{{Index: 3, Field: "id", Message: "must be a string, got 1"}, {Index: 0, Message: "an event must be a JSON object, got null"}})
	if len(m) != 2 || m[3][0].GetField() != "id" || m[3][0].GetDescription() != "must be a string, got 1" || m[0][0].GetField() != "" {
		t.Errorf("got %v", m)
	}
}
