package retention

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// CustomerValue is what RFM needs to know about a customer as of an instant:
// their orders before it. The store keeps exactly this per customer for "now";
// CustomerValuesAsOf computes it for any instant from raw orders.
type CustomerValue struct {
	Customer  CustomerID
	LastOrder time.Time
	Orders    int64
	NetMinor  int64
}

// CustomerValuesAsOf summarises the orders placed before at, one value per
// customer who had ordered by then, sorted by customer id. "Before" is strict,
// like the activity window: an order at exactly at is not yet history.
func CustomerValuesAsOf(orders []NetOrder, at time.Time) []CustomerValue {
	byCustomer := make(map[CustomerID]*CustomerValue)
	for _, o := range orders {
		if !o.At.Before(at) {
			continue
		}
		v := byCustomer[o.Customer]
		if v == nil {
			v = &CustomerValue{Customer: o.Customer}
			byCustomer[o.Customer] = v
		}
		if o.At.After(v.LastOrder) {
			v.LastOrder = o.At
		}
		v.Orders++
		v.NetMinor += o.NetMinor()
	}
	out := make([]CustomerValue, 0, len(byCustomer))
	for _, v := range byCustomer {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b CustomerValue) int { return cmp.Compare(a.Customer, b.Customer) })
	return out
}

// Segment is a named RFM segment.
type Segment int

// The segments, best first. The zero value is deliberately not a segment.
const (
	SegmentChampions Segment = iota + 1
	SegmentLoyal
	SegmentPotentialLoyalist
	SegmentNew
	SegmentPromising
	SegmentNeedAttention
	SegmentAboutToSleep
	SegmentAtRisk
	SegmentCantLoseThem
	SegmentHibernating
	SegmentLost
)

// Segments lists every segment in display order.
var Segments = []Segment{
	SegmentChampions, SegmentLoyal, SegmentPotentialLoyalist, SegmentNew, SegmentPromising,
	SegmentNeedAttention, SegmentAboutToSleep, SegmentAtRisk, SegmentCantLoseThem,
	SegmentHibernating, SegmentLost,
}

var segmentNames = map[Segment]string{
	SegmentChampions:         "champions",
	SegmentLoyal:             "loyal",
	SegmentPotentialLoyalist: "potential_loyalist",
	SegmentNew:               "new",
	SegmentPromising:         "promising",
	SegmentNeedAttention:     "need_attention",
	SegmentAboutToSleep:      "about_to_sleep",
	SegmentAtRisk:            "at_risk",
	SegmentCantLoseThem:      "cant_lose_them",
	SegmentHibernating:       "hibernating",
	SegmentLost:              "lost",
}

// String is the segment's stable machine name, e.g. "cant_lose_them".
func (s Segment) String() string {
	if n, ok := segmentNames[s]; ok {
		return n
	}
	return fmt.Sprintf("segment(%d)", int(s))
}

// SegmentOf maps recency and frequency scores (1-5) to a segment.
//
// The mapping is the 5x5 recency/frequency grid used throughout RFM practice
// and published as the "seg_map" of the widely reproduced RFM segmentation
// notebooks (e.g. the Miuul CRM Analytics course), read as R then F:
//
//	R\F   1               2               3               4       5
//	5     new             potential loy.  potential loy.  champ.  champ.
//	4     promising       potential loy.  potential loy.  loyal   loyal
//	3     about to sleep  about to sleep  need attention  loyal   loyal
//	2     hibernating     hibernating     at risk         at risk can't lose
//	1     lost*           hibernating     at risk         at risk can't lose
//
// That grid has ten segments and no "lost". * We take lost from the
// eleven-segment tables (Putler's, reproduced e.g. in the churned.io docs),
// which put lost in the lowest recency and frequency corner, overlapping
// hibernating: here lost is exactly R=1, F=1, carved out of hibernating, so
// the map stays a total function with no overlaps. Monetary does not pick the
// segment (as in the grid); it is reported per customer and per segment.
func SegmentOf(r, f int) Segment {
	switch {
	case r == 1 && f == 1:
		return SegmentLost
	case r <= 2 && f <= 2:
		return SegmentHibernating
	case r <= 2 && f <= 4:
		return SegmentAtRisk
	case r <= 2:
		return SegmentCantLoseThem
	case r == 3 && f <= 2:
		return SegmentAboutToSleep
	case r == 3 && f == 3:
		return SegmentNeedAttention
	case f >= 4 && r <= 4:
		return SegmentLoyal
	case f >= 4:
		return SegmentChampions
	case f == 1 && r == 4:
		return SegmentPromising
	case f == 1:
		return SegmentNew
	default: // r 4-5, f 2-3
		return SegmentPotentialLoyalist
	}
}

