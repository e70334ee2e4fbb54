package event

import (
	"testing"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func TestTypeOf(t *testing.T) {
	tests := []struct {
		name string
		ev   *eventsv1.Event
		want string
	}{
		{"customer updated", validCustomerUpdated(), "customer.updated"},
		{"order placed", validOrderPlaced(), "order.placed"},
		{"order refunded", validOrderRefunded(), "order.refunded"},
		{"ticket opened", validTicketOpened(), "ticket.opened"},
		{"ticket resolved", validTicketResolved(), "ticket.resolved"},
		{"survey answered", validSurveyAnswered(), "survey.answered"},
		{"no payload is empty", &eventsv1.Event{}, ""},
		{"nil event is empty", nil, ""},
		{"type field is ignored", &eventsv1.Event{Type: "order.placed"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TypeOf(tt.ev); got != tt.want {
				t.Errorf("TypeOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTypesAreKnownAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, typ := range Types() {
		if !IsKnownType(typ) {
			t.Errorf("%q from Types() is not known", typ)
		}
		if seen[typ] {
			t.Errorf("%q listed twice", typ)
		}
		seen[typ] = true
	}
	if len(seen) != 6 {
		t.Errorf("got %d types, want 6", len(seen))
	}
	for _, bad := range []string{"", "order", "Order.Placed", "order.placed ", "churn.risk_changed"} {
		if IsKnownType(bad) {
			t.Errorf("IsKnownType(%q) = true", bad)
		}
	}
}
