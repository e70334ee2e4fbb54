package simulate

import (
	"math"
	"math/bits"
	"math/rand/v2"
)

// rng is a PCG stream with the few distributions the model needs. The
// distributions are written here on top of the raw PCG output (whose algorithm
// is fixed) instead of using rand.Rand's, so that the output depends only on
// the seed and this file, and so that a customer's stream is a 16-byte value
// that lives inside the customer's state without an allocation.
type rng struct {
	pcg rand.PCG
}

// Stream numbers: every customer owns independent streams, so its plan (the
// ground truth) can be recomputed alone, without replaying the whole shop.
const (
	streamPlan = 1 // acquisition, parameters, then purchases (replayed)
	streamLife = 2 // profile, order contents, tickets, surveys, refunds
)

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func newRNG(seed int64, customer int, stream uint64) rng {
	hi := splitmix(uint64(seed) ^ splitmix(uint64(customer)<<4|stream))
	lo := splitmix(hi ^ 0x6a09e667f3bcc909)
	var r rng
	r.pcg.Seed(hi, lo)
	return r
}

// float64 is uniform in [0, 1).
func (r *rng) float64() float64 {
	return float64(r.pcg.Uint64()>>11) * (1.0 / (1 << 53))
}

// open01 is uniform in (0, 1], safe to take the logarithm of.
func (r *rng) open01() float64 {
	return 1 - r.float64()
}

// chance is true with probability p.
func (r *rng) chance(p float64) bool {
	return r.float64() < p
}

// intn is uniform in [0, n) for n > 0 (Lemire's multiply-shift; the bias is
// below 2^-40 for the small n used here).
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.pcg.Uint64(), uint64(n))
	return int(hi)
}

// between is uniform in [lo, hi).
func (r *rng) between(lo, hi float64) float64 {
	return lo + (hi-lo)*r.float64()
}

// exp is exponential with rate 1.
func (r *rng) exp() float64 {
	return -math.Log(r.open01())
}

// norm is standard normal (Box-Muller, one value per call).
func (r *rng) norm() float64 {
	u1 := r.open01()
	u2 := r.float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// gamma is Gamma(shape, 1) by Marsaglia and Tsang (2000), with the usual boost
// U^(1/shape) for shapes below one (r = 0.24 is far below).
func (r *rng) gamma(shape float64) float64 {
	if shape < 1 {
		return r.gamma(shape+1) * math.Pow(r.open01(), 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.norm()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.open01()
		x2 := x * x
		if u < 1-0.0331*x2*x2 || math.Log(u) < 0.5*x2+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// beta is Beta(a, b) from two gammas.
func (r *rng) beta(a, b float64) float64 {
	x := r.gamma(a)
	y := r.gamma(b)
	if x+y == 0 {
		// Both underflowed (tiny shapes): either end is as likely.
		if r.chance(a / (a + b)) {
			return 1
		}
		return 0
	}
	return x / (x + y)
}

// pick returns an index drawn with the given cumulative weights (the last one
// is the total).
func (r *rng) pick(cumulative []float64) int {
	u := r.float64() * cumulative[len(cumulative)-1]
	for i, c := range cumulative {
		if u < c {
			return i
		}
	}
	return len(cumulative) - 1
}

// cumulate turns weights into cumulative weights for pick.
func cumulate(weights ...float64) []float64 {
	out := make([]float64, len(weights))
	var sum float64
	for i, w := range weights {
		sum += w
		out[i] = sum
	}
	return out
}
