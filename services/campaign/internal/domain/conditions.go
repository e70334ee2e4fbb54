package domain

import (
	"math"
	"slices"
	"strings"
	"time"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

const day = 24 * time.Hour

// Order is one order.placed fact of a customer.
type Order struct {
	ID         string
	At         time.Time
	TotalMinor int64
	Currency   string
}

// After reports whether o comes after the order (at, id) in the order a
// customer's orders are listed: by placed time, then by order id. Orders
// placed in the same instant (an export with second or minute resolution)
// are told apart by id, so that of two such orders one is the customer's
// first and the other their second, rather than both their second.
func (o Order) After(at time.Time, id string) bool {
	return o.At.After(at) || (o.At.Equal(at) && o.ID > id)
}

// placedBy reports whether o had been placed by the time a condition is
// evaluated at: for an order's trigger, the orders up to and including
// that one (Order.After); otherwise every order up to at.
func placedBy(o Order, at time.Time, t *Trigger) bool {
	if t != nil && t.OrderID != "" && t.At.Equal(at) {
		return !o.After(at, t.OrderID)
	}
	return !o.At.After(at)
}

// Customer is what the campaign service knows about a customer: the facts
// its conditions test.
type Customer struct {
	ID          string
	Locale      string
	TimeZone    string
	RenewalDate *time.Time // a date, at 00:00 UTC
	ChurnBand   churnv1.RiskBand
	// Orders are the customer's orders placed at or after Since, oldest
	// first; those placed before it are only summed up, in Earlier (a
	// regular of many years is not read whole for each event). Zero Since:
	// Orders are all of them.
	Orders  []Order
	Since   time.Time
	Earlier OrderSummary
}

// OrderSummary sums up orders without listing them.
type OrderSummary struct {
	// Count is their number, up to the HistoryNeed's CountCap.
	Count int64
	Last  time.Time // the latest one's placed_at (zero: none)
}

// HistoryNeed is what plans' conditions need of a customer's orders:
// those placed within Window before the earliest instant the conditions
// are evaluated at (a trigger's, the env's, its RFM scales') listed; of the
// earlier ones the latest, and their number up to CountCap (0: not needed,
// negative: all of it).
type HistoryNeed struct {
	Window   time.Duration
	CountCap int64
}

// HistoryNeeds is the HistoryNeed of plans: the longest order_count
// window, 365 days for a revenue ranking; a lifetime order_count needs
// the earlier orders counted up to one past its max (or up to its min),
// RFM scores all of them.
func HistoryNeeds(plans []*Plan) HistoryNeed {
	var n HistoryNeed
	capTo := func(c int64) {
		if n.CountCap >= 0 {
			n.CountCap = max(n.CountCap, c)
		}
	}
	for _, p := range plans {
		for _, c := range p.Campaign.GetConditions() {
			switch k := c.GetKind().(type) {
			case *campaignv1.Condition_OrderCount:
				if w := k.OrderCount.GetWithinDays(); w > 0 {
					n.Window = max(n.Window, time.Duration(w)*day)
				} else if k.OrderCount.Max != nil {
					capTo(int64(k.OrderCount.GetMax()) + 1)
				} else {
					capTo(int64(k.OrderCount.GetMin()))
				}
			case *campaignv1.Condition_TopRevenuePercent:
				n.Window = max(n.Window, 365*day)
			case *campaignv1.Condition_RfmSegment:
				n.CountCap = -1
			}
		}
	}
	return n
}

// lastOrder is the placed_at of the customer's latest order at or before
// at (zero: none). Earlier's are all before Since, which is at or before
// at.
func (c *Customer) lastOrder(at time.Time) time.Time {
	var last time.Time
	for _, o := range c.Orders {
		if !o.At.After(at) && o.At.After(last) {
			last = o.At
		}
	}
	if last.IsZero() {
		last = c.Earlier.Last
	}
	return last
}

// TriggerChurnBand is the Type of a Trigger from churn.risk_changed.
const TriggerChurnBand = "churn.risk_changed"

// Trigger is the event a customer would enter a campaign on; nil fields are
// what the event does not carry. A scheduled evaluation has Type "".
type Trigger struct {
	Type       string
	EventID    string
	At         time.Time
	OrderID    string
	OrderTotal int64
	Currency   string
	TicketID   string
	SurveyID   string
	NPS        *int32
	Band       churnv1.RiskBand
}

// Key is the value of the trigger's field named by once_per_key.
func (t *Trigger) Key(field string) string {
	switch field {
	case "order_id":
		return t.OrderID
	case "ticket_id":
		return t.TicketID
	case "survey_id":
		return t.SurveyID
	}
	return t.EventID
}

// Env is what conditions need beyond one customer: the tenant's revenue
// threshold of each top_revenue_percent used, over the last 365 days, and
// its RFM scales when an rfm_segment condition is used.
type Env struct {
	Now time.Time
	// TopRevenue maps a percent to the smallest 365-day revenue (minor
	// units) of a customer in that top percent; absent: nobody qualifies.
	TopRevenue map[int32]int64
	// RFM is the tenant's RFM scales as of Now; nil when no plan
	// evaluated has an rfm_segment condition.
	RFM *RFMScales
}

// Revenue365 is the customer's revenue over the 365 days before now
// (Since is at least that long before now: HistoryNeeds).
func (c *Customer) Revenue365(now time.Time) int64 {
	var sum int64
	for _, o := range c.Orders {
		if o.At.After(now.Add(-365*day)) && !o.At.After(now) {
			sum += o.TotalMinor
		}
	}
	return sum
}

// Matches reports whether every condition of p holds for c on trigger t
// (nil for a scheduled evaluation) at env.Now.
func (p *Plan) Matches(c *Customer, t *Trigger, env Env) bool {
	at := env.Now
	if t != nil && !t.At.IsZero() {
		at = t.At
	}
	for _, cond := range p.Campaign.GetConditions() {
		if !matches(cond, c, t, at, env) {
			return false
		}
	}
	return true
}

func matches(cond *campaignv1.Condition, c *Customer, t *Trigger, at time.Time, env Env) bool {
	switch k := cond.GetKind().(type) {
	case *campaignv1.Condition_NpsScore:
		return t != nil && t.NPS != nil && inRange(*t.NPS, k.NpsScore.Min, k.NpsScore.Max)
	case *campaignv1.Condition_OrderCount:
		// Earlier orders all fall before any window (HistoryNeeds), and
		// count for a lifetime: up to a cap past which the answer is the
		// same.
		n := int32(0)
		if k.OrderCount.GetWithinDays() == 0 {
			n = int32(min(c.Earlier.Count, math.MaxInt32))
		}
		for _, o := range c.Orders {
			if !placedBy(o, at, t) {
				continue
			}
			if w := k.OrderCount.GetWithinDays(); w > 0 && !o.At.After(at.Add(-time.Duration(w)*day)) {
				continue
			}
			n++
		}
		return inRange(n, k.OrderCount.Min, k.OrderCount.Max)
	case *campaignv1.Condition_OrderTotalAtLeast:
		return t != nil && t.OrderID != "" && strings.EqualFold(t.Currency, k.OrderTotalAtLeast.GetCurrency()) &&
			t.OrderTotal >= k.OrderTotalAtLeast.GetAmountMinor()
	case *campaignv1.Condition_Locale:
		return c.Locale != "" && (strings.EqualFold(c.Locale, k.Locale) ||
			strings.HasPrefix(strings.ToLower(c.Locale), strings.ToLower(k.Locale)+"-"))
	case *campaignv1.Condition_DaysSinceLastOrderAtLeast:
		last := c.lastOrder(at)
		return !last.IsZero() && at.Sub(last) >= time.Duration(k.DaysSinceLastOrderAtLeast)*day
	case *campaignv1.Condition_RenewalWithinDays:
		if c.RenewalDate == nil {
			return false
		}
		today := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
		days := int32(c.RenewalDate.Sub(today) / day)
		return !c.RenewalDate.Before(today) && days <= k.RenewalWithinDays
	case *campaignv1.Condition_TopRevenuePercent:
		th, ok := env.TopRevenue[k.TopRevenuePercent]
		r := c.Revenue365(env.Now)
		return ok && r > 0 && r >= th
	case *campaignv1.Condition_ChurnBand:
		band := c.ChurnBand
		if t != nil && t.Band != churnv1.RiskBand_RISK_BAND_UNSPECIFIED {
			band = t.Band
		}
		return band == k.ChurnBand
	case *campaignv1.Condition_RfmSegment:
		// As of env.RFM.At, not the trigger's instant: the customer is
		// scored against the tenant's values at the same instant.
		if env.RFM == nil {
			return false
		}
		sc, ok := env.RFM.Score(c)
		return ok && slices.Contains(k.RfmSegment.GetSegments(), metricsv1.RFMSegment(sc.Segment))
	}
	return false
}

func inRange(v int32, lo, hi *int32) bool {
	return (lo == nil || v >= *lo) && (hi == nil || v <= *hi)
}

// TopRevenuePercents are the percents the plans' top_revenue_percent
// conditions use.
func TopRevenuePercents(plans []*Plan) []int32 {
	var out []int32
	for _, p := range plans {
		for _, c := range p.Campaign.GetConditions() {
			if k, ok := c.GetKind().(*campaignv1.Condition_TopRevenuePercent); ok {
				out = append(out, k.TopRevenuePercent)
			}
		}
	}
	return out
}

// TopRevenueThreshold is the smallest revenue among the top pct percent of
// revenues (positive revenues only, sorted descending); ok is false when
// nobody has revenue.
func TopRevenueThreshold(desc []int64, pct int32) (int64, bool) {
	if len(desc) == 0 {
		return 0, false
	}
	n := (len(desc)*int(pct) + 99) / 100
	n = max(1, min(n, len(desc)))
	return desc[n-1], true
}

// PreviewMatches is Matches for an audience preview, when no event is at
// hand: conditions on the event itself (nps_score, order_total_at_least)
// are left to the moment it happens, a churn band trigger needs the
// customer's current band.
func (p *Plan) PreviewMatches(c *Customer, env Env) bool {
	if b := p.Campaign.GetTrigger().GetChurnBand(); b != churnv1.RiskBand_RISK_BAND_UNSPECIFIED && c.ChurnBand != b {
		return false
	}
	for _, cond := range p.Campaign.GetConditions() {
		switch cond.GetKind().(type) {
		case *campaignv1.Condition_NpsScore, *campaignv1.Condition_OrderTotalAtLeast:
			continue
		}
		if !matches(cond, c, nil, env.Now, env) {
			return false
		}
	}
	return true
}
