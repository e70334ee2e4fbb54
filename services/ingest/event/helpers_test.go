package event

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// testNow is the server clock in tests.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func envelope(id string) *eventsv1.Event {
	return &eventsv1.Event{
		Id:         id,
		TenantId:   "acme",
		OccurredAt: timestamppb.New(testNow.Add(-time.Hour)),
		ReceivedAt: timestamppb.New(testNow),
		Source:     "test",
	}
}

func validCustomerUpdated() *eventsv1.Event {
	ev := envelope("evt-customer-1")
	ev.Type = TypeCustomerUpdated
	ev.Payload = &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{
		CustomerId: "c1",
		Email:      "ana@example.com",
		Phone:      "+44 20 7946 0958",
		FirstName:  "Ana",
		LastName:   "Tehrani",
		Locale:     "fa-IR",
		TimeZone:   "Asia/Tehran",
		Consent: &eventsv1.Consent{
			EmailMarketing: eventsv1.ConsentState_CONSENT_STATE_GRANTED,
			SmsMarketing:   eventsv1.ConsentState_CONSENT_STATE_REVOKED,
		},
		Traits: map[string]string{"renewal_date": "2025-09-01", "tier": "gold"},
	}}
	return ev
}

func validOrderPlaced() *eventsv1.Event {
	ev := envelope("evt-order-1")
	ev.Type = TypeOrderPlaced
	ev.Payload = &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
		CustomerId: "c1",
		OrderId:    "o1",
		Total:      &eventsv1.Money{AmountMinor: 12345, Currency: "GBP"},
		Items: []*eventsv1.LineItem{{
			Sku: "SKU-1", Name: "Mug", Quantity: 2,
			UnitPrice: &eventsv1.Money{AmountMinor: 600, Currency: "GBP"},
		}},
		CouponCode: "WELCOME10",
	}}
	return ev
}

func validOrderRefunded() *eventsv1.Event {
	ev := envelope("evt-refund-1")
	ev.Type = TypeOrderRefunded
	ev.Payload = &eventsv1.Event_OrderRefunded{OrderRefunded: &eventsv1.OrderRefunded{
		CustomerId: "c1", OrderId: "o1", RefundId: "r1",
		Amount: &eventsv1.Money{AmountMinor: 500, Currency: "EUR"},
		Reason: "damaged",
	}}
	return ev
}

func validTicketOpened() *eventsv1.Event {
	ev := envelope("evt-ticket-1")
	ev.Type = TypeTicketOpened
	ev.Payload = &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{
		CustomerId: "c1", TicketId: "t1",
		Category: eventsv1.TicketCategory_TICKET_CATEGORY_DELIVERY,
		Subject:  "Where is my parcel?",
	}}
	return ev
}

func validTicketResolved() *eventsv1.Event {
	ev := envelope("evt-ticket-2")
	ev.Type = TypeTicketResolved
	ev.Payload = &eventsv1.Event_TicketResolved{TicketResolved: &eventsv1.TicketResolved{
		CustomerId: "c1", TicketId: "t1", Resolution: "re-shipped",
	}}
	return ev
}

func validSurveyAnswered() *eventsv1.Event {
	ev := envelope("evt-survey-1")
	ev.Type = TypeSurveyAnswered
	ev.Payload = &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
		CustomerId: "c1", SurveyId: "post-purchase",
		Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: 9, Comment: "great",
	}}
	return ev
}
