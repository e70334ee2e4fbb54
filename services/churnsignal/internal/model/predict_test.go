package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// predictionCases are parameter sets and histories that cover the regimes of
// the predictions: a < 1 and a > 2, a ≈ 1, a+b < 1 (C < 0 for x = 0), frequent
// buyers with large x, and new customers with horizons far longer than α+T.
func predictionCases() []struct {
	name string
	p    Params
	s    Summary
} {
	cdnow, _ := publishedCDNOW()
	frequent := Params{R: 8, Alpha: 0.5, A: 1, B: 60}
	return []struct {
		name string
		p    Params
		s    Summary
	}{
		{"CDNOW one-time buyer", cdnow, Summary{X: 0, T: 38.86}},
		{"CDNOW customer 1", cdnow, Summary{X: 2, Tx: 30.43, T: 38.86}},
		{"CDNOW lapsed", cdnow, Summary{X: 7, Tx: 10, T: 38}},
		{"CDNOW new", cdnow, Summary{X: 0, T: 0.5}},
		{"a near 1", Params{R: 0.5, Alpha: 3, A: 1 + 1e-9, B: 2}, Summary{X: 3, Tx: 20, T: 30}},
		{"a = 1", Params{R: 0.5, Alpha: 3, A: 1, B: 2}, Summary{X: 3, Tx: 20, T: 30}},
		{"a > 2", Params{R: 1.5, Alpha: 6, A: 4, B: 30}, Summary{X: 4, Tx: 12, T: 20}},
		{"a+b < 1", Params{R: 0.4, Alpha: 2, A: 0.3, B: 0.4}, Summary{X: 0, T: 10}},
		{"frequent active", frequent, Summary{X: 300, Tx: 38.9, T: 39}},
		{"frequent, quiet for half a week", frequent, Summary{X: 300, Tx: 38.5, T: 39}},
		{"fast new customer", Params{R: 0.5, Alpha: 0.05, A: 0.6, B: 0.7}, Summary{X: 0, T: 0}},
	}
}

func TestPAliveIsOneWithoutRepeatPurchases(t *testing.T) {
	for _, c := range predictionCases() {
		for _, T := range []float64{0, 1, 39, 500} {
			if got := c.p.PAlive(Summary{X: 0, T: T}); got != 1 {
				t.Errorf("%s: P(alive | x=0, T=%v) = %v, want 1", c.name, T, got)
			}
		}
	}
	// And it falls with silence once there are repeat purchases.
	p, _ := publishedCDNOW()
	prev := 1.0
	for _, T := range []float64{5, 10, 20, 40, 80} {
		pa := p.PAlive(Summary{X: 3, Tx: 5, T: T})
		if !(pa < prev) {
			t.Errorf("P(alive | x=3, t_x=5, T=%v) = %v, not below %v", T, pa, prev)
		}
		prev = pa
	}
}

func TestPredictionsAreMonotoneInHorizon(t *testing.T) {
	for _, c := range predictionCases() {
		t.Run(c.name, func(t *testing.T) {
			prevE, prevP0 := 0.0, 1.0
			if got := c.p.Score(c.s, 0); got.ExpectedPurchases != 0 || got.PNoPurchase != 1 {
				t.Errorf("horizon 0: %+v, want no purchases", got)
			}
			for _, h := range []float64{1e-6, 0.01, 0.5, 1, 4, 13, 26, 39, 52, 104, 520, 5200} {
				sc := c.p.Score(c.s, h)
				if !(sc.ExpectedPurchases > prevE) {
					t.Errorf("E[Y(%v)] = %v, not above E at the shorter horizon %v", h, sc.ExpectedPurchases, prevE)
				}
				// P0 falls toward 1 - P(alive), which it reaches in float64
				// once an active customer is sure to buy.
				if !(sc.PNoPurchase <= prevP0) || !(sc.PNoPurchase >= 1-sc.PAlive) {
					t.Errorf("P0(%v) = %v, want at most %v and at least 1 - P(alive) = %v", h, sc.PNoPurchase, prevP0, 1-sc.PAlive)
				}
				prevE, prevP0 = sc.ExpectedPurchases, sc.PNoPurchase
			}
		})
	}
}

// TestExpectedPurchasesAgreeAcrossMethods checks the Euler-transformed series
// against the tanh-sinh quadrature of the p-integral wherever the series
// converges (given enough terms), and so the quadrature where it takes over.
func TestExpectedPurchasesAgreeAcrossMethods(t *testing.T) {
	fallbacks := 0
	for _, c := range predictionCases() {
		for _, h := range []float64{0.01, 1, 4, 39, 104, 520} {
			if _, ok := c.p.expectedIfAliveSeries(c.s, h, maxSeriesTerms); !ok {
				fallbacks++ // ExpectedPurchases uses the quadrature here
			}
			t.Run(fmt.Sprintf("%s/h=%v", c.name, h), func(t *testing.T) {
				series, ok := c.p.expectedIfAliveSeries(c.s, h, 2_000_000)
				if !ok {
					t.Skip("series does not converge in 2e6 terms")
				}
				quad := c.p.expectedIfAliveQuad(c.s, h)
				if math.Abs(series-quad) > 1e-9*series {
					t.Errorf("series %.15g, quadrature %.15g (relative %.2g)", series, quad, math.Abs(series/quad-1))
				}
			})
		}
	}
	if fallbacks == 0 {
		t.Error("no case reaches the quadrature fallback")
	}
	t.Logf("%d (case, horizon) pairs use the quadrature", fallbacks)
	// The paper's worked example: a CDNOW customer with x = 2, t_x = 30.43,
	// T = 38.86 is expected to make 1.226 purchases in the next 39 weeks.
	p, _ := publishedCDNOW()
	if got := p.ExpectedPurchases(Summary{X: 2, Tx: 30.43, T: 38.86}, 39); math.Abs(got-1.226) > 5e-4 {
		t.Errorf("E[Y(39) | 2, 30.43, 38.86] = %.5f, want 1.226", got)
	}
}

