package model

import "math"

// Score is the model's view of one customer at the end of calibration.
type Score struct {
	// PAlive is the posterior probability that the customer has not dropped
	// out. It is 1 for every customer without repeat purchases, so it ranks
	// churn badly on its own.
	PAlive float64
	// ExpectedPurchases is the expected number of purchases in the horizon.
	ExpectedPurchases float64
	// PNoPurchase is the probability of no purchase in the horizon, the
	// model's churn probability.
	PNoPurchase float64
}

// Score computes all three predictions for a history s over the next horizon
// weeks, sharing the work that they have in common.
func (p Params) Score(s Summary, horizon float64) Score {
	pa := p.PAlive(s)
	return Score{
		PAlive:            pa,
		ExpectedPurchases: pa * p.expectedIfAlive(s, horizon),
		PNoPurchase:       1 - pa*p.pPurchaseIfAlive(s, horizon),
	}
}

// PAlive is the posterior probability that a customer with history s is still
// active at the end of calibration: 1/(1+e^D) with D = logDeadOverAlive (paper,
// eq. 13), computed without overflow for any D. Customers with x = 0 cannot
// have dropped out under the BG/NBD, so their P(alive) is 1.
func (p Params) PAlive(s Summary) float64 {
	if s.X == 0 {
		return 1
	}
	d := logDeadOverAlive(p, s)
	if d > 0 {
		q := math.Exp(-d)
		return q / (1 + q)
	}
	return 1 / (1 + math.Exp(d))
}

// PNoPurchase is the probability that a customer with history s makes no
// purchase in the next horizon weeks:
//
//	P0 = 1 - P(alive) + P(alive)·((α+T)/(α+T+h))^(r+x).
//
// A dropped-out customer never buys. An active one drops out only right after
// a purchase, so for them "no purchase in h" is exactly "the next
// inter-purchase time exceeds h", probability e^(-λh); given alive,
// λ ~ Gamma(r+x, α+T), and E[e^(-λh)] is the power above.
func (p Params) PNoPurchase(s Summary, horizon float64) float64 {
	return 1 - p.PAlive(s)*p.pPurchaseIfAlive(s, horizon)
}

// pPurchaseIfAlive is 1 - ((α+T)/(α+T+h))^(r+x), by expm1/log1p so that short
// horizons keep full relative precision.
func (p Params) pPurchaseIfAlive(s Summary, h float64) float64 {
	if !(h > 0) {
		return 0
	}
	return -math.Expm1(-(p.R + float64(s.X)) * math.Log1p(h/(p.Alpha+s.T)))
}

// ExpectedPurchases is the expected number of purchases of a customer with
// history s in the next horizon weeks (paper, eq. 10).
func (p Params) ExpectedPurchases(s Summary, horizon float64) float64 {
	return p.PAlive(s) * p.expectedIfAlive(s, horizon)
}

