package facts

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ev(id string, p any) *eventsv1.Event {
	e := &eventsv1.Event{Id: id, TenantId: "shop", OccurredAt: timestamppb.New(at)}
	switch p := p.(type) {
	case *eventsv1.OrderPlaced:
		e.Payload = &eventsv1.Event_OrderPlaced{OrderPlaced: p}
	case *eventsv1.TicketOpened:
		e.Payload = &eventsv1.Event_TicketOpened{TicketOpened: p}
	case *eventsv1.TicketResolved:
		e.Payload = &eventsv1.Event_TicketResolved{TicketResolved: p}
	case *eventsv1.SurveyAnswered:
		e.Payload = &eventsv1.Event_SurveyAnswered{SurveyAnswered: p}
	case *eventsv1.CustomerUpdated:
		e.Payload = &eventsv1.Event_CustomerUpdated{CustomerUpdated: p}
	case *eventsv1.OrderRefunded:
		e.Payload = &eventsv1.Event_OrderRefunded{OrderRefunded: p}
	}
	return e
}

func TestAdd(t *testing.T) {
	const subject = "retain.events.shop.x"
	money := &eventsv1.Money{AmountMinor: 4250, Currency: "EUR"}
	tests := []struct {
		name    string
		subject string
		ev      *eventsv1.Event
		wantOK  bool
		wantErr string
		check   func(t *testing.T, b Batch)
	}{
		{"order", subject, ev("o1", &eventsv1.OrderPlaced{CustomerId: "c", OrderId: "o-1", Total: money}), true, "", func(t *testing.T, b Batch) {
			if len(b.Orders) != 1 || b.Orders[0] != (Order{Tenant: "shop", OrderID: "o-1", CustomerID: "c", EventID: "o1", PlacedAt: at, AmountMinor: 4250, Currency: "EUR"}) {
				t.Fatalf("%+v", b.Orders)
			}
		}},
		{"ticket without category is OTHER", subject, ev("t1", &eventsv1.TicketOpened{CustomerId: "c", TicketId: "t-1"}), true, "", func(t *testing.T, b Batch) {
			if b.Opened[0].Category != int16(eventsv1.TicketCategory_TICKET_CATEGORY_OTHER) {
				t.Fatalf("%+v", b.Opened)
			}
		}},
		{"resolved", subject, ev("r1", &eventsv1.TicketResolved{CustomerId: "c", TicketId: "t-1"}), true, "", nil},
		{"nps", subject, ev("s1", &eventsv1.SurveyAnswered{CustomerId: "c", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: 0}), true, "", func(t *testing.T, b Batch) {
			if b.Answers[0].AnswerID != "s1" || b.Answers[0].Score != 0 {
				t.Fatalf("%+v", b.Answers)
			}
		}},
		{"renewal", subject, ev("u1", &eventsv1.CustomerUpdated{CustomerId: "c", Traits: map[string]string{"renewal_date": "2026-04-01"}}), true, "", func(t *testing.T, b Batch) {
			if d := b.Renewals[0].Date; d == nil || !d.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("%+v", b.Renewals)
			}
		}},
		{"renewal cleared", subject, ev("u2", &eventsv1.CustomerUpdated{CustomerId: "c", Traits: map[string]string{"renewal_date": ""}}), true, "", func(t *testing.T, b Batch) {
			if b.Renewals[0].Date != nil {
				t.Fatalf("%+v", b.Renewals)
			}
		}},
		{"profile without renewal is ignored", subject, ev("u3", &eventsv1.CustomerUpdated{CustomerId: "c", Locale: "fa-IR"}), false, "", nil},
		{"malformed renewal is ignored", subject, ev("u4", &eventsv1.CustomerUpdated{CustomerId: "c", Traits: map[string]string{"renewal_date": "next spring"}}), false, "", nil},
		{"refund is ignored", subject, ev("f1", &eventsv1.OrderRefunded{CustomerId: "c", OrderId: "o", RefundId: "f", Amount: money}), false, "", nil},
		{"no customer", subject, ev("o2", &eventsv1.OrderPlaced{OrderId: "o-2", Total: money}), false, "order_placed.customer_id: is required", nil},
		{"no total", subject, ev("o3", &eventsv1.OrderPlaced{CustomerId: "c", OrderId: "o-3"}), false, "order_placed.total: is required", nil},
		{"nps out of range", subject, ev("s2", &eventsv1.SurveyAnswered{CustomerId: "c", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: 11}), false, "must be 0-10", nil},
		{"csat out of range", subject, ev("s3", &eventsv1.SurveyAnswered{CustomerId: "c", Kind: eventsv1.SurveyKind_SURVEY_KIND_CSAT, Score: 0}), false, "must be 1-5", nil},
		{"survey kind unset", subject, ev("s4", &eventsv1.SurveyAnswered{CustomerId: "c", Score: 3}), false, "survey_answered.kind", nil},
		{"no payload", subject, ev("x", nil), false, "payload: is required", nil},
		{"no id", subject, ev("", &eventsv1.TicketResolved{CustomerId: "c", TicketId: "t"}), false, "id: is required", nil},
		{"tenant mismatch", "retain.events.other.order.placed", ev("o4", &eventsv1.OrderPlaced{CustomerId: "c", OrderId: "o", Total: money}), false, "differs from the subject's tenant", nil},
		{"bad subject", "retain.signals.shop.x", ev("o5", &eventsv1.OrderPlaced{CustomerId: "c", OrderId: "o", Total: money}), false, "is not retain.events", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Batch
			c, ok, err := b.Add(tt.subject, testenv.Marshal(t, tt.ev))
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.wantOK {
				t.Fatalf("ok %v err %v, want ok %v", ok, err, tt.wantOK)
			}
			if ok && c != (Customer{"shop", "c"}) {
				t.Fatalf("customer %+v", c)
			}
			if tt.check != nil {
				tt.check(t, b)
			}
		})
	}
	t.Run("no occurred_at", func(t *testing.T) {
		e := ev("o6", &eventsv1.OrderPlaced{CustomerId: "c", OrderId: "o", Total: money})
		e.OccurredAt = nil
		var b Batch
		if _, _, err := b.Add(subject, testenv.Marshal(t, e)); err == nil || !strings.Contains(err.Error(), "occurred_at") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		var b Batch
		if _, _, err := b.Add(subject, []byte{0xff, 0xff, 0x01}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%v", err)
		}
	})
}

