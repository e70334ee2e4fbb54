// Package event holds everything ingest does to an incoming fact before it is
// published: decoding the protojson HTTP body, naming the event type,
// normalising server-owned fields and validating the content. It is pure (no
// network, no database) so that ingest's HTTP and gRPC edges and `retain
// import` all apply exactly the same rules.
package event

import (
	"strings"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// Canonical event type names. They appear in the Event.type field, in the
// Retain-Event-Type header and as the last two tokens of the subject
// retain.events.<tenant>.<type>.
const (
	TypeCustomerUpdated = "customer.updated"
	TypeOrderPlaced     = "order.placed"
	TypeOrderRefunded   = "order.refunded"
	TypeTicketOpened    = "ticket.opened"
	TypeTicketResolved  = "ticket.resolved"
	TypeSurveyAnswered  = "survey.answered"
)

// Types returns the canonical type names in payload field order. It returns a
// fresh slice so callers cannot change the package's view of the set.
func Types() []string {
	return []string{
		TypeCustomerUpdated,
		TypeOrderPlaced,
		TypeOrderRefunded,
		TypeTicketOpened,
		TypeTicketResolved,
		TypeSurveyAnswered,
	}
}

// IsKnownType reports whether name is one of the canonical type names.
func IsKnownType(name string) bool {
	switch name {
	case TypeCustomerUpdated, TypeOrderPlaced, TypeOrderRefunded,
		TypeTicketOpened, TypeTicketResolved, TypeSurveyAnswered:
		return true
	}
	return false
}

// TypeOf returns the canonical type name decided by the event's payload, or ""
// when the event has no payload. The type field is not consulted: the payload
// is the source of truth.
func TypeOf(ev *eventsv1.Event) string {
	switch ev.GetPayload().(type) {
	case *eventsv1.Event_CustomerUpdated:
		return TypeCustomerUpdated
	case *eventsv1.Event_OrderPlaced:
		return TypeOrderPlaced
	case *eventsv1.Event_OrderRefunded:
		return TypeOrderRefunded
	case *eventsv1.Event_TicketOpened:
		return TypeTicketOpened
	case *eventsv1.Event_TicketResolved:
		return TypeTicketResolved
	case *eventsv1.Event_SurveyAnswered:
		return TypeSurveyAnswered
	}
	return ""
}

// payloadFieldNames is the protojson (proto) names of the payload oneof
// members, used in messages that must tell a client what it can send.
const payloadFieldNames = "customer_updated, order_placed, order_refunded, ticket_opened, ticket_resolved, survey_answered"

func knownTypesList() string {
	return strings.Join(Types(), ", ")
}
