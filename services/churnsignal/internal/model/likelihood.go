package model

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// LogLikelihood is one customer's BG/NBD log-likelihood ln L(r, α, a, b | x,
// t_x, T), computed in logs so that it stays finite for any x (see the package
// documentation for the derivation).
func LogLikelihood(p Params, s Summary) float64 {
	x := float64(s.X)
	ll := lgamma(p.R+x) - lgamma(p.R) + p.R*math.Log(p.Alpha) +
		lbetaRatio(p.A, p.B, x) - (p.R+x)*math.Log(p.Alpha+s.T)
	if s.X > 0 {
		ll += softplus(logDeadOverAlive(p, s))
	}
	return ll
}

// TotalLogLikelihood sums LogLikelihood over groups, weighted by their counts.
func TotalLogLikelihood(p Params, groups []Group) (float64, error) {
	d, err := newDataset(groups)
	if err != nil {
		return 0, err
	}
	ll, _ := newEvaluator(d).eval(p)
	return ll, nil
}

// logDeadOverAlive is D = ln of the ratio of the likelihood's "dropped out
// after the last purchase" term to its "still alive at T" term, for x > 0:
//
//	D = ln a - ln(b+x-1) + (r+x)(ln(α+T) - ln(α+t_x)).
//
// P(alive) = 1/(1+e^D), and the likelihood is the alive term times (1+e^D).
func logDeadOverAlive(p Params, s Summary) float64 {
	x := float64(s.X)
	return math.Log(p.A) - math.Log(p.B+x-1) +
		(p.R+x)*(math.Log(p.Alpha+s.T)-math.Log(p.Alpha+s.Tx))
}

// lbetaRatio is lnB(a, b+x) - lnB(a, b); lnΓ(a) cancels.
func lbetaRatio(a, b, x float64) float64 {
	return lgammaDiff(b, x) - lgammaDiff(a+b, x)
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}

// stirlingMin is where Stirling's series serve lgammaDiff, digammaDiff
// and stirlingRest; below it lnΓ, whose size is then below 13, does.
const stirlingMin = 10

// lgammaDiff is lnΓ(y+x) - lnΓ(y) for y > 0, x >= 0. For large y the
// difference is about x·ln y while the two log-gammas are about y·ln y:
// a fit with b ~ 1e7 (a young shop's) lost 1e-8 per customer to the
// subtraction, noise that kept its optimizer from converging. Stirling's
// form of each cancels the large parts exactly:
//
//	(y-½)·ln(1+x/y) + x·(ln(y+x) - 1) + μ(y+x) - μ(y).
func lgammaDiff(y, x float64) float64 {
	if y < stirlingMin {
		return lgamma(y+x) - lgamma(y)
	}
	return (y-0.5)*math.Log1p(x/y) + x*(math.Log(y+x)-1) + stirlingRest(y+x) - stirlingRest(y)
}

// digammaDiff is ψ(y+x) - ψ(y) for y > 0, x >= 0, about x/y for large y,
// where the two digammas are about ln y; from the asymptotic series
// ψ(y) = ln y - 1/(2y) - ν(y) it is
//
//	ln(1+x/y) + x/(2y(y+x)) + ν(y) - ν(y+x).
//
// Below stirlingMin, ψ(y) = ψ(y+1) - 1/y moves y up first, adding
// 1/y - 1/(y+x) = x/(y(y+x)) each step: no digamma function is needed
// (gonum's is good to about 1e-11 relative in such differences).
func digammaDiff(y, x float64) float64 {
	sum := 0.0
	for ; y < stirlingMin; y++ {
		sum += x / (y * (y + x))
	}
	return sum + math.Log1p(x/y) + x/(2*y*(y+x)) + digammaRest(y) - digammaRest(y+x)
}

// digammaRest is ν(y) = Σ_k B_2k/(2k·y^2k) = 1/(12y²) - 1/(120y⁴) + ...,
// for y >= stirlingMin: the first term left out is below 5e-17 at y = 10.
func digammaRest(y float64) float64 {
	u := 1 / (y * y)
	return u * (1.0/12 + u*(-1.0/120+u*(1.0/252+u*(-1.0/240+u*(1.0/132+
		u*(-691.0/32760+u*(1.0/12)))))))
}

