package domain

import "math"

// Z95 is the standard normal quantile for two-sided 95% intervals.
const Z95 = 1.959963984540054

// Interval is a confidence interval.
type Interval struct{ Low, High float64 }

// Wilson is the Wilson score interval of the proportion x/n.
func Wilson(x, n int64, z float64) Interval {
	if n == 0 {
		return Interval{0, 1}
	}
	p := float64(x) / float64(n)
	nn := float64(n)
	z2 := z * z
	den := 1 + z2/nn
	center := (p + z2/(2*nn)) / den
	half := z * math.Sqrt(p*(1-p)/nn+z2/(4*nn*nn)) / den
	return Interval{math.Max(0, center-half), math.Min(1, center+half)}
}

// Lift compares the conversion of treated customers (x1 of n1) with the
// holdout (x2 of n2).
type Lift struct {
	RateTreated, RateHoldout float64
	// Absolute is RateTreated - RateHoldout, with Newcombe's hybrid score
	// interval (method 10 of Newcombe 1998), which keeps its coverage for
	// small groups and rates near 0 where the Wald interval does not.
	Absolute   float64
	AbsoluteCI Interval
	// Relative is RateTreated/RateHoldout - 1 with the Katz log risk ratio
	// interval; RelativeOK is false when either group has no conversion
	// (the ratio or its variance is undefined).
	Relative   float64
	RelativeCI Interval
	RelativeOK bool
}

// ComputeLift computes the lift at the 95% level; both groups must be
// non-empty.
func ComputeLift(x1, n1, x2, n2 int64) Lift {
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	w1, w2 := Wilson(x1, n1, Z95), Wilson(x2, n2, Z95)
	d := p1 - p2
	l := Lift{RateTreated: p1, RateHoldout: p2, Absolute: d}
	l.AbsoluteCI = Interval{
		Low:  d - math.Sqrt((p1-w1.Low)*(p1-w1.Low)+(w2.High-p2)*(w2.High-p2)),
		High: d + math.Sqrt((w1.High-p1)*(w1.High-p1)+(p2-w2.Low)*(p2-w2.Low)),
	}
	if x1 > 0 && x2 > 0 {
		rr := p1 / p2
		se := math.Sqrt(1/float64(x1) - 1/float64(n1) + 1/float64(x2) - 1/float64(n2))
		l.Relative = rr - 1
		l.RelativeCI = Interval{math.Exp(math.Log(rr)-Z95*se) - 1, math.Exp(math.Log(rr)+Z95*se) - 1}
		l.RelativeOK = true
	}
	return l
}

// Incremental is the revenue the campaign added: (treated revenue per
// treated member - holdout revenue per holdout member) x treated members.
func Incremental(revTreated, nTreated, revHoldout, nHoldout int64) int64 {
	if nTreated == 0 || nHoldout == 0 {
		return 0
	}
	per := float64(revTreated)/float64(nTreated) - float64(revHoldout)/float64(nHoldout)
	return int64(math.Round(per * float64(nTreated)))
}
