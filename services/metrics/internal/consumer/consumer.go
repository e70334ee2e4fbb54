// Package consumer turns the facts on RETAIN_EVENTS into the metrics
// projections: the bus handler the batch consumer runner calls, and the
// per-tenant replay that rebuilds them.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/metrics/internal/retention"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// Durable is the consumer's name on the server and in bus_inbox.
const Durable = "metrics-facts"

// Event types the projections use. customer.updated carries nothing a
// figure needs (a customer exists by ordering), so it is not consumed.
const (
	TypeOrderPlaced    = "order.placed"
	TypeOrderRefunded  = "order.refunded"
	TypeSurveyAnswered = "survey.answered"
)

// Types lists the consumed event types.
func Types() []string { return []string{TypeOrderPlaced, TypeOrderRefunded, TypeSurveyAnswered} }

// TenantSubjects are the subjects of one tenant's consumed facts.
func TenantSubjects(tenantID string) []string {
	var fs []string
	for _, t := range Types() {
		fs = append(fs, bus.EventSubject(tenantID, t))
	}
	return fs
}

// Handler returns the bus.Handler of the metrics-facts consumer writing to
// st: it decodes the batch, rejects what can never apply, and writes every
// tenant's facts in the runner's transaction under the tenants' write
// locks, with one statement per table for all the tenants of the batch
// (store.LockAndApplyTenants).
func Handler(st *store.Store) bus.Handler {
	return func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		return handle(ctx, tx, st, ds)
	}
}

func handle(ctx context.Context, tx pgx.Tx, st *store.Store, ds []*bus.Delivery) error {
	byTenant := map[string]*store.Facts{}
	for _, d := range ds {
		if err := decodeInto(d, byTenant); err != nil {
			d.Reject(err.Error())
		}
	}
	fs := make([]store.TenantFacts, 0, len(byTenant))
	for t, f := range byTenant {
		if !f.Empty() {
			fs = append(fs, store.TenantFacts{Tenant: t, Facts: *f})
		}
	}
	if len(fs) == 0 {
		return nil
	}
	slices.SortFunc(fs, func(a, b store.TenantFacts) int { return strings.Compare(a.Tenant, b.Tenant) })
	// The locks go with the first reads.
	return st.LockAndApplyTenants(ctx, tx, fs)
}

// decodeInto adds the fact of d to its tenant's facts. An error is
// permanent: the message can never apply.
func decodeInto(d *bus.Delivery, byTenant map[string]*store.Facts) error {
	tenantID, _, ev, err := bus.DecodeEvent(d.Subject, d.Data)
	if err != nil {
		return err
	}
	at := ev.GetOccurredAt().AsTime().UTC()
	facts := byTenant[tenantID]
	if facts == nil {
		facts = &store.Facts{}
		byTenant[tenantID] = facts
	}
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_OrderPlaced:
		o := p.OrderPlaced
		switch {
		case o.GetOrderId() == "":
			return errors.New("order_placed.order_id: is required")
		case o.GetCustomerId() == "":
			return errors.New("order_placed.customer_id: is required")
		case o.GetTotal() == nil || o.GetTotal().GetCurrency() == "":
			return errors.New("order_placed.total: is required, with a currency")
		case o.GetTotal().GetAmountMinor() < 0:
			return fmt.Errorf("order_placed.total.amount_minor: must not be negative, got %d", o.GetTotal().GetAmountMinor())
		}
		facts.Orders = append(facts.Orders, store.Order{
			Order: retention.Order{
				ID: o.GetOrderId(), Customer: retention.CustomerID(o.GetCustomerId()),
				At: at, TotalMinor: o.GetTotal().GetAmountMinor(),
			},
			Currency: o.GetTotal().GetCurrency(),
		})
	case *eventsv1.Event_OrderRefunded:
		r := p.OrderRefunded
		switch {
		case r.GetRefundId() == "":
			return errors.New("order_refunded.refund_id: is required")
		case r.GetOrderId() == "":
			return errors.New("order_refunded.order_id: is required")
		case r.GetAmount().GetAmountMinor() <= 0:
			return fmt.Errorf("order_refunded.amount.amount_minor: must be positive, got %d", r.GetAmount().GetAmountMinor())
		}
		facts.Refunds = append(facts.Refunds, retention.Refund{ID: r.GetRefundId(), OrderID: r.GetOrderId(), AmountMinor: r.GetAmount().GetAmountMinor()})
	case *eventsv1.Event_SurveyAnswered:
		s := p.SurveyAnswered
		if s.GetCustomerId() == "" {
			return errors.New("survey_answered.customer_id: is required")
		}
		id := ev.GetId()
		if id == "" {
			id = d.ID
		}
		a := retention.Answer{ID: id, Customer: retention.CustomerID(s.GetCustomerId()), At: at, Score: int(s.GetScore())}
		switch s.GetKind() {
		case eventsv1.SurveyKind_SURVEY_KIND_NPS:
			a.Kind = retention.SurveyNPS
			if a.Score < 0 || a.Score > 10 {
				return fmt.Errorf("survey_answered.score: %d is out of range for NPS: must be 0-10", a.Score)
			}
		case eventsv1.SurveyKind_SURVEY_KIND_CSAT:
			a.Kind = retention.SurveyCSAT
			if a.Score < 1 || a.Score > 5 {
				return fmt.Errorf("survey_answered.score: %d is out of range for CSAT: must be 1-5", a.Score)
			}
		default:
			return fmt.Errorf("survey_answered.kind: %s is not NPS or CSAT", s.GetKind())
		}
		facts.Answers = append(facts.Answers, a)
	default:
		// Facts the projections do not use (the consumer's filter keeps
		// them out; a replay or a foreign publisher may not): nothing to do.
	}
	return nil
}
