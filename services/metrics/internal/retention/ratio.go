package retention

// Ratio is an exact fraction behind a rate. Rates travel as counts so that a
// response can show the numbers behind each percentage, and so that rounding
// happens once, at the edge.
type Ratio struct {
	Num int64
	Den int64
}

// Value returns Num/Den; ok is false when the ratio is undefined (Den == 0),
// which callers must show as "no figure" rather than 0, NaN or Inf.
func (r Ratio) Value() (v float64, ok bool) {
	if r.Den == 0 {
		return 0, false
	}
	return float64(r.Num) / float64(r.Den), true
}

// Percent returns Num/Den x 100. The multiplication happens before the
// division so that exact cases (8/10 -> 80) stay exact in float64.
func (r Ratio) Percent() (p float64, ok bool) {
	if r.Den == 0 {
		return 0, false
	}
	return float64(r.Num) * 100 / float64(r.Den), true
}

// AverageMinor divides an amount of money in minor units by a count and rounds
// half away from zero to whole minor units, so averages of money (AOV, revenue
// per cohort member) never pass through floats. ok is false when n <= 0.
func AverageMinor(totalMinor, n int64) (avg int64, ok bool) {
	if n <= 0 {
		return 0, false
	}
	q, r := totalMinor/n, totalMinor%n
	if r < 0 {
		r = -r
	}
	// r < n, so 2*r cannot overflow for any realistic count.
	if 2*r >= n {
		if totalMinor < 0 {
			q--
		} else {
			q++
		}
	}
	return q, true
}