// MeanExpectedPurchases is the expected number of purchases in the next
// horizon weeks per customer of groups (0 without customers): what the
// model expects of the fitted customers as a whole.
func (p Params) MeanExpectedPurchases(groups []Group, horizon float64) float64 {
	var sum float64
	n := 0
	for _, g := range groups {
		sum += float64(g.Count) * p.ExpectedPurchases(g.Summary, horizon)
		n += g.Count
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// maxSeriesTerms bounds the hypergeometric series; past it the quadrature is
// cheaper and the series would be losing its fight with z -> 1.
const maxSeriesTerms = 400

// expectedIfAlive is E[Y(h) | alive, history]. Given alive, λ ~ Gamma(s, α+T)
// with s = r+x and p ~ Beta(a, β) with β = b+x, and E[Y(h) | λ, p] =
// (1-e^(-λph))/p, so with τ = h/(α+T)
//
//	E = E_p[g(p)],  g(p) = (1 - (1+pτ)^-s)/p.                    (1)
//
// The paper's closed form is (C = a+b+x-1, z = h/(α+T+h))
//
//	E = C/(a-1) · [1 - (1-z)^s ₂F₁(s, β; C; z)],
//
// which divides by a-1 and, for z near 1, needs a series whose terms shrink
// like z^k only after a long algebraic stretch. Euler's transformation
// ₂F₁(s, β; C; z) = (1-z)^(C-s-β) ₂F₁(C-s, a-1; C; z) and (a-1)_k =
// (a-1)(a)_(k-1) remove the division:
//
//	E = -C·L·expm1((a-1)L)/((a-1)L) - (1-z)^(a-1) · Σ_{k>=1} u_k,
//	u_1 = (C-s) z,  u_(k+1) = u_k (C-s+k)(a+k-1) z / ((C+k)(k+1)),
//
// with L = ln(1-z), where C·(C)_k^-1 has been cancelled into u_k so that
// C -> 0 is harmless too. Both parts are O(z) as h -> 0, so short horizons
// lose no precision; the cancellation between them costs about
// log10(|C|/(r+x)) digits. When the series would need more than
// maxSeriesTerms terms, (1) is integrated numerically instead.
func (p Params) expectedIfAlive(s Summary, h float64) float64 {
	if !(h > 0) {
		return 0
	}
	if v, ok := p.expectedIfAliveSeries(s, h, maxSeriesTerms); ok {
		return v
	}
	return p.expectedIfAliveQuad(s, h)
}

// expectedIfAliveSeries sums the Euler-transformed series; ok is false when it
// has not converged within maxTerms terms.
func (p Params) expectedIfAliveSeries(s Summary, h float64, maxTerms int) (v float64, ok bool) {
	x := float64(s.X)
	a := p.A
	c := a + p.B + x - 1
	cs := c - (p.R + x) // = a+b-1-r
	z := h / (p.Alpha + s.T + h)
	logOneMinusZ := -math.Log1p(h / (p.Alpha + s.T))

	sum, u := 0.0, cs*z
	for k := 1.0; ; k++ {
		sum += u
		if u == 0 {
			break // cs is a non-positive integer: the series terminates
		}
		if k >= float64(maxTerms) {
			return 0, false
		}
		// For j >= k the ratio u_(j+1)/u_j is at most
		// ρ = z·max(1, (a+k-1)/(k+1)) in size once cs+k > 0, since
		// (cs+j)/(C+j) < 1 and (a+j-1)/(j+1) moves monotonically toward 1;
		// the rest of the series is then below |u_(k+1)|/(1-ρ).
		u *= (cs + k) * (a + k - 1) * z / ((c + k) * (k + 1))
		if cs+k > 0 {
			rho := z * max(1, (a+k-1)/(k+1))
			if rho < 1 && math.Abs(u)/(1-rho) <= 1e-16*math.Abs(sum) {
				sum += u
				break
			}
		}
	}
	y := (a - 1) * logOneMinusZ
	return -c*logOneMinusZ*expm1x(y) - math.Exp(y)*sum, true
}

// expm1x is expm1(y)/y, continuous at 0.
func expm1x(y float64) float64 {
	if y == 0 {
		return 1
	}
	return math.Expm1(y) / y
}

// expectedIfAliveQuad integrates (1) against the Beta(a, b+x) density by
// tanh-sinh quadrature, which copes with the density's integrable
// singularities at p = 0 and p = 1 and with any τ.
func (p Params) expectedIfAliveQuad(s Summary, h float64) float64 {
	x := float64(s.X)
	a, beta := p.A, p.B+x
	rate := p.R + x
	tau := h / (p.Alpha + s.T)
	logNorm := lgamma(a) + lgamma(beta) - lgamma(a+beta) // ln B(a, β)
	f := func(v float64) float64 {
		// p = 1/(1+e^-w) with w = π sinh v, so dp/dv = π cosh(v) p(1-p).
		// With q = e^-|w|: ln p and ln(1-p) are -log1p(q) less max(∓w, 0),
		// exact in both tails, and p is 1/(1+q) or q/(1+q).
		ev := math.Exp(v)
		w := math.Pi * (ev - 1/ev) / 2
		q := math.Exp(-math.Abs(w))
		l := math.Log1p(q)
		logP, log1mP, pp := -l, -l-w, 1/(1+q)
		if w < 0 {
			logP, log1mP, pp = -l+w, -l, q/(1+q)
		}
		g := rate * tau // lim p->0 of g(p), for p below the float64 range
		if pp > 0 {
			g = -math.Expm1(-rate*math.Log1p(pp*tau)) / pp
		}
		// Beta density p^(a-1)(1-p)^(β-1)/B(a,β) times dp/dv.
		return g * math.Exp(a*logP+beta*log1mP-logNorm) * math.Pi * (ev + 1/ev) / 2
	}
	// Not converging within maxLevel would take an integrand far rougher
	// than a Beta density times a smooth g; the finest estimate is returned
	// regardless.
	v, _ := tanhSinh(f, 1e-9)
	return v
}

// tanhSinh integrates f over the real line, where f is an integrand already
// mapped by a tanh-sinh substitution (so it decays double-exponentially), by
// the trapezoidal rule with step halving. The range is found at the coarsest
// step by walking out until the terms are negligible. The error of each
// level is roughly the square of the previous level's, so stopping when two
// levels agree to tol leaves an error far below tol.
func tanhSinh(f func(float64) float64, tol float64) (float64, bool) {
	const (
		h0       = 1.0 / 4
		minLevel = 2 // do not trust agreement between the two coarsest levels
		maxLevel = 8
		vMin     = 3  // always walk at least this far out
		vMax     = 12 // sinh(12)·π ≈ 2.6e5: only a < 1e-5 has mass beyond
	)
	sum := f(0)
	var lo, hi float64
	for dir := -1.0; dir <= 1; dir += 2 {
		small := 0
		k := 1.0
		for ; k*h0 <= vMax; k++ {
			t := f(dir * k * h0)
			sum += t
			if math.Abs(t) <= 1e-18*math.Abs(sum) {
				small++
			} else {
				small = 0
			}
			if small >= 3 && k*h0 >= vMin {
				break
			}
		}
		if dir < 0 {
			lo = k * h0
		} else {
			hi = k * h0
		}
	}
	step := h0
	est := step * sum
	for level := 1; level <= maxLevel; level++ {
		step /= 2
		add := 0.0
		for j := 1.0; j*step <= hi; j += 2 {
			add += f(j * step)
		}
		for j := 1.0; j*step <= lo; j += 2 {
			add += f(-j * step)
		}
		next := est/2 + step*add
		if level >= minLevel && math.Abs(next-est) <= tol*math.Abs(next) {
			return next, true
		}
		est = next
	}
	return est, false
}
