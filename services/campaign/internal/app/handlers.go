package app

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/bus"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// FactTypes are the event types the facts consumer reads.
var FactTypes = domain.TriggerEvents

// factsBatch is the facts and triggers of a batch, of any tenants: each
// kind is written with one statement for the whole batch, however many
// shops it spans.
type factsBatch struct {
	orders   []store.OrderFact
	profiles []store.Profile
	trigs    []triggered
	goals    []store.GoalEvent
	redeems  []store.Redemption
}

// HandleFacts is the bus handler of RETAIN_EVENTS: it stores the facts the
// conditions need, enrolls the customers the events trigger (running their
// due steps), records goals and coupon redemptions, all in the consumer's
// transaction.
func (e *Engine) HandleFacts(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	var b factsBatch
	oldest := e.Now().Add(-e.cfg.MaxTriggerAge)
	fresh := func(at time.Time) bool { return e.cfg.MaxTriggerAge <= 0 || !at.Before(oldest) }
	for _, d := range ds {
		if err := b.add(d.Subject, d.ID, d.Data, fresh); err != nil {
			d.Reject(err.Error())
		}
	}
	// With several workers, a batch waits for the earlier batches in
	// flight that share a customer: a customer's events are then applied
	// in stream order, each seeing the facts of those before it (is this
	// the first order?), as with one worker.
	// Across replicas the consumer is exclusive (one process applies the
	// stream), unless deployed shared: then the customers' row locks keep
	// two processes' batches of one customer apart, the second reading
	// what the first wrote (taken after Sequence, so that no batch holds
	// a lock while it waits for an earlier one).
	keys := make([]string, len(b.goals))
	for i, g := range b.goals {
		keys[i] = g.Tenant + "\x00" + g.CustomerID
	}
	if err := bus.Sequence(ctx, keys); err != nil {
		return err
	}
	if e.cfg.SharedFacts {
		custs := make([]store.CustomerKey, len(b.goals))
		for i, g := range b.goals {
			custs[i] = store.CustomerKey{Tenant: g.Tenant, ID: g.CustomerID}
		}
		if err := store.LockCustomers(ctx, tx, custs); err != nil {
			return err
		}
	}
	e.stats.Applied(len(ds))
	if err := store.UpsertOrders(ctx, tx, b.orders); err != nil {
		return err
	}
	if err := store.UpsertProfiles(ctx, tx, b.profiles); err != nil {
		return err
	}
	if err := e.enrollTriggered(ctx, tx, b.trigs); err != nil {
		return err
	}
	return store.MarkGoals(ctx, tx, b.goals, b.redeems, e.Now())
}

// add decodes one RETAIN_EVENTS message (bus.DecodeEvent) into the
// batch's facts, and its trigger if fresh says its time is recent enough;
// an error is the reason to reject the message.
func (b *factsBatch) add(subject, msgID string, data []byte, fresh func(time.Time) bool) error {
	t, typ, ev, err := bus.DecodeEvent(subject, data)
	if err != nil {
		return err
	}
	return b.addEvent(t, ev, typ, msgID, fresh(ev.GetOccurredAt().AsTime()))
}