// stirlingRest is μ(x) = lnΓ(x) - ((x-½)ln x - x + ½ln 2π), the remainder of
// Stirling's series, which is 1/(12x) - 1/(360x³) + ... for large x. Below
// stirlingMin it is computed from lnΓ.
func stirlingRest(x float64) float64 {
	if x < stirlingMin {
		return lgamma(x) - (x-0.5)*math.Log(x) + x - 0.5*math.Log(2*math.Pi)
	}
	// B_2k / (2k(2k-1) x^(2k-1)) for k = 1..8; the first term left out is
	// below 2e-18 at x = 10.
	y := 1 / (x * x)
	return (1.0/12 + y*(-1.0/360+y*(1.0/1260+y*(-1.0/1680+y*(1.0/1188+
		y*(-691.0/360360+y*(1.0/156+y*(-3617.0/122400)))))))) / x
}

// softplus is ln(1+e^d) without overflow for large d.
func softplus(d float64) float64 {
	if d > 0 {
		return d + math.Log1p(math.Exp(-d))
	}
	return math.Log1p(math.Exp(d))
}

// dataset is a fit's input in the layout the likelihood wants: per-x,
// per-T and per-t_x tables so that log-gammas, digammas and logarithms are
// computed once per distinct value, and rows that refer to them by index.
type dataset struct {
	customers float64 // Σ counts
	xs        []float64
	xWeight   []float64 // customers per distinct x
	ts, txs   []float64 // distinct T and t_x values
	rows      []row
}

type row struct {
	x, t, tx int32 // indexes into xs, ts, txs
	w        float64
}

func newDataset(groups []Group) (*dataset, error) {
	d := &dataset{}
	xi := map[int]int32{}
	ti := map[float64]int32{}
	txi := map[float64]int32{}
	index := func(m map[float64]int32, vals *[]float64, v float64) int32 {
		i, ok := m[v]
		if !ok {
			i = int32(len(*vals))
			m[v] = i
			*vals = append(*vals, v)
		}
		return i
	}
	d.rows = make([]row, 0, len(groups))
	for _, g := range groups {
		if g.Count < 0 {
			return nil, fmt.Errorf("group %+v: negative count", g)
		}
		if g.Count == 0 {
			continue
		}
		if err := g.Summary.Validate(); err != nil {
			return nil, err
		}
		i, ok := xi[g.X]
		if !ok {
			i = int32(len(d.xs))
			xi[g.X] = i
			d.xs = append(d.xs, float64(g.X))
			d.xWeight = append(d.xWeight, 0)
		}
		w := float64(g.Count)
		d.xWeight[i] += w
		d.customers += w
		d.rows = append(d.rows, row{x: i, t: index(ti, &d.ts, g.T), tx: index(txi, &d.txs, g.Tx), w: w})
	}
	if d.customers == 0 {
		return nil, fmt.Errorf("no customers to fit")
	}
	return d, nil
}

// rowsPerChunk fixes how rows are split for parallel summation. The split
// does not depend on the number of CPUs, so the floating-point sums (and the
// fitted parameters) are identical on every machine.
const rowsPerChunk = 16384

// partial is the log-likelihood and its gradient with respect to (r, α, a, b).
type partial struct {
	ll   float64
	grad [4]float64
}

// evaluator holds the scratch tables reused across likelihood evaluations.
type evaluator struct {
	d *dataset
	// per distinct x
	s        []float64 // r + x
	logRatio []float64 // ln a - ln(b+x-1), x > 0
	invBx1   []float64 // 1/(b+x-1), x > 0
	// per distinct T and t_x
	logT, invT   []float64
	logTx, invTx []float64
	chunks       []partial
}

func newEvaluator(d *dataset) *evaluator {
	nx := len(d.xs)
	return &evaluator{
		d:        d,
		s:        make([]float64, nx),
		logRatio: make([]float64, nx),
		invBx1:   make([]float64, nx),
		logT:     make([]float64, len(d.ts)),
		invT:     make([]float64, len(d.ts)),
		logTx:    make([]float64, len(d.txs)),
		invTx:    make([]float64, len(d.txs)),
		chunks:   make([]partial, (len(d.rows)+rowsPerChunk-1)/rowsPerChunk),
	}
}