// RFMScore is one customer's RFM as of an instant.
type RFMScore struct {
	Customer      CustomerID
	Recency       time.Duration
	Frequency     int64
	MonetaryMinor int64
	// R, F and M are quintile scores, 5 best.
	R, F, M int
	Segment Segment
}

// SegmentSize is the number of customers in a segment and their revenue.
type SegmentSize struct {
	Segment   Segment
	Customers int64
	NetMinor  int64
}

// RFM is the RFM analysis of a tenant as of an instant.
type RFM struct {
	At time.Time
	// Customers is sorted by customer id.
	Customers []RFMScore
	// Segments holds every segment, in the order of Segments, empty ones
	// included.
	Segments []SegmentSize
}

// ScoreRFM scores every customer with at least one order before at.
//
// Quintile scores, ties: a customer's score is 1 + floor(5 w / n), where n is
// the number of customers scored and w the number with a strictly worse value
// (older last order for R, fewer orders for F, less net revenue for M).
// Customers with equal values therefore always share a score, the score does
// not depend on customer ids or input order, and it is what SQL gives with
// 1 + floor(5 * (rank() over (order by value) - 1) / count(*) over ()). With
// heavy ties a score can be skipped (when half the customers have a single
// order they all get F=1 and the next value starts at F=3); splitting a tie
// between two scores, as NTILE does, would make the score of identical
// customers depend on their ids. Recency ranks the exact last-order instant.
func ScoreRFM(values []CustomerValue, at time.Time) (RFM, error) {
	scored := make([]CustomerValue, 0, len(values))
	for _, v := range values {
		if v.Orders <= 0 {
			continue
		}
		if !v.LastOrder.Before(at) {
			return RFM{}, fmt.Errorf("rfm as of %s: customer %s has a last order at %s, not before it", at.Format(time.RFC3339), v.Customer, v.LastOrder.Format(time.RFC3339))
		}
		scored = append(scored, v)
	}
	slices.SortFunc(scored, func(a, b CustomerValue) int { return cmp.Compare(a.Customer, b.Customer) })

	n := len(scored)
	recency := make([]int64, n)
	frequency := make([]int64, n)
	monetary := make([]int64, n)
	for i, v := range scored {
		// A later last order is better, so rank by the instant itself.
		recency[i] = v.LastOrder.UnixNano()
		frequency[i] = v.Orders
		monetary[i] = v.NetMinor
	}
	rs, fs, ms := quintiles(recency), quintiles(frequency), quintiles(monetary)

	out := RFM{At: at, Customers: make([]RFMScore, n), Segments: make([]SegmentSize, len(Segments))}
	for i, s := range Segments {
		out.Segments[i].Segment = s
	}
	for i, v := range scored {
		seg := SegmentOf(rs[i], fs[i])
		out.Customers[i] = RFMScore{
			Customer: v.Customer, Recency: at.Sub(v.LastOrder), Frequency: v.Orders, MonetaryMinor: v.NetMinor,
			R: rs[i], F: fs[i], M: ms[i], Segment: seg,
		}
		size := &out.Segments[seg-SegmentChampions]
		size.Customers++
		size.NetMinor += v.NetMinor
	}
	return out, nil
}

// quintiles scores each value 1-5, higher values better, by the rule in
// ScoreRFM's comment.
func quintiles(values []int64) []int {
	n := len(values)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(values[a], values[b]) })
	scores := make([]int, n)
	worse := 0
	for i, idx := range order {
		if i > 0 && values[idx] != values[order[i-1]] {
			worse = i
		}
		scores[idx] = 1 + 5*worse/n
	}
	return scores
}
