// Package consumer turns the facts on RETAIN_EVENTS into the metrics
// projections: the bus handler the batch consumer runner calls, and the
// per-tenant replay that rebuilds them.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
//
// A refund counts against its order only in the order's currency (no
// conversion): one whose order is known in another currency is
// dead-lettered with the reason, and refunds that arrived before an order
// in another currency stay out of its figures, logged at warn when the
// order lands (store.RefundConflict).
func Handler(st *store.Store, log *slog.Logger) bus.Handler {
	return func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		return handle(ctx, tx, st, ds, log)
	}
}

// refundKey names the deliveries of one refund version.
type refundKey struct{ tenant, id, currency string }

func handle(ctx context.Context, tx pgx.Tx, st *store.Store, ds []*bus.Delivery, log *slog.Logger) error {
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
	conflicts, err := st.LockAndApplyTenants(ctx, tx, fs)
	if err != nil {
		return err
	}
	var refused map[refundKey]string
	for _, c := range conflicts {
		if c.Waiting {
			log.Warn("refunds in another currency than their order's are not subtracted", "tenant", c.Tenant, "order_id", c.OrderID,
				"order_currency", c.OrderCurrency, "refund_currency", c.RefundCurrency, "refunded_minor", c.AmountMinor)
			continue
		}
		if refused == nil {
			refused = map[refundKey]string{}
		}
		refused[refundKey{c.Tenant, c.RefundID, c.RefundCurrency}] = c.Reason()
	}
	if refused != nil {
		rejectRefused(ds, refused)
	}
	return nil
}

// rejectRefused dead-letters the deliveries of the refused refunds, with
// their reasons. Refusals are rare (a shop's data error), so the refunds
// are found by decoding the batch again rather than keyed in every batch;
// those rejected already did not decode into a fact.
func rejectRefused(ds []*bus.Delivery, refused map[refundKey]string) {
	for _, d := range ds {
		if rejected, _ := d.Rejected(); rejected {
			continue
		}
		tenantID, _, ev, err := bus.DecodeEvent(d.Subject, d.Data)
		if err != nil {
			continue
		}
		if r := ev.GetOrderRefunded(); r != nil {
			if reason, ok := refused[refundKey{tenantID, r.GetRefundId(), r.GetAmount().GetCurrency()}]; ok {
				d.Reject(reason)
			}
		}
	}
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
		case r.GetAmount().GetCurrency() == "":
			return errors.New("order_refunded.amount: is required, with a currency")
		case r.GetAmount().GetAmountMinor() <= 0:
			return fmt.Errorf("order_refunded.amount.amount_minor: must be positive, got %d", r.GetAmount().GetAmountMinor())
		}
		facts.Refunds = append(facts.Refunds, retention.Refund{
			ID: r.GetRefundId(), OrderID: r.GetOrderId(), AmountMinor: r.GetAmount().GetAmountMinor(), Currency: r.GetAmount().GetCurrency(),
		})
		return nil
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
