package domain

import (
	"time"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/metrics/rfm"
)

// RFMValue is one customer's orders placed before an instant: the store's
// summary that the tenant's RFM scales are built from.
type RFMValue struct {
	Customer  string
	LastOrder time.Time
	Orders    int64
}

// RFMScales are the tenant's recency and frequency values as of At, one per
// customer with an order before At, as the metrics service computes them
// (retention's CustomerValues). A customer is scored against them with the
// shared rules of package rfm. Monetary is not kept: it picks no segment.
type RFMScales struct {
	At time.Time
	// Recency holds the last orders' instants (Unix nanoseconds),
	// Frequency the order counts.
	Recency, Frequency rfm.Scale
}

// NewRFMScales builds the scales as of at from the store's per customer
// summaries (of orders before at).
func NewRFMScales(at time.Time, vs []RFMValue) *RFMScales {
	recency := make([]int64, len(vs))
	frequency := make([]int64, len(vs))
	for i, v := range vs {
		recency[i], frequency[i] = v.LastOrder.UnixNano(), v.Orders
	}
	return &RFMScales{At: at, Recency: rfm.NewScale(recency), Frequency: rfm.NewScale(frequency)}
}

// CustomerRFM is a customer's recency and frequency quintile scores (5
// best) and segment.
type CustomerRFM struct {
	R, F    int
	Segment rfm.Segment
}

// Score scores c's orders before s.At against the tenant's scales; ok is
// false when c had not ordered by then. c's Since must not be after s.At.
func (s *RFMScales) Score(c *Customer) (CustomerRFM, bool) {
	last, orders := c.Earlier.Last, c.Earlier.Count
	for _, o := range c.Orders {
		if !o.At.Before(s.At) {
			continue
		}
		orders++
		if o.At.After(last) {
			last = o.At
		}
	}
	if orders == 0 || s.Recency.Len() == 0 {
		return CustomerRFM{}, false
	}
	r, f := s.Recency.Score(last.UnixNano()), s.Frequency.Score(orders)
	return CustomerRFM{R: r, F: f, Segment: rfm.SegmentOf(r, f)}, true
}

// UsesRFM reports whether any of the plans has an rfm_segment condition.
func UsesRFM(plans []*Plan) bool {
	for _, p := range plans {
		for _, c := range p.Campaign.GetConditions() {
			if _, is := c.GetKind().(*campaignv1.Condition_RfmSegment); is {
				return true
			}
		}
	}
	return false
}
