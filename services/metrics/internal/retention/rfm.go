package retention

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/retainhq/retain/services/metrics/rfm"
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

// RFMScore is one customer's RFM as of an instant.
type RFMScore struct {
	Customer      CustomerID
	Recency       time.Duration
	Frequency     int64
	MonetaryMinor int64
	// R, F and M are quintile scores, 5 best.
	R, F, M int
	Segment rfm.Segment
}

// SegmentSize is the number of customers in a segment and their revenue.
type SegmentSize struct {
	Segment   rfm.Segment
	Customers int64
	NetMinor  int64
}

// RFM is the RFM analysis of a tenant as of an instant.
type RFM struct {
	At time.Time
	// Customers is sorted by customer id.
	Customers []RFMScore
	// Segments holds every segment, in the order of rfm.Segments, empty
	// ones included.
	Segments []SegmentSize
}

// ScoreRFM scores every customer with at least one order before at, by the
// shared rules of package rfm: quintile scores (rfm.Scale, ties share a
// score) and the segment of R and F (rfm.SegmentOf). Recency ranks the exact
// last-order instant.
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
	rs, fs, ms := rfm.Quintiles(recency), rfm.Quintiles(frequency), rfm.Quintiles(monetary)

	out := RFM{At: at, Customers: make([]RFMScore, n), Segments: make([]SegmentSize, len(rfm.Segments))}
	for i, s := range rfm.Segments {
		out.Segments[i].Segment = s
	}
	for i, v := range scored {
		seg := rfm.SegmentOf(rs[i], fs[i])
		out.Customers[i] = RFMScore{
			Customer: v.Customer, Recency: at.Sub(v.LastOrder), Frequency: v.Orders, MonetaryMinor: v.NetMinor,
			R: rs[i], F: fs[i], M: ms[i], Segment: seg,
		}
		size := &out.Segments[seg-rfm.SegmentChampions]
		size.Customers++
		size.NetMinor += v.NetMinor
	}
	return out, nil
}
