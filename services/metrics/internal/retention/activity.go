package retention

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Activity is what retention needs to know about one customer: when they
// ordered.
//
// FirstOrder is the customer's first order ever. Orders may be every order
// instant of the customer, or only the ones a computation looks at (a store
// reading from aggregates loads the orders near the period's edges): which
// is why FirstOrder is carried separately rather than read from Orders[0].
type Activity struct {
	Customer   CustomerID
	FirstOrder time.Time
	// Orders is ascending, in UTC, one entry per distinct order: two orders
	// at the same instant are two entries.
	Orders []time.Time
}

// NewActivity builds the activity of a customer from all their order
// instants, in any order. FirstOrder is the earliest of them.
func NewActivity(c CustomerID, orders []time.Time) Activity {
	ts := make([]time.Time, len(orders))
	for i, t := range orders {
		ts[i] = t.UTC()
	}
	slices.SortFunc(ts, time.Time.Compare)
	a := Activity{Customer: c, Orders: ts}
	if len(ts) > 0 {
		a.FirstOrder = ts[0]
	}
	return a
}

// ActiveAt reports whether orders (ascending) hold an order in [t-W, t).
func ActiveAt(orders []time.Time, t time.Time, w Window) bool {
	since := t.Add(-w.Duration())
	i := sort.Search(len(orders), func(i int) bool { return !orders[i].Before(since) })
	return i < len(orders) && orders[i].Before(t)
}

// ActiveAt reports whether the customer is active at t under window w.
func (a Activity) ActiveAt(t time.Time, w Window) bool { return ActiveAt(a.Orders, t, w) }

// IsNewIn reports whether the customer's first order falls in p.
func (a Activity) IsNewIn(p Period) bool {
	return !a.FirstOrder.IsZero() && p.Contains(a.FirstOrder)
}

// OrdersIn counts the customer's orders in p.
func (a Activity) OrdersIn(p Period) int {
	lo := sort.Search(len(a.Orders), func(i int) bool { return !a.Orders[i].Before(p.From) })
	hi := sort.Search(len(a.Orders), func(i int) bool { return !a.Orders[i].Before(p.To) })
	return hi - lo
}

// RetentionCounts are the exact counts behind the retention and churn rates
// of one period under one window.
type RetentionCounts struct {
	// Start is S: customers active at the period's start.
	Start int64
	// End is E: customers active at the period's end.
	End int64
	// New is N: customers whose first order falls in the period.
	New int64
	// Retained is |S and E|.
	Retained int64
	// Churned is |S not in E|.
	Churned int64
	// Reactivated are in E, not in S and not new: customers who had lapsed
	// before the period and came back during it.
	Reactivated int64
	// NewActiveAtEnd are the new customers still active at the end. It is not
	// a headline figure; it closes the books: E = Retained + Reactivated +
	// NewActiveAtEnd.
	NewActiveAtEnd int64
}

// CRR is the customer retention rate, (E - N) / S, the textbook formula. It
// can exceed 100% (reactivated customers are in E, not in S) and be
// negative (many new customers lapse within the period), and CRR + churn
// rate is 100% only when those two cancel out: it is 100% + (reactivated -
// new customers no longer active at the end) / S.
func (c RetentionCounts) CRR() Ratio { return Ratio{Num: c.End - c.New, Den: c.Start} }

// ChurnRate is churned / S.
func (c RetentionCounts) ChurnRate() Ratio { return Ratio{Num: c.Churned, Den: c.Start} }

// LostPerAcquired is churned / N: how many customers were lost for each one
// acquired. Some shops call it churn rate; it is not one, hence the name.
func (c RetentionCounts) LostPerAcquired() Ratio { return Ratio{Num: c.Churned, Den: c.New} }

// Check verifies the identities that hold between the counts, so that a
// store filling them from aggregates can assert it got them right.
func (c RetentionCounts) Check() error {
	switch {
	case c.Start < 0 || c.End < 0 || c.New < 0 || c.Retained < 0 || c.Churned < 0 || c.Reactivated < 0 || c.NewActiveAtEnd < 0:
		return fmt.Errorf("retention counts %+v: negative count", c)
	case c.Retained+c.Churned != c.Start:
		return fmt.Errorf("retention counts %+v: retained + churned != start", c)
	case c.Retained+c.Reactivated+c.NewActiveAtEnd != c.End:
		return fmt.Errorf("retention counts %+v: retained + reactivated + new active at end != end", c)
	case c.NewActiveAtEnd > c.New:
		return fmt.Errorf("retention counts %+v: more new customers active at end than new customers", c)
	}
	return nil
}

// CountRetention computes the retention counts of p under w from customer
// activities. Each activity's Orders must hold at least every order in
// [p.From-W, p.From) and [p.To-W, p.To); FirstOrder must be the customer's
// true first order.
func CountRetention(acts []Activity, p Period, w Window) RetentionCounts {
	var c RetentionCounts
	for _, a := range acts {
		inS := a.ActiveAt(p.From, w)
		inE := a.ActiveAt(p.To, w)
		isNew := a.IsNewIn(p)
		switch {
		case inS && inE:
			c.Retained++
		case inS:
			c.Churned++
		case inE && isNew:
			c.NewActiveAtEnd++
		case inE:
			c.Reactivated++
		}
		if inS {
			c.Start++
		}
		if inE {
			c.End++
		}
		if isNew {
			c.New++
		}
	}
	return c
}
