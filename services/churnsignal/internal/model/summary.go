package model

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// daysPerWeek converts the calendar-day resolution of purchases into the
// model's time unit.
const daysPerWeek = 7

// Summary is one customer's calibration history reduced to the BG/NBD's
// sufficient statistics. Times are in weeks, measured from the first purchase.
type Summary struct {
	// X is the number of repeat transactions: purchase days after the first.
	X int
	// Tx is the time of the last purchase (0 when X = 0).
	Tx float64
	// T is the customer's age at the end of calibration.
	T float64
}

// Validate reports whether s is a possible history: X >= 0 and
// 0 <= Tx <= T finite, with Tx = 0 when X = 0.
func (s Summary) Validate() error {
	switch {
	case s.X < 0:
		return fmt.Errorf("summary %+v: negative repeat count", s)
	case !(s.Tx >= 0) || !(s.T >= s.Tx) || math.IsInf(s.T, 1):
		return fmt.Errorf("summary %+v: need 0 <= t_x <= T < inf", s)
	case s.X == 0 && s.Tx != 0:
		return fmt.Errorf("summary %+v: t_x must be 0 without repeat purchases", s)
	case s.X > 0 && s.Tx == 0:
		// A repeat purchase is on a later day than the first one.
		return fmt.Errorf("summary %+v: repeat purchases need t_x > 0", s)
	}
	return nil
}

// Summarize reduces a customer's purchase instants to a Summary as of the end
// of calibration, at calendar-day resolution in loc (UTC when nil):
//
//   - purchases on the same calendar day are one transaction (the paper's
//     convention; a basket split into several orders is one purchase occasion);
//   - purchases on days after end's calendar day are ignored;
//   - t_x and T count whole days from the first purchase day to the last
//     purchase day and to end's calendar day, divided by 7.
//
// This is the convention that reproduces the published CDNOW estimates: a
// customer whose first purchase is on 1997-01-01, summarised with end on
// 1997-09-30, has T = 272/7 = 38.857 weeks. ok is false when there is no
// purchase on or before end's day. The order of purchases does not matter.
func Summarize(purchases []time.Time, end time.Time, loc *time.Location) (s Summary, ok bool) {
	if loc == nil {
		loc = time.UTC
	}
	endDay := civilDay(end, loc)
	days := make([]int64, 0, len(purchases))
	for _, t := range purchases {
		if d := civilDay(t, loc); d <= endDay {
			days = append(days, d)
		}
	}
	if len(days) == 0 {
		return Summary{}, false
	}
	slices.Sort(days)
	days = slices.Compact(days)
	first, last := days[0], days[len(days)-1]
	return Summary{
		X:  len(days) - 1,
		Tx: float64(last-first) / daysPerWeek,
		T:  float64(endDay-first) / daysPerWeek,
	}, true
}

// civilDay numbers the calendar day of t in loc (days since 1970-01-01).
func civilDay(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// Group is Count customers sharing one Summary. Customers with equal
// histories contribute equal likelihood terms, so a tenant's million customers
// usually collapse into far fewer groups (times are whole days).
type Group struct {
	Summary
	Count int
}

// Aggregate groups equal summaries, in a deterministic order (by X, then Tx,
// then T) so fits are reproducible whatever the input order.
func Aggregate(customers []Summary) []Group {
	counts := make(map[Summary]int, len(customers)/4+1)
	for _, s := range customers {
		counts[s]++
	}
	groups := make([]Group, 0, len(counts))
	for s, n := range counts {
		groups = append(groups, Group{Summary: s, Count: n})
	}
	slices.SortFunc(groups, func(g, h Group) int {
		return cmp.Or(cmp.Compare(g.X, h.X), cmp.Compare(g.Tx, h.Tx), cmp.Compare(g.T, h.T))
	})
	return groups
}
