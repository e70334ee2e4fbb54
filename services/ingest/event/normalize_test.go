package event

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func TestNormalize(t *testing.T) {
	fixedID := func() string { return "generated-id" }
	tests := []struct {
		name  string
		in    *eventsv1.Event
		check func(t *testing.T, ev *eventsv1.Event)
	}{
		{
			name: "tenant comes from the credential, not the client",
			in:   mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.TenantId = "someone-else" }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if ev.TenantId != "acme-eu" {
					t.Errorf("tenant_id = %q", ev.TenantId)
				}
			},
		},
		{
			name: "received_at is the server clock",
			in:   mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.ReceivedAt = timestamppb.New(testNow.Add(-100 * 3600e9)) }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if !ev.ReceivedAt.AsTime().Equal(testNow) {
					t.Errorf("received_at = %v", ev.ReceivedAt.AsTime())
				}
			},
		},
		{
			name: "missing id is generated",
			in:   mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = "  " }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if ev.Id != "generated-id" {
					t.Errorf("id = %q", ev.Id)
				}
			},
		},
		{
			name: "client id is kept, trimmed",
			in:   mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = " client-1\t" }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if ev.Id != "client-1" {
					t.Errorf("id = %q", ev.Id)
				}
			},
		},
		{
			name: "type is set from the payload",
			in:   mutate(validTicketResolved(), func(ev *eventsv1.Event) { ev.Type = "" }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if ev.Type != TypeTicketResolved {
					t.Errorf("type = %q", ev.Type)
				}
			},
		},
		{
			name: "a disagreeing type is kept for Validate to report",
			in:   mutate(validTicketResolved(), func(ev *eventsv1.Event) { ev.Type = " order.placed " }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if ev.Type != "order.placed" {
					t.Errorf("type = %q", ev.Type)
				}
			},
		},
		{
			name: "order strings trimmed and currencies upper-cased",
			in: mutate(validOrderPlaced(), func(ev *eventsv1.Event) {
				o := ev.GetOrderPlaced()
				o.CustomerId, o.OrderId, o.CouponCode = " c1 ", "o1\n", " X "
				o.Total.Currency = " gbp"
				o.Items[0].Sku, o.Items[0].Name = " s ", " n "
				o.Items[0].UnitPrice.Currency = "eur"
				o.Items = append(o.Items, nil, &eventsv1.LineItem{Quantity: 1})
			}),
			check: func(t *testing.T, ev *eventsv1.Event) {
				o := ev.GetOrderPlaced()
				if o.CustomerId != "c1" || o.OrderId != "o1" || o.CouponCode != "X" {
					t.Errorf("ids not trimmed: %q %q %q", o.CustomerId, o.OrderId, o.CouponCode)
				}
				if o.Total.Currency != "GBP" || o.Items[0].UnitPrice.Currency != "EUR" {
					t.Errorf("currencies: %q %q", o.Total.Currency, o.Items[0].UnitPrice.Currency)
				}
				if o.Items[0].Sku != "s" || o.Items[0].Name != "n" {
					t.Errorf("item: %q %q", o.Items[0].Sku, o.Items[0].Name)
				}
			},
		},
		{
			name: "refund currency upper-cased",
			in:   mutate(validOrderRefunded(), func(ev *eventsv1.Event) { ev.GetOrderRefunded().Amount.Currency = "jpy" }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if c := ev.GetOrderRefunded().Amount.Currency; c != "JPY" {
					t.Errorf("currency = %q", c)
				}
			},
		},
		{
			name: "unspecified ticket category becomes OTHER",
			in: mutate(validTicketOpened(), func(ev *eventsv1.Event) {
				ev.GetTicketOpened().Category = eventsv1.TicketCategory_TICKET_CATEGORY_UNSPECIFIED
			}),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if c := ev.GetTicketOpened().Category; c != eventsv1.TicketCategory_TICKET_CATEGORY_OTHER {
					t.Errorf("category = %v", c)
				}
			},
		},
		{
			name: "specified ticket category is kept",
			in:   validTicketOpened(),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if c := ev.GetTicketOpened().Category; c != eventsv1.TicketCategory_TICKET_CATEGORY_DELIVERY {
					t.Errorf("category = %v", c)
				}
			},
		},
		{
			name: "customer fields trimmed, locale separator fixed, trait keys deduplicated deterministically",
			in: mutate(validCustomerUpdated(), func(ev *eventsv1.Event) {
				c := ev.GetCustomerUpdated()
				c.Email, c.Locale, c.TimeZone = " ana@example.com ", " en_GB ", " Europe/London "
				c.Traits = map[string]string{" tier": " silver ", "tier": "gold", "vip ": " yes "}
			}),
			check: func(t *testing.T, ev *eventsv1.Event) {
				c := ev.GetCustomerUpdated()
				if c.Email != "ana@example.com" || c.Locale != "en-GB" || c.TimeZone != "Europe/London" {
					t.Errorf("got %q %q %q", c.Email, c.Locale, c.TimeZone)
				}
				want := map[string]string{"tier": "silver", "vip": "yes"}
				if len(c.Traits) != len(want) || c.Traits["tier"] != want["tier"] || c.Traits["vip"] != want["vip"] {
					t.Errorf("traits = %v, want %v", c.Traits, want)
				}
			},
		},
		{
			name: "survey and ticket text trimmed",
			in:   mutate(validSurveyAnswered(), func(ev *eventsv1.Event) { ev.GetSurveyAnswered().Comment = " ok \n" }),
			check: func(t *testing.T, ev *eventsv1.Event) {
				if c := ev.GetSurveyAnswered().Comment; c != "ok" {
					t.Errorf("comment = %q", c)
				}
			},
		},
		{
			name: "event without payload is left for Validate",
			in:   &eventsv1.Event{},
			check: func(t *testing.T, ev *eventsv1.Event) {
				if ev.Type != "" || ev.Id != "generated-id" {
					t.Errorf("type=%q id=%q", ev.Type, ev.Id)
				}
			},
		},
		{
			name: "nil payload message does not panic",
			in:   &eventsv1.Event{Payload: &eventsv1.Event_OrderPlaced{}},
			check: func(t *testing.T, ev *eventsv1.Event) {
				if ev.Type != TypeOrderPlaced {
					t.Errorf("type = %q", ev.Type)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			Normalize(tt.in, "acme-eu", testNow, fixedID)
			tt.check(t, tt.in)
		})
	}
}

func TestNormalizeIsIdempotent(t *testing.T) {
	for _, ev := range []*eventsv1.Event{validCustomerUpdated(), validOrderPlaced(), validOrderRefunded(), validTicketOpened(), validTicketResolved(), validSurveyAnswered()} {
		t.Run(TypeOf(ev), func(t *testing.T) {
			Normalize(ev, "acme", testNow, func() string { return "x" })
			once := proto.Clone(ev)
			Normalize(ev, "acme", testNow, func() string { return "y" })
			if !proto.Equal(once, ev) {
				t.Errorf("second Normalize changed the event:\n%v\n%v", once, ev)
			}
			if errs := Validate(ev, testNow); len(errs) != 0 {
				t.Errorf("normalized valid event fails: %s", fieldErrorsString(errs))
			}
		})
	}
}
