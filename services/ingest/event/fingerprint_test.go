package event

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func TestFingerprint(t *testing.T) {
	all := []*eventsv1.Event{validCustomerUpdated(), validOrderPlaced(), validOrderRefunded(), validTicketOpened(), validTicketResolved(), validSurveyAnswered()}

	t.Run("the wire form decodes to the event, stamps included", func(t *testing.T) {
		for _, ev := range all {
			data, _, err := Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			got := &eventsv1.Event{}
			if err := proto.Unmarshal(data, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, ev) {
				t.Errorf("decoded %v, want %v", got, ev)
			}
		}
	})

	t.Run("what ingest stamps is not part of it; everything the client sent is", func(t *testing.T) {
		ev := validTicketOpened()
		_, fp, _ := Encode(ev)
		stamped := proto.Clone(ev).(*eventsv1.Event)
		stamped.TenantId, stamped.ReceivedAt = "another", timestamppb.New(testNow.Add(time.Hour))
		if _, got, _ := Encode(stamped); got != fp {
			t.Error("tenant_id or received_at changed the fingerprint")
		}
		for name, change := range map[string]func(*eventsv1.Event){
			"occurred_at": func(e *eventsv1.Event) { e.OccurredAt = timestamppb.New(testNow.Add(-2 * time.Hour)) },
			"source":      func(e *eventsv1.Event) { e.Source = "other" },
			"payload":     func(e *eventsv1.Event) { e.GetTicketOpened().Subject = "late" },
			"type": func(e *eventsv1.Event) {
				e.Type, e.Payload = TypeTicketResolved, &eventsv1.Event_TicketResolved{TicketResolved: &eventsv1.TicketResolved{CustomerId: "c1", TicketId: e.GetTicketOpened().GetTicketId()}}
			},
		} {
			other := proto.Clone(ev).(*eventsv1.Event)
			change(other)
			if _, got, _ := Encode(other); got == fp {
				t.Errorf("a different %s gave the same fingerprint", name)
			}
		}
	})

	t.Run("map order does not matter", func(t *testing.T) {
		ev := validCustomerUpdated()
		ev.GetCustomerUpdated().Traits = map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7"}
		_, fp, _ := Encode(ev)
		for range 20 {
			_, got, _ := Encode(proto.Clone(ev).(*eventsv1.Event))
			if got != fp {
				t.Fatal("the same traits gave two fingerprints")
			}
		}
	})

	t.Run("a stored event gives its fingerprint back, also one stored before fingerprints", func(t *testing.T) {
		for _, ev := range all {
			data, fp, _ := Encode(ev)
			if got, err := FingerprintOf(data); err != nil || got != fp {
				t.Errorf("%s: FingerprintOf(Encode) = %q, %v; want %q", ev.GetType(), got, err, fp)
			}
			legacy, _ := proto.Marshal(ev) // how ingest encoded events before
			if got, err := FingerprintOf(legacy); err != nil || got != fp {
				t.Errorf("%s: FingerprintOf(legacy) = %q, %v; want %q", ev.GetType(), got, err, fp)
			}
		}
	})

	t.Run("pinned: an upgrade that changes fingerprints would turn retries into conflicts", func(t *testing.T) {
		ev := &eventsv1.Event{Id: "t-1", Type: TypeTicketOpened, Source: "shop", OccurredAt: timestamppb.New(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)),
			Payload: &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{CustomerId: "c-1", TicketId: "t-1", Category: eventsv1.TicketCategory_TICKET_CATEGORY_OTHER}}}
		_, fp, _ := Encode(ev)
		if want := "-qBSEUDWf6b7ZBxySzj3-ATH8IjxbduXRpuT2YxryQg"; fp != want {
			t.Errorf("fingerprint %s, pinned %s", fp, want)
		}
	})
}

// FuzzFingerprint: whatever a client sends, once decoded and normalized, its
// fingerprint is deterministic, blind to the stamps, and read back the same
// from the stored form.
func FuzzFingerprint(f *testing.F) {
	for _, ev := range []string{
		orderJSONProtoNames,
		`{"customer_updated":{"customer_id":"c1","traits":{"b":"2","a":"1"," a":"3"}},"occurred_at":"2025-06-01T10:00:00Z"}`,
		`{"ticket_opened":{"customer_id":"c1","ticket_id":"t1"},"occurred_at":"2025-06-01T10:00:00Z","id":"t1"}`,
		`{"survey_answered":{"customer_id":"c1","kind":"SURVEY_KIND_CSAT","score":4},"occurred_at":"2025-06-01T10:00:00Z"}`,
	} {
		f.Add([]byte(`{"events":[` + ev + `]}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		events, _, err := DecodeBatch(bytes.NewReader(body))
		if err != nil {
			return
		}
		for _, ev := range events {
			if ev == nil {
				continue
			}
			Normalize(ev, "acme", testNow, func() string { return "generated" })
			data, fp, err := Encode(ev)
			if err != nil {
				return // not encodable (invalid UTF-8): Validate rejects it first
			}
			if _, again, _ := Encode(proto.Clone(ev).(*eventsv1.Event)); again != fp {
				t.Fatalf("two fingerprints for one event %v", ev)
			}
			restamped := proto.Clone(ev).(*eventsv1.Event)
			Normalize(restamped, "other", testNow.Add(time.Minute), nil)
			if _, other, _ := Encode(restamped); other != fp {
				t.Fatalf("the stamps changed the fingerprint of %v", ev)
			}
			if got, err := FingerprintOf(data); err != nil || got != fp {
				t.Fatalf("stored form fingerprints %q, %v; want %q", got, err, fp)
			}
		}
	})
}
