// Package rfm is the definition of RFM (recency, frequency, monetary)
// scores and segments. The metrics service reports them (`retain metrics
// rfm`) and the campaign service's rfm_segment condition tests them; both
// use this package, so a customer is in the same segment in both on the
// same orders (docs/decisions/0009-shared-rfm-rules.md).
//
// The package holds the rules only, on plain values: what a customer's
// values are (last order, order count, net revenue before an instant) is
// each caller's to compute from its own facts, keeping of each order the
// version OrderVersion.Compare picks.
package rfm

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// OrderVersion is what tells apart two versions of one order id, e.g. a
// shop re-sending an order with another time, customer or total.
type OrderVersion struct {
	At         time.Time
	Customer   string
	TotalMinor int64
	Currency   string
}

// Compare orders two versions of one order id; the one that sorts first
// counts: the earliest, then by customer, total and currency (bytewise, as
// Postgres' "C" collation), so every service keeps the same version
// whatever order they arrive in.
func (a OrderVersion) Compare(b OrderVersion) int {
	return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Customer, b.Customer), cmp.Compare(a.TotalMinor, b.TotalMinor), cmp.Compare(a.Currency, b.Currency))
}

// Segment is a named RFM segment.
type Segment int

// The segments, best first. The zero value is deliberately not a segment.
// The numbers are those of retain.metrics.v1.RFMSegment.
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

// Scale is one measure's values over the customers scored (one value per
// customer, higher better: the last order's instant for R, the order count
// for F, net revenue for M), ready to score any one customer.
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
// customers depend on their ids.
type Scale struct {
	sorted []int64
}

// NewScale is the scale of values; it keeps a sorted copy.
func NewScale(values []int64) Scale {
	s := slices.Clone(values)
	slices.Sort(s)
	return Scale{sorted: s}
}

// Len is the number of customers on the scale.
func (s Scale) Len() int { return len(s.sorted) }

// Score is the quintile score (1-5, 5 best) of v, a customer's value. v is
// normally one of the scale's values; a value that is not scores where it
// would fall among them, at most 5. An empty scale scores nothing: 0.
func (s Scale) Score(v int64) int {
	n := len(s.sorted)
	if n == 0 {
		return 0
	}
	// The insertion point of v is the number of values below it.
	worse, _ := slices.BinarySearch(s.sorted, v)
	return min(1+5*worse/n, 5)
}

// Quintiles scores each of values against all of them (Scale's rule).
func Quintiles(values []int64) []int {
	s := NewScale(values)
	scores := make([]int, len(values))
	for i, v := range values {
		scores[i] = s.Score(v)
	}
	return scores
}
