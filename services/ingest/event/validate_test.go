package event

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

func TestValidateAcceptsValidEvents(t *testing.T) {
	tests := []struct {
		name string
		ev   *eventsv1.Event
	}{
		{"customer updated", validCustomerUpdated()},
		{"order placed", validOrderPlaced()},
		{"order refunded", validOrderRefunded()},
		{"ticket opened", validTicketOpened()},
		{"ticket resolved", validTicketResolved()},
		{"survey answered", validSurveyAnswered()},
		{"customer with only an id", func() *eventsv1.Event {
			ev := envelope("e")
			ev.Payload = &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{CustomerId: "c"}}
			return ev
		}()},
		{"order with zero total and no items", mutate(validOrderPlaced(), func(ev *eventsv1.Event) {
			ev.GetOrderPlaced().Total.AmountMinor = 0
			ev.GetOrderPlaced().Items = nil
		})},
		{"without type and tenant", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Type = ""; ev.TenantId = "" })},
		{"occurred exactly 24h ahead", mutate(validOrderPlaced(), func(ev *eventsv1.Event) {
			ev.OccurredAt = timestamppb.New(testNow.Add(24 * time.Hour))
		})},
		{"occurred at the epoch", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.OccurredAt = timestamppb.New(time.Unix(0, 0)) })},
		{"id of 128 printable bytes", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = strings.Repeat("~", 128) })},
		{"unspecified ticket category", mutate(validTicketOpened(), func(ev *eventsv1.Event) {
			ev.GetTicketOpened().Category = eventsv1.TicketCategory_TICKET_CATEGORY_UNSPECIFIED
		})},
		{"csat 1", survey(eventsv1.SurveyKind_SURVEY_KIND_CSAT, 1)},
		{"csat 5", survey(eventsv1.SurveyKind_SURVEY_KIND_CSAT, 5)},
		{"nps 0", survey(eventsv1.SurveyKind_SURVEY_KIND_NPS, 0)},
		{"nps 10", survey(eventsv1.SurveyKind_SURVEY_KIND_NPS, 10)},
		{"amount at the sanity limit", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total.AmountMinor = MaxAmountMinor })},
		{"UTC time zone", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().TimeZone = "UTC" })},
		{"plain language locale", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Locale = "ar" })},
		{"64 traits", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) {
			ev.GetCustomerUpdated().Traits = manyTraits(64)
		})},
		{"multibyte text at the byte limit", mutate(validTicketOpened(), func(ev *eventsv1.Event) {
			ev.GetTicketOpened().Subject = strings.Repeat("é", MaxTextLen/2)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := Validate(tt.ev, testNow); len(errs) != 0 {
				t.Errorf("Validate: %v", fieldErrorsString(errs))
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name      string
		ev        *eventsv1.Event
		field     string
		wantParts []string // each must appear in the description
	}{
		// Envelope.
		{"nil event", nil, "", []string{"required"}},
		{"missing payload", envelope("e"), "payload", []string{"one of customer_updated, order_placed, order_refunded, ticket_opened, ticket_resolved, survey_answered is required"}},
		{"missing id", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = "" }), "id", []string{"required"}},
		{"id too long", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = strings.Repeat("a", 129) }), "id", []string{"129 bytes", "at most 128"}},
		{"id with a space", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = "a b" }), "id", []string{"printable ASCII without spaces", "byte 1", "0x20"}},
		{"id with non-ASCII", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = "caf\u00e9" }), "id", []string{"printable ASCII", "byte 3"}},
		{"id with a control byte", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Id = "a\nb" }), "id", []string{"0x0a"}},
		{"bad tenant", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.TenantId = "Acme.Corp" }), "tenant_id", []string{"not a valid tenant id"}},
		{"source too long", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Source = strings.Repeat("s", 257) }), "source", []string{"at most 256"}},
		{"unknown type", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Type = "order.created" }), "type", []string{`unknown type "order.created"`, "customer.updated, order.placed, order.refunded, ticket.opened, ticket.resolved, survey.answered"}},
		{"type disagrees with payload", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.Type = "order.refunded" }), "type", []string{`"order.refunded" does not match the payload, which is order.placed`}},
		{"missing occurred_at", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.OccurredAt = nil }), "occurred_at", []string{"is required"}},
		{"occurred_at in the future", mutate(validOrderPlaced(), func(ev *eventsv1.Event) {
			ev.OccurredAt = timestamppb.New(testNow.Add(3*24*time.Hour + 2*time.Hour))
		}), "occurred_at", []string{"is 74h0m0s in the future", "at most 24h0m0s ahead"}},
		{"occurred_at before 1970", mutate(validOrderPlaced(), func(ev *eventsv1.Event) {
			ev.OccurredAt = timestamppb.New(time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC))
		}), "occurred_at", []string{"before 1970-01-01"}},
		{"occurred_at out of range", mutate(validOrderPlaced(), func(ev *eventsv1.Event) {
			ev.OccurredAt = &timestamppb.Timestamp{Seconds: 1, Nanos: 2e9}
		}), "occurred_at", []string{"not a valid timestamp"}},

		// References.
		{"missing customer_id", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().CustomerId = "" }), "order_placed.customer_id", []string{"is required"}},
		{"customer_id too long", mutate(validSurveyAnswered(), func(ev *eventsv1.Event) { ev.GetSurveyAnswered().CustomerId = strings.Repeat("c", 257) }), "survey_answered.customer_id", []string{"257 bytes", "at most 256"}},
		{"blank customer_id", mutate(validTicketResolved(), func(ev *eventsv1.Event) { ev.GetTicketResolved().CustomerId = "  " }), "ticket_resolved.customer_id", []string{"blank"}},
		{"customer_id with a newline", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().CustomerId = "c\n1" }), "customer_updated.customer_id", []string{"control characters"}},
		{"customer_id not UTF-8", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().CustomerId = "c\xff" }), "order_placed.customer_id", []string{"valid UTF-8"}},
		{"missing order_id", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().OrderId = "" }), "order_placed.order_id", []string{"is required"}},
		{"order_id too long", mutate(validOrderRefunded(), func(ev *eventsv1.Event) { ev.GetOrderRefunded().OrderId = strings.Repeat("o", 300) }), "order_refunded.order_id", []string{"at most 256"}},
		{"missing refund_id", mutate(validOrderRefunded(), func(ev *eventsv1.Event) { ev.GetOrderRefunded().RefundId = "" }), "order_refunded.refund_id", []string{"is required"}},
		{"missing ticket_id", mutate(validTicketOpened(), func(ev *eventsv1.Event) { ev.GetTicketOpened().TicketId = "" }), "ticket_opened.ticket_id", []string{"is required"}},
		{"resolved ticket_id too long", mutate(validTicketResolved(), func(ev *eventsv1.Event) { ev.GetTicketResolved().TicketId = strings.Repeat("t", 257) }), "ticket_resolved.ticket_id", []string{"at most 256"}},
		{"survey_id too long", mutate(validSurveyAnswered(), func(ev *eventsv1.Event) { ev.GetSurveyAnswered().SurveyId = strings.Repeat("s", 257) }), "survey_answered.survey_id", []string{"at most 256"}},
		{"coupon too long", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().CouponCode = strings.Repeat("x", 257) }), "order_placed.coupon_code", []string{"at most 256"}},
		{"sku too long", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Items[0].Sku = strings.Repeat("x", 257) }), "order_placed.items[0].sku", []string{"at most 256"}},

		// Free text.
		{"subject too long", mutate(validTicketOpened(), func(ev *eventsv1.Event) { ev.GetTicketOpened().Subject = strings.Repeat("s", 4097) }), "ticket_opened.subject", []string{"4097 bytes", "at most 4096"}},
		{"comment too long", mutate(validSurveyAnswered(), func(ev *eventsv1.Event) { ev.GetSurveyAnswered().Comment = strings.Repeat("c", 4097) }), "survey_answered.comment", []string{"at most 4096"}},
		{"reason too long", mutate(validOrderRefunded(), func(ev *eventsv1.Event) { ev.GetOrderRefunded().Reason = strings.Repeat("r", 4097) }), "order_refunded.reason", []string{"at most 4096"}},
		{"resolution too long", mutate(validTicketResolved(), func(ev *eventsv1.Event) { ev.GetTicketResolved().Resolution = strings.Repeat("r", 4097) }), "ticket_resolved.resolution", []string{"at most 4096"}},
		{"first name too long", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().FirstName = strings.Repeat("n", 4097) }), "customer_updated.first_name", []string{"at most 4096"}},
		{"last name not UTF-8", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().LastName = "\xc3" }), "customer_updated.last_name", []string{"valid UTF-8"}},
		{"item name too long", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Items[0].Name = strings.Repeat("n", 4097) }), "order_placed.items[0].name", []string{"at most 4096"}},
		{"subject not UTF-8", mutate(validTicketOpened(), func(ev *eventsv1.Event) { ev.GetTicketOpened().Subject = "bad \xff" }), "ticket_opened.subject", []string{"valid UTF-8"}},
		// Postgres's text cannot hold NUL: accepted, it would fail every consumer that stores it.
		{"subject with a NUL", mutate(validTicketOpened(), func(ev *eventsv1.Event) { ev.GetTicketOpened().Subject = "late\x00 again" }), "ticket_opened.subject", []string{"NUL byte", "at byte 4"}},
		{"comment with a NUL", mutate(validSurveyAnswered(), func(ev *eventsv1.Event) { ev.GetSurveyAnswered().Comment = "\x00" }), "survey_answered.comment", []string{"NUL byte"}},
		{"trait value with a NUL", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Traits = map[string]string{"tier": "gold\x00"} }), `customer_updated.traits["tier"]`, []string{"NUL byte"}},
		{"trait key with a NUL", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Traits = map[string]string{"ti\x00er": "gold"} }), `customer_updated.traits["ti\x00er"]`, []string{"NUL byte"}},

		// Money.
		{"missing total", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total = nil }), "order_placed.total", []string{"is required"}},
		{"negative total", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total.AmountMinor = -1 }), "order_placed.total.amount_minor", []string{"must not be negative, got -1"}},
		{"total over the sanity limit", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total.AmountMinor = MaxAmountMinor + 1 }), "order_placed.total.amount_minor", []string{"sanity limit"}},
		{"missing currency", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total.Currency = "" }), "order_placed.total.currency", []string{"is required", "ISO 4217"}},
		{"unknown currency", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total.Currency = "ABC" }), "order_placed.total.currency", []string{`"ABC" is not an ISO 4217 currency code`}},
		{"lower-case currency", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total.Currency = "gbp" }), "order_placed.total.currency", []string{"upper case", `"GBP"`}},
		{"no-currency code XXX", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Total.Currency = "XXX" }), "order_placed.total.currency", []string{"not an ISO 4217"}},
		{"negative unit price", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Items[0].UnitPrice.AmountMinor = -5 }), "order_placed.items[0].unit_price.amount_minor", []string{"negative"}},
		{"unit price currency unknown", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Items[0].UnitPrice.Currency = "ZZZ" }), "order_placed.items[0].unit_price.currency", []string{"ISO 4217"}},
		{"zero refund", mutate(validOrderRefunded(), func(ev *eventsv1.Event) { ev.GetOrderRefunded().Amount.AmountMinor = 0 }), "order_refunded.amount.amount_minor", []string{"greater than 0"}},
		{"negative refund", mutate(validOrderRefunded(), func(ev *eventsv1.Event) { ev.GetOrderRefunded().Amount.AmountMinor = -10 }), "order_refunded.amount.amount_minor", []string{"negative"}},
		{"missing refund amount", mutate(validOrderRefunded(), func(ev *eventsv1.Event) { ev.GetOrderRefunded().Amount = nil }), "order_refunded.amount", []string{"is required"}},

		// Line items.
		{"zero quantity", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Items[0].Quantity = 0 }), "order_placed.items[0].quantity", []string{"greater than 0, got 0"}},
		{"negative quantity", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Items[0].Quantity = -2 }), "order_placed.items[0].quantity", []string{"got -2"}},
		{"null line item", mutate(validOrderPlaced(), func(ev *eventsv1.Event) { ev.GetOrderPlaced().Items = append(ev.GetOrderPlaced().Items, nil) }), "order_placed.items[1]", []string{"null"}},
		{"too many line items", mutate(validOrderPlaced(), func(ev *eventsv1.Event) {
			o := ev.GetOrderPlaced()
			for len(o.Items) <= MaxLineItems {
				o.Items = append(o.Items, &eventsv1.LineItem{Quantity: 1})
			}
		}), "order_placed.items", []string{"1001 line items", "at most 1000"}},

		// Tickets and surveys.
		{"unknown ticket category", mutate(validTicketOpened(), func(ev *eventsv1.Event) { ev.GetTicketOpened().Category = 42 }), "ticket_opened.category", []string{"unknown value 42", "TICKET_CATEGORY_BILLING_PRICING"}},
		{"survey kind unspecified", survey(eventsv1.SurveyKind_SURVEY_KIND_UNSPECIFIED, 5), "survey_answered.kind", []string{"is required", "SURVEY_KIND_NPS (score 0-10)", "SURVEY_KIND_CSAT (score 1-5)"}},
		{"survey kind unknown", survey(7, 5), "survey_answered.kind", []string{"unknown value 7"}},
		{"nps 11", survey(eventsv1.SurveyKind_SURVEY_KIND_NPS, 11), "survey_answered.score", []string{"11 is out of range for NPS: must be 0-10"}},
		{"nps -1", survey(eventsv1.SurveyKind_SURVEY_KIND_NPS, -1), "survey_answered.score", []string{"must be 0-10"}},
		{"csat 0", survey(eventsv1.SurveyKind_SURVEY_KIND_CSAT, 0), "survey_answered.score", []string{"0 is out of range for CSAT: must be 1-5"}},
		{"csat 6", survey(eventsv1.SurveyKind_SURVEY_KIND_CSAT, 6), "survey_answered.score", []string{"must be 1-5"}},

		// Customer profile.
		{"email syntax", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Email = "ana.example.com" }), "customer_updated.email", []string{`"ana.example.com" is not an email address`}},
		{"email with display name", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Email = "Ana <ana@example.com>" }), "customer_updated.email", []string{"bare address", `"ana@example.com"`}},
		{"email too long", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) {
			ev.GetCustomerUpdated().Email = strings.Repeat("a", 310) + "@example.com"
		}), "customer_updated.email", []string{"at most 320"}},
		{"phone with letters", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Phone = "call me" }), "customer_updated.phone", []string{"not a phone number"}},
		{"phone too short", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Phone = "+1" }), "customer_updated.phone", []string{"too few digits"}},
		{"phone too long", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Phone = strings.Repeat("1", 65) }), "customer_updated.phone", []string{"at most 64"}},
		{"locale not BCP 47", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Locale = "english!" }), "customer_updated.locale", []string{"not a BCP 47 language tag"}},
		{"locale with underscore", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Locale = "en_GB" }), "customer_updated.locale", []string{`"en-GB"`}},
		{"time zone unknown", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().TimeZone = "Mars/Olympus" }), "customer_updated.time_zone", []string{`"Mars/Olympus" is not an IANA time zone`}},
		{"time zone Local", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().TimeZone = "Local" }), "customer_updated.time_zone", []string{"server's zone"}},
		{"time zone path escape", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().TimeZone = "../../etc/passwd" }), "customer_updated.time_zone", []string{"IANA time zone"}},
		{"email consent unknown", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Consent.EmailMarketing = 9 }), "customer_updated.consent.email_marketing", []string{"unknown value 9", "CONSENT_STATE_GRANTED"}},
		{"sms consent unknown", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Consent.SmsMarketing = -1 }), "customer_updated.consent.sms_marketing", []string{"unknown value -1"}},
		{"too many traits", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Traits = manyTraits(65) }), "customer_updated.traits", []string{"65 entries", "at most 64"}},
		{"trait key too long", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) {
			ev.GetCustomerUpdated().Traits = map[string]string{strings.Repeat("k", 65): "v"}
		}), `customer_updated.traits["` + strings.Repeat("k", 64) + `"...]`, []string{"trait key is 65 bytes"}},
		{"trait key blank", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Traits = map[string]string{"": "v"} }), `customer_updated.traits[""]`, []string{"blank"}},
		{"trait value too long", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) {
			ev.GetCustomerUpdated().Traits = map[string]string{"note": strings.Repeat("v", 1025)}
		}), `customer_updated.traits["note"]`, []string{"1025 bytes", "at most 1024"}},
		{"trait value not UTF-8", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) { ev.GetCustomerUpdated().Traits = map[string]string{"k": "\xff"} }), `customer_updated.traits["k"]`, []string{"valid UTF-8"}},
		{"renewal date not a date", mutate(validCustomerUpdated(), func(ev *eventsv1.Event) {
			ev.GetCustomerUpdated().Traits = map[string]string{"renewal_date": "next tuesday"}
		}), `customer_updated.traits["renewal_date"]`, []string{"YYYY-MM-DD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := Validate(tt.ev, testNow)
			var found *ingestv1.FieldError
			for _, fe := range errs {
				if fe.GetField() == tt.field {
					found = fe
					break
				}
			}
			if found == nil {
				t.Fatalf("no error on field %q; got %s", tt.field, fieldErrorsString(errs))
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(found.GetDescription(), part) {
					t.Errorf("description %q lacks %q", found.GetDescription(), part)
				}
			}
			if len(errs) != 1 {
				t.Errorf("want exactly one error, got %s", fieldErrorsString(errs))
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	ev := validOrderPlaced()
	ev.Id = ""
	ev.OccurredAt = nil
	o := ev.GetOrderPlaced()
	o.CustomerId = ""
	o.Total.Currency = "ABC"
	o.Total.AmountMinor = -1
	got := map[string]bool{}
	for _, fe := range Validate(ev, testNow) {
		got[fe.GetField()] = true
	}
	for _, f := range []string{"id", "occurred_at", "order_placed.customer_id", "order_placed.total.currency", "order_placed.total.amount_minor"} {
		if !got[f] {
			t.Errorf("missing error on %s; got %v", f, got)
		}
	}
}

func TestValidateErrorOrderIsDeterministic(t *testing.T) {
	ev := validCustomerUpdated()
	ev.GetCustomerUpdated().Traits = map[string]string{"a": "\xff", "b": "\xff", "c": "\xff", "d": "\xff"}
	first := fieldErrorsString(Validate(ev, testNow))
	for range 20 {
		if got := fieldErrorsString(Validate(ev, testNow)); got != first {
			t.Fatalf("order changed:\n%s\n%s", first, got)
		}
	}
}

func mutate(ev *eventsv1.Event, fn func(*eventsv1.Event)) *eventsv1.Event {
	fn(ev)
	return ev
}

func survey(kind eventsv1.SurveyKind, score int32) *eventsv1.Event {
	return mutate(validSurveyAnswered(), func(ev *eventsv1.Event) {
		ev.GetSurveyAnswered().Kind = kind
		ev.GetSurveyAnswered().Score = score
	})
}

func manyTraits(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m["k"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	return m
}

func fieldErrorsString(errs []*ingestv1.FieldError) string {
	var b strings.Builder
	for _, fe := range errs {
		b.WriteString("\n  " + fe.GetField() + ": " + fe.GetDescription())
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}