// addEvent records one event's facts; triggers only when fresh enough.
func (f *factsBatch) addEvent(tenant string, ev *eventsv1.Event, typ, msgID string, fresh bool) error {
	at := ev.GetOccurredAt().AsTime().UTC()
	id := ev.GetId()
	if id == "" {
		id = msgID
	}
	trig := &domain.Trigger{Type: typ, EventID: id, At: at}
	var (
		customer string
		vars     store.Vars
	)
	switch typ {
	case domain.EventOrderPlaced:
		o := ev.GetOrderPlaced()
		if o == nil || o.GetCustomerId() == "" || o.GetOrderId() == "" {
			return fmt.Errorf("order.placed %s: order_placed.customer_id and order_id are required", id)
		}
		customer = o.GetCustomerId()
		f.orders = append(f.orders, store.OrderFact{
			Tenant:     tenant,
			Order:      domain.Order{ID: o.GetOrderId(), At: at, TotalMinor: o.GetTotal().GetAmountMinor(), Currency: o.GetTotal().GetCurrency()},
			CustomerID: customer, Coupon: domain.NormalizeCoupon(o.GetCouponCode()),
		})
		trig.OrderID, trig.OrderTotal, trig.Currency = o.GetOrderId(), o.GetTotal().GetAmountMinor(), o.GetTotal().GetCurrency()
		vars = store.Vars{OrderID: o.GetOrderId(), OrderTotal: trig.OrderTotal, Currency: trig.Currency}
		if code := domain.NormalizeCoupon(o.GetCouponCode()); code != "" {
			f.redeems = append(f.redeems, store.Redemption{Tenant: tenant, Code: code, CustomerID: customer, OrderID: o.GetOrderId(), At: at})
		}
	case domain.EventSurveyAnswered:
		s := ev.GetSurveyAnswered()
		if s == nil || s.GetCustomerId() == "" {
			return fmt.Errorf("survey.answered %s: survey_answered.customer_id is required", id)
		}
		customer, trig.SurveyID = s.GetCustomerId(), s.GetSurveyId()
		if s.GetKind() == eventsv1.SurveyKind_SURVEY_KIND_NPS {
			score := s.GetScore()
			trig.NPS, vars.NPS = &score, &score
		}
		vars.Comment = s.GetComment()
	case domain.EventTicketResolved:
		r := ev.GetTicketResolved()
		if r == nil || r.GetCustomerId() == "" {
			return fmt.Errorf("ticket.resolved %s: ticket_resolved.customer_id is required", id)
		}
		customer, trig.TicketID = r.GetCustomerId(), r.GetTicketId()
	case domain.EventCustomerUpdated:
		c := ev.GetCustomerUpdated()
		if c == nil || c.GetCustomerId() == "" {
			return fmt.Errorf("customer.updated %s: customer_updated.customer_id is required", id)
		}
		customer = c.GetCustomerId()
		p := store.Profile{Tenant: tenant, CustomerID: customer, Locale: c.GetLocale(), TimeZone: c.GetTimeZone(), At: at}
		if rd, ok := c.GetTraits()["renewal_date"]; ok {
			p.RenewalSet = true
			if rd != "" {
				d, err := time.Parse(time.DateOnly, rd)
				if err != nil {
					return fmt.Errorf("customer.updated %s: traits.renewal_date %q: want YYYY-MM-DD", id, rd)
				}
				p.Renewal = &d
				vars.RenewalDate = rd
			}
		}
		if p.TimeZone != "" {
			if _, err := time.LoadLocation(p.TimeZone); err != nil {
				p.TimeZone = "" // unknown zones fall back to UTC rather than losing the event
			}
		}
		f.profiles = append(f.profiles, p)
	default:
		return nil // not a fact the campaigns use
	}
	f.goals = append(f.goals, store.GoalEvent{Tenant: tenant, CustomerID: customer, Type: typ, At: at})
	if fresh {
		f.trigs = append(f.trigs, triggered{tenant: tenant, customer: customer, trig: trig, vars: vars})
	}
	return nil
}

// HandleSignals is the bus handler of churn.risk_changed: it stores the
// customer's band and enrolls customers into churn band campaigns.
func (e *Engine) HandleSignals(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	var (
		trigs []triggered
		bands []store.Band
	)
	oldest := e.Now().Add(-e.cfg.MaxTriggerAge)
	for _, d := range ds {
		t, _, err := bus.SplitSubject(bus.SignalsSubjectPrefix, d.Subject)
		if err != nil {
			d.Reject(err.Error())
			continue
		}
		s := &churnv1.ChurnRiskChanged{}
		if err := proto.Unmarshal(d.Data, s); err != nil {
			d.Reject("cannot decode retain.churn.v1.ChurnRiskChanged: " + err.Error())
			continue
		}
		if s.GetCustomerId() == "" || s.GetComputedAt() == nil {
			d.Reject("churn.risk_changed: customer_id and computed_at are required")
			continue
		}
		at := s.GetComputedAt().AsTime().UTC()
		bands = append(bands, store.Band{Tenant: t, CustomerID: s.GetCustomerId(), Band: s.GetBand(), At: at})
		if s.GetBand() == s.GetPreviousBand() || (e.cfg.MaxTriggerAge > 0 && at.Before(oldest)) {
			continue
		}
		trigs = append(trigs, triggered{
			tenant:   t,
			customer: s.GetCustomerId(),
			trig:     &domain.Trigger{Type: domain.TriggerChurnBand, EventID: d.ID, At: at, Band: s.GetBand()},
		})
	}
	if err := store.UpsertBands(ctx, tx, bands); err != nil {
		return err
	}
	return e.enrollTriggered(ctx, tx, trigs)
}

// HandleDeliveries is the bus handler of RETAIN_DELIVERIES: it keeps the
// latest outcome of each request a campaign made, for the report.
func (e *Engine) HandleDeliveries(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	var rows []store.Delivery
	for _, d := range ds {
		t, _, err := bus.SplitSubject(bus.DeliveriesSubjectPrefix, d.Subject)
		if err != nil {
			d.Reject(err.Error())
			continue
		}
		o := &notifierv1.DeliveryOutcome{}
		if err := proto.Unmarshal(d.Data, o); err != nil {
			d.Reject("cannot decode retain.notifier.v1.DeliveryOutcome: " + err.Error())
			continue
		}
		if o.GetOrigin().GetCampaignId() == "" || o.GetRequestId() == "" {
			continue // not a campaign's request (a test send)
		}
		rows = append(rows, store.Delivery{
			Tenant: t, RequestID: o.GetRequestId(), CampaignID: o.GetOrigin().GetCampaignId(), Outcome: int16(o.GetOutcome()), Sequence: o.GetSequence(),
		})
	}
	return store.UpsertDeliveries(ctx, tx, rows)
}
