// Package facts turns the events churn-signal consumes into the rows of its
// projection: pure decoding and validation, no I/O.
package facts

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// EventTypes are the facts the projection needs (the consumer's EventTypes).
var EventTypes = []string{"order.placed", "ticket.opened", "ticket.resolved", "survey.answered", "customer.updated"}

// RenewalTrait is the customer trait holding the next renewal date.
const RenewalTrait = "renewal_date"

// Order is an order.placed fact, keyed by (tenant, order id).
type Order struct {
	Tenant, OrderID, CustomerID, EventID string
	PlacedAt                             time.Time
	AmountMinor                          int64
	Currency                             string
}

// TicketOpened is a ticket.opened fact, keyed by (tenant, ticket id).
type TicketOpened struct {
	Tenant, TicketID, CustomerID, EventID string
	OpenedAt                              time.Time
	Category                              int16
}

// TicketResolved is a ticket.resolved fact, keyed by (tenant, ticket id).
type TicketResolved struct {
	Tenant, TicketID, CustomerID string
	ResolvedAt                   time.Time
}

// Answer is a survey.answered fact, keyed by (tenant, event id): each
// answer is its own fact.
type Answer struct {
	Tenant, AnswerID, CustomerID, SurveyID string
	Kind, Score                            int16
	AnsweredAt                             time.Time
}

// Renewal is a customer.updated fact that states the renewal_date trait,
// keyed by (tenant, event id) so the date known at any instant can be found.
// Date is nil when the trait was cleared.
type Renewal struct {
	Tenant, EventID, CustomerID string
	Date                        *time.Time
	UpdatedAt                   time.Time
}

// Batch is the facts of a batch of events.
type Batch struct {
	Orders   []Order
	Opened   []TicketOpened
	Resolved []TicketResolved
	Answers  []Answer
	Renewals []Renewal
}

// Customer names one customer of one tenant.
type Customer struct{ Tenant, ID string }

// ErrInvalid marks an event that can never be applied; the consumer
// dead-letters it with the message.
var ErrInvalid = errors.New("invalid event")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Add decodes one event published on subject and adds its fact to b. It
// returns the customer it concerns; ok is false for events of types the
// projection does not use (they are acknowledged and ignored). An error
// wraps ErrInvalid.
func (b *Batch) Add(subject string, data []byte) (c Customer, ok bool, err error) {
	tenant, _, ev, err := bus.DecodeEvent(subject, data)
	if err != nil {
		return c, false, invalid("%v", err)
	}
	if ev.GetId() == "" {
		return c, false, invalid("id: is required")
	}
	at := ev.GetOccurredAt().AsTime()
	need := func(field, v string) error {
		if v == "" {
			return invalid("%s: is required", field)
		}
		return nil
	}
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_OrderPlaced:
		o := p.OrderPlaced
		if err := errors.Join(need("order_placed.customer_id", o.GetCustomerId()), need("order_placed.order_id", o.GetOrderId())); err != nil {
			return c, false, err
		}
		if o.GetTotal() == nil {
			return c, false, invalid("order_placed.total: is required")
		}
		b.Orders = append(b.Orders, Order{Tenant: tenant, OrderID: o.GetOrderId(), CustomerID: o.GetCustomerId(), EventID: ev.GetId(),
			PlacedAt: at, AmountMinor: o.GetTotal().GetAmountMinor(), Currency: o.GetTotal().GetCurrency()})
		return Customer{tenant, o.GetCustomerId()}, true, nil
	case *eventsv1.Event_TicketOpened:
		t := p.TicketOpened
		if err := errors.Join(need("ticket_opened.customer_id", t.GetCustomerId()), need("ticket_opened.ticket_id", t.GetTicketId())); err != nil {
			return c, false, err
		}
		cat := t.GetCategory()
		if cat == eventsv1.TicketCategory_TICKET_CATEGORY_UNSPECIFIED {
			cat = eventsv1.TicketCategory_TICKET_CATEGORY_OTHER
		}
		b.Opened = append(b.Opened, TicketOpened{Tenant: tenant, TicketID: t.GetTicketId(), CustomerID: t.GetCustomerId(), EventID: ev.GetId(), OpenedAt: at, Category: int16(cat)})
		return Customer{tenant, t.GetCustomerId()}, true, nil
	case *eventsv1.Event_TicketResolved:
		t := p.TicketResolved
		if err := errors.Join(need("ticket_resolved.customer_id", t.GetCustomerId()), need("ticket_resolved.ticket_id", t.GetTicketId())); err != nil {
			return c, false, err
		}
		b.Resolved = append(b.Resolved, TicketResolved{Tenant: tenant, TicketID: t.GetTicketId(), CustomerID: t.GetCustomerId(), ResolvedAt: at})
		return Customer{tenant, t.GetCustomerId()}, true, nil
	case *eventsv1.Event_SurveyAnswered:
		s := p.SurveyAnswered
		if err := need("survey_answered.customer_id", s.GetCustomerId()); err != nil {
			return c, false, err
		}
		switch s.GetKind() {
		case eventsv1.SurveyKind_SURVEY_KIND_NPS:
			if s.GetScore() < 0 || s.GetScore() > 10 {
				return c, false, invalid("survey_answered.score: %d is out of range for NPS: must be 0-10", s.GetScore())
			}
		case eventsv1.SurveyKind_SURVEY_KIND_CSAT:
			if s.GetScore() < 1 || s.GetScore() > 5 {
				return c, false, invalid("survey_answered.score: %d is out of range for CSAT: must be 1-5", s.GetScore())
			}
		default:
			return c, false, invalid("survey_answered.kind: must be SURVEY_KIND_NPS or SURVEY_KIND_CSAT, got %v", s.GetKind())
		}
		b.Answers = append(b.Answers, Answer{Tenant: tenant, AnswerID: ev.GetId(), CustomerID: s.GetCustomerId(), SurveyID: s.GetSurveyId(),
			Kind: int16(s.GetKind()), Score: int16(s.GetScore()), AnsweredAt: at})
		return Customer{tenant, s.GetCustomerId()}, true, nil
	case *eventsv1.Event_CustomerUpdated:
		u := p.CustomerUpdated
		if err := need("customer_updated.customer_id", u.GetCustomerId()); err != nil {
			return c, false, err
		}
		v, stated := u.GetTraits()[RenewalTrait]
		if !stated {
			// Nothing the score uses changed.
			return c, false, nil
		}
		r := Renewal{Tenant: tenant, EventID: ev.GetId(), CustomerID: u.GetCustomerId(), UpdatedAt: at}
		if v = strings.TrimSpace(v); v != "" {
			d, err := time.Parse(time.DateOnly, v)
			if err != nil {
				// A shop-defined trait: a malformed date is not a reason to
				// drop the event, only to know no renewal date.
				return c, false, nil
			}
			r.Date = &d
		}
		b.Renewals = append(b.Renewals, r)
		return Customer{tenant, u.GetCustomerId()}, true, nil
	case *eventsv1.Event_OrderRefunded:
		return c, false, nil
	case nil:
		return c, false, invalid("payload: is required")
	default:
		return c, false, nil
	}
}