// TestPredictionsMatchMonteCarlo checks P(alive), E[Y(h)] and P0(h) against a
// simulation of the BG/NBD process that uses none of the closed forms: λ and p
// are drawn given the history by importance sampling, the customer is alive
// or not according to the two branches of the likelihood, and the horizon is
// simulated purchase by purchase, with dropout after each purchase.
//
// For x > 0 the posterior of (λ, p) is proportional to
// Gamma(r+x, α+t_x)·Beta(a, b+x-1)·w with w = (1-p)e^(-λ(T-t_x)) + p, where
// the first term of w is the "still alive" branch; for x = 0 it is
// Gamma(r, α+T)·Beta(a, b) and the customer is alive.
func TestPredictionsMatchMonteCarlo(t *testing.T) {
	const n = 100_000
	horizons := []float64{4, 39}
	for i, c := range predictionCases() {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 77))
			x := float64(c.s.X)
			lambdaDist := distuv.Gamma{Alpha: c.p.R + x, Beta: c.p.Alpha + c.s.Tx, Src: rng}
			pDist := distuv.Beta{Alpha: c.p.A, Beta: c.p.B + x - 1, Src: rng}
			if c.s.X == 0 {
				lambdaDist.Beta = c.p.Alpha + c.s.T
				pDist.Beta = c.p.B
			}
			alive := newWeightedMean()
			expected := make([]*weightedMean, len(horizons))
			none := make([]*weightedMean, len(horizons))
			for j := range horizons {
				expected[j], none[j] = newWeightedMean(), newWeightedMean()
			}
			for range n {
				lambda, p := lambdaDist.Rand(), pDist.Rand()
				w, pAlive := 1.0, 1.0
				if c.s.X > 0 {
					stay := (1 - p) * math.Exp(-lambda*(c.s.T-c.s.Tx))
					w = stay + p
					pAlive = stay / w
				}
				isAlive := rng.Float64() < pAlive
				alive.add(w, b2f(isAlive))
				for j, h := range horizons {
					y := 0
					if isAlive {
						for t := rng.ExpFloat64() / lambda; t <= h; t += rng.ExpFloat64() / lambda {
							y++
							if rng.Float64() < p {
								break
							}
						}
					}
					expected[j].add(w, float64(y))
					none[j].add(w, b2f(y == 0))
				}
			}
			check := func(what string, model float64, mc *weightedMean) {
				t.Helper()
				m, se := mc.result()
				if math.Abs(model-m) > 4.5*se+1e-9 {
					t.Errorf("%s: model %.5f, simulation %.5f ± %.5f", what, model, m, se)
				}
			}
			check("P(alive)", c.p.PAlive(c.s), alive)
			for j, h := range horizons {
				check(fmt.Sprintf("E[Y(%v)]", h), c.p.ExpectedPurchases(c.s, h), expected[j])
				check(fmt.Sprintf("P0(%v)", h), c.p.PNoPurchase(c.s, h), none[j])
			}
		})
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// weightedMean is a self-normalised importance-sampling estimate with its
// delta-method standard error.
type weightedMean struct{ sw, swv, sw2v2, sw2v, sw2 float64 }

func newWeightedMean() *weightedMean { return &weightedMean{} }

func (m *weightedMean) add(w, v float64) {
	m.sw += w
	m.swv += w * v
	m.sw2 += w * w
	m.sw2v += w * w * v
	m.sw2v2 += w * w * v * v
}

func (m *weightedMean) result() (mean, se float64) {
	mean = m.swv / m.sw
	// Σ w²(v-mean)² / (Σw)²
	v := m.sw2v2 - 2*mean*m.sw2v + mean*mean*m.sw2
	return mean, math.Sqrt(max(v, 0)) / m.sw
}

// TestMeanExpectedPurchases weighs each group's expectation by its count.
func TestMeanExpectedPurchases(t *testing.T) {
	p, _ := publishedCDNOW()
	a, b := Summary{X: 0, T: 30}, Summary{X: 4, Tx: 20, T: 30}
	got := p.MeanExpectedPurchases([]Group{{Summary: a, Count: 1}, {Summary: b, Count: 3}}, 13)
	want := (p.ExpectedPurchases(a, 13) + 3*p.ExpectedPurchases(b, 13)) / 4
	if math.Abs(got-want) > 1e-12*want {
		t.Errorf("mean = %v, want %v", got, want)
	}
	if got := p.MeanExpectedPurchases(nil, 13); got != 0 {
		t.Errorf("mean of no customers = %v, want 0", got)
	}
}
