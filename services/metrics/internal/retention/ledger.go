package retention

import (
	"cmp"
	"slices"
	"time"
)

// CustomerID is the shop's customer id, unique within a tenant.
type CustomerID string

// Order is one order.placed fact. ID is the shop's order id: the natural key,
// unique per tenant, by which duplicates are recognised.
type Order struct {
	ID         string
	Customer   CustomerID
	At         time.Time
	TotalMinor int64
}

// Refund is one order.refunded fact. ID is the refund id: one order may have
// several partial refunds, each with its own id. The refund corrects the
// order it names, whenever that order arrives, in the order's currency
// only: Currency is the refund's (empty when unknown), and the store
// subtracts no refund in another currency from an order (no conversion).
// A Ledger is one currency's: its refunds are all in its orders' currency.
type Refund struct {
	ID          string
	OrderID     string
	AmountMinor int64
	Currency    string
}

// NetOrder is an order with the refunds that name it.
type NetOrder struct {
	Order
	// RefundedMinor is the sum of the order's refunds as reported, which can
	// exceed the total when a shop reports inconsistent refunds.
	RefundedMinor int64
}

// NetMinor is what the order is worth after refunds, never below zero: a
// shop that over-reports refunds must not make a customer's revenue negative.
func (o NetOrder) NetMinor() int64 {
	return max(o.TotalMinor-o.RefundedMinor, 0)
}

// Ledger is one tenant's orders and refunds, deduplicated and in canonical
// order. Every reference computation starts from it, so that duplicates and
// arrival order cannot change a figure.
type Ledger struct {
	// Orders holds one entry per order id, sorted by (At, ID).
	Orders []NetOrder
	// Unmatched holds the refunds whose order has not arrived (yet), sorted
	// by ID. They count towards nothing until their order arrives.
	Unmatched []Refund
}

// NewLedger deduplicates orders by order id and refunds by refund id.
//
// When two facts share an id but disagree (a shop re-sent an order with a
// different time or total), the version that sorts first by (At, Customer,
// TotalMinor) for orders, or (OrderID, AmountMinor, Currency) for refunds,
// wins. Any
// fixed rule would do; it must be a rule on the facts' content, not on their
// arrival, for the outcome to be order-independent. The store applies the same
// rule in its upsert. Refunds with a non-positive amount are invalid input
// (ingest rejects them) and are ignored.
func NewLedger(orders []Order, refunds []Refund) Ledger {
	byID := make(map[string]Order, len(orders))
	for _, o := range orders {
		o.At = o.At.UTC()
		if prev, seen := byID[o.ID]; !seen || compareOrderVersions(o, prev) < 0 {
			byID[o.ID] = o
		}
	}
	refundByID := make(map[string]Refund, len(refunds))
	for _, r := range refunds {
		if r.AmountMinor <= 0 {
			continue
		}
		if prev, seen := refundByID[r.ID]; !seen || compareRefundVersions(r, prev) < 0 {
			refundByID[r.ID] = r
		}
	}
	refunded := make(map[string]int64, len(refundByID))
	var l Ledger
	for _, r := range refundByID {
		if _, ok := byID[r.OrderID]; ok {
			refunded[r.OrderID] += r.AmountMinor
		} else {
			l.Unmatched = append(l.Unmatched, r)
		}
	}
	slices.SortFunc(l.Unmatched, func(a, b Refund) int { return cmp.Compare(a.ID, b.ID) })
	l.Orders = make([]NetOrder, 0, len(byID))
	for id, o := range byID {
		l.Orders = append(l.Orders, NetOrder{Order: o, RefundedMinor: refunded[id]})
	}
	slices.SortFunc(l.Orders, func(a, b NetOrder) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return l
}

func compareOrderVersions(a, b Order) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Customer, b.Customer); c != 0 {
		return c
	}
	return cmp.Compare(a.TotalMinor, b.TotalMinor)
}

func compareRefundVersions(a, b Refund) int {
	if c := cmp.Compare(a.OrderID, b.OrderID); c != 0 {
		return c
	}
	if c := cmp.Compare(a.AmountMinor, b.AmountMinor); c != 0 {
		return c
	}
	return cmp.Compare(a.Currency, b.Currency)
}

// Activities returns one Activity per customer, sorted by customer id.
func (l Ledger) Activities() []Activity {
	return ActivitiesOf(l.Orders)
}

// ActivitiesOf groups orders into one Activity per customer, sorted by
// customer id. The orders need not be sorted.
func ActivitiesOf(orders []NetOrder) []Activity {
	instants := make(map[CustomerID][]time.Time)
	for _, o := range orders {
		instants[o.Customer] = append(instants[o.Customer], o.At)
	}
	acts := make([]Activity, 0, len(instants))
	for c, ts := range instants {
		acts = append(acts, NewActivity(c, ts))
	}
	slices.SortFunc(acts, func(a, b Activity) int { return cmp.Compare(a.Customer, b.Customer) })
	return acts
}