// FuzzAdd: any bytes on any subject either decode into facts or are
// rejected as invalid; nothing panics and accepted facts are complete.
func FuzzAdd(f *testing.F) {
	f.Add("retain.events.shop.order.placed", testenv.Marshal(f, ev("o1", &eventsv1.OrderPlaced{CustomerId: "c", OrderId: "o", Total: &eventsv1.Money{AmountMinor: 1, Currency: "EUR"}})))
	f.Add("retain.events.shop.survey.answered", testenv.Marshal(f, ev("s1", &eventsv1.SurveyAnswered{CustomerId: "c", Kind: 2, Score: 4})))
	f.Add("retain.events.shop.customer.updated", testenv.Marshal(f, ev("u1", &eventsv1.CustomerUpdated{CustomerId: "c", Traits: map[string]string{"renewal_date": "2026-01-01"}})))
	f.Add("retain.events..x", []byte{})
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		var b Batch
		c, ok, err := b.Add(subject, data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || ok {
				t.Fatalf("error %v (ok %v) does not wrap ErrInvalid", err, ok)
			}
			return
		}
		if ok && (c.Tenant == "" || c.ID == "") {
			t.Fatalf("accepted fact without tenant or customer: %+v", c)
		}
		n := len(b.Orders) + len(b.Opened) + len(b.Resolved) + len(b.Answers) + len(b.Renewals)
		if (n == 1) != ok {
			t.Fatalf("ok %v with %d facts", ok, n)
		}
	})
}