// eval returns the total log-likelihood and its gradient with respect to the
// natural parameters (r, α, a, b). With s = r+x, σ = 1/(1+e^-D) (the posterior
// probability of having dropped out):
//
//	∂/∂r = ψ(r+x) - ψ(r) + ln α - ln(α+T) + σ(ln(α+T) - ln(α+t_x))
//	∂/∂α = r/α - s/(α+T) + σ s (1/(α+T) - 1/(α+t_x))
//	∂/∂a = ψ(a+b) - ψ(a+b+x) + σ/a
//	∂/∂b = ψ(b+x) - ψ(a+b+x) - ψ(b) + ψ(a+b) - σ/(b+x-1)
//
// with the σ terms only for x > 0.
func (e *evaluator) eval(p Params) (float64, [4]float64) {
	d := e.d
	r, alpha, a, b := p.R, p.Alpha, p.A, p.B
	var tot partial

	// Terms that depend on x only, as differences (lgammaDiff,
	// digammaDiff) that keep their precision however large b grows.
	logA := math.Log(a)
	for i, x := range d.xs {
		w := d.xWeight[i]
		psiAB := digammaDiff(a+b, x) // ψ(a+b+x) - ψ(a+b)
		tot.ll += w * (lgammaDiff(r, x) + lbetaRatio(a, b, x))
		tot.grad[0] += w * digammaDiff(r, x)
		tot.grad[2] -= w * psiAB
		tot.grad[3] += w * (digammaDiff(b, x) - psiAB)
		e.s[i] = r + x
		if x > 0 {
			e.logRatio[i] = logA - math.Log(b+x-1)
			e.invBx1[i] = 1 / (b + x - 1)
		}
	}
	logAlpha := math.Log(alpha)
	tot.ll += d.customers * r * logAlpha
	tot.grad[0] += d.customers * logAlpha
	tot.grad[1] += d.customers * r / alpha

	for i, t := range d.ts {
		e.logT[i] = math.Log(alpha + t)
		e.invT[i] = 1 / (alpha + t)
	}
	for i, t := range d.txs {
		e.logTx[i] = math.Log(alpha + t)
		e.invTx[i] = 1 / (alpha + t)
	}

	// Per-row terms, chunked; chunks run in parallel when there are several.
	if n := len(e.chunks); n == 1 {
		e.chunks[0] = e.rowTerms(d.rows)
	} else {
		workers := min(runtime.GOMAXPROCS(0), n)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for c := w; c < n; c += workers {
					lo := c * rowsPerChunk
					e.chunks[c] = e.rowTerms(d.rows[lo:min(lo+rowsPerChunk, len(d.rows))])
				}
			})
		}
		wg.Wait()
	}
	for _, c := range e.chunks {
		tot.ll += c.ll
		tot.grad[0] += c.grad[0]
		tot.grad[1] += c.grad[1]
		tot.grad[2] += c.grad[2] / a // rowTerms accumulates Σ wσ for ∂/∂a
		tot.grad[3] += c.grad[3]
	}
	return tot.ll, tot.grad
}

func (e *evaluator) rowTerms(rows []row) partial {
	var p partial
	for _, rw := range rows {
		w, s := rw.w, e.s[rw.x]
		lT, iT := e.logT[rw.t], e.invT[rw.t]
		p.ll -= w * s * lT
		p.grad[0] -= w * lT
		p.grad[1] -= w * s * iT
		if e.d.xs[rw.x] > 0 {
			lTx := e.logTx[rw.tx]
			dd := e.logRatio[rw.x] + s*(lT-lTx)
			// softplus(D) and σ(D) from one exponential of -|D| ≤ 0.
			q := math.Exp(-math.Abs(dd))
			sp, sig := math.Log1p(q), q/(1+q)
			if dd > 0 {
				sp, sig = dd+sp, 1/(1+q)
			}
			ws := w * sig
			p.ll += w * sp
			p.grad[0] += ws * (lT - lTx)
			p.grad[1] += ws * s * (iT - e.invTx[rw.tx])
			p.grad[2] += ws
			p.grad[3] -= ws * e.invBx1[rw.x]
		}
	}
	return p
}
