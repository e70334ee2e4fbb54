package model

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/stat/distuv"
)

// simulator draws BG/NBD customers: λ ~ Gamma(r, α), p ~ Beta(a, b); while
// alive a customer buys at Poisson(λ) times and drops out with probability p
// right after each repeat purchase.
type simulator struct {
	rng    *rand.Rand
	params Params
	rate   distuv.Gamma
	drop   distuv.Beta
}

func newSimulator(seed uint64, p Params) *simulator {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	return &simulator{
		rng:    rng,
		params: p,
		rate:   distuv.Gamma{Alpha: p.R, Beta: p.Alpha, Src: rng},
		drop:   distuv.Beta{Alpha: p.A, Beta: p.B, Src: rng},
	}
}

// history simulates one customer observed for T weeks after the first
// purchase, in continuous time.
func (s *simulator) history(T float64) Summary {
	lambda, p := s.rate.Rand(), s.drop.Rand()
	var sum Summary
	sum.T = T
	for t := 0.0; ; {
		t += s.rng.ExpFloat64() / lambda
		if t > T {
			return sum
		}
		sum.X++
		sum.Tx = t
		if s.rng.Float64() < p {
			return sum
		}
	}
}

// cohort simulates n customers with ages uniform on [tMin, tMax] weeks. With
// days set, ages and purchase times are truncated to whole days and purchases
// on one day merged, as production summaries are; that also makes customers
// share summaries, as real ones do.
func (s *simulator) cohort(n int, tMin, tMax float64, days bool) []Summary {
	out := make([]Summary, n)
	for i := range out {
		T := tMin + (tMax-tMin)*s.rng.Float64()
		if !days {
			out[i] = s.history(T)
			continue
		}
		out[i] = s.dailyHistory(math.Floor(T * daysPerWeek))
	}
	return out
}

func (s *simulator) dailyHistory(ageDays float64) Summary {
	lambda, p := s.rate.Rand(), s.drop.Rand()
	sum := Summary{T: ageDays / daysPerWeek}
	lastDay := 0.0
	for t := 0.0; ; {
		t += s.rng.ExpFloat64() / lambda
		day := math.Floor(t * daysPerWeek)
		if day > ageDays {
			return sum
		}
		if day > lastDay {
			sum.X++
			sum.Tx = day / daysPerWeek
			lastDay = day
		}
		if s.rng.Float64() < p {
			return sum
		}
	}
}
