package retention

import (
	"sort"
	"time"
)

// RepeatCounts are the counts behind a repeat purchase rate.
type RepeatCounts struct {
	// Buyers are the customers with at least one order in the range.
	Buyers int64
	// Repeaters are the customers with at least two orders in the range.
	Repeaters int64
}

// Rate is the repeat purchase rate, repeaters / buyers.
func (c RepeatCounts) Rate() Ratio { return Ratio{Num: c.Repeaters, Den: c.Buyers} }

// CountRepeat counts buyers and repeaters within p: only the orders inside
// the period count, so a customer whose earlier orders predate the period
// and who ordered once in it is a buyer, not a repeater.
func CountRepeat(acts []Activity, p Period) RepeatCounts {
	var c RepeatCounts
	for _, a := range acts {
		switch n := a.OrdersIn(p); {
		case n >= 2:
			c.Repeaters++
			c.Buyers++
		case n == 1:
			c.Buyers++
		}
	}
	return c
}

// CountRepeatLifetime is the lifetime version as of an instant: every order
// before asOf counts. Each activity's Orders must be complete up to asOf.
func CountRepeatLifetime(acts []Activity, asOf time.Time) RepeatCounts {
	var c RepeatCounts
	for _, a := range acts {
		switch n := sort.Search(len(a.Orders), func(i int) bool { return !a.Orders[i].Before(asOf) }); {
		case n >= 2:
			c.Repeaters++
			c.Buyers++
		case n == 1:
			c.Buyers++
		}
	}
	return c
}
