package model

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// FitOptions tune Fit; the zero value is the recommended setting.
type FitOptions struct {
	// Starts replaces the default starting points of the optimizer.
	Starts []Params
	// MaxIterations bounds the optimizer's major iterations per start
	// (default 500).
	MaxIterations int
}

// FitResult is the maximum likelihood estimate and how it was reached.
type FitResult struct {
	Params Params
	// StdErr holds asymptotic standard errors from the observed information
	// (the inverse Hessian of the log-likelihood); all zero when that matrix
	// is not positive definite (a parameter is not identified by the data).
	StdErr        Params
	LogLikelihood float64
	Customers     int
	Groups        int
	// Converged reports first-order optimality: GradNorm <= gradTolerance.
	Converged bool
	// GradNorm is the largest absolute component of the gradient of the mean
	// per-customer log-likelihood with respect to the log-parameters.
	GradNorm float64
	// Status is the optimizer's termination status for the winning start
	// (for example "GradientThreshold", or "Failure: linesearch: failed to
	// converge" when float64 could not resolve further progress), with
	// "; polished by Newton steps" when the final refinement moved it.
	Status string
	// Starts counts the starting points tried and StartsAgreeing those whose
	// run ended at the best optimum (within 1e-9 in mean log-likelihood): a
	// low count flags a likelihood with several optima.
	Starts, StartsAgreeing int
	// Evaluations counts likelihood evaluations over all starts.
	Evaluations int
}

// gradTolerance is the first-order optimality test on the mean
// log-likelihood's gradient in log-parameter space. BFGS stops there; the
// Newton polish then typically takes the gradient to 1e-12 or below (CDNOW:
// ~1e-15). A fit left above it is reported as not converged: in practice a
// parameter running off to a boundary, such as b -> ∞ when nobody drops out.
const gradTolerance = 1e-7

// logParamLimit bounds |ln θ| during the search: beyond e^±30 the model is
// degenerate (for example b → ∞ means nobody ever drops out) and the
// evaluation would lose all precision, so the objective is +Inf there, which
// the line search treats as "step too long".
const logParamLimit = 30

// Fit finds the BG/NBD parameters maximising the likelihood of groups.
//
// The search runs BFGS with the analytic gradient over (ln r, ln α, ln a,
// ln b), on the mean per-customer negative log-likelihood so that tolerances
// do not depend on the number of customers, from each starting point; the best
// optimum is kept. An error is returned only for unusable input: a run that
// stops short of an optimum is reported through Converged and Status.
func Fit(groups []Group, opts FitOptions) (FitResult, error) {
	d, err := newDataset(groups)
	if err != nil {
		return FitResult{}, fmt.Errorf("fit bg/nbd: %w", err)
	}
	repeats := 0.0
	for i, x := range d.xs {
		repeats += x * d.xWeight[i]
	}
	if repeats == 0 {
		// With no repeat purchase at all the dropout process is never
		// observed and the rates are pushed to zero: no optimum exists.
		return FitResult{}, fmt.Errorf("fit bg/nbd: no repeat purchases among %v customers", d.customers)
	}
	starts := opts.Starts
	if len(starts) == 0 {
		starts = defaultStarts(d)
	}
	for _, s := range starts {
		if err := s.Validate(); err != nil {
			return FitResult{}, fmt.Errorf("fit bg/nbd: starting point: %w", err)
		}
	}
	maxIter := opts.MaxIterations
	if maxIter <= 0 {
		maxIter = 500
	}

	obj := &objective{ev: newEvaluator(d), n: d.customers}
	res := FitResult{Customers: int(d.customers), Groups: len(d.rows), Starts: len(starts)}
	finals := make([]float64, 0, len(starts))
	bestF := math.Inf(1)
	var bestX []float64
	for _, start := range starts {
		l := start.logs()
		x, status := obj.minimize(l[:], maxIter)
		f, _ := obj.valueGrad(x)
		finals = append(finals, f)
		if f < bestF {
			bestF, bestX, res.Status = f, x, status
		}
	}
	if bestX == nil {
		return FitResult{}, fmt.Errorf("fit bg/nbd: the likelihood is not finite at any starting point")
	}
	bestX, bestF, hess, polished := obj.polish(bestX)
	if polished {
		res.Status += "; polished by Newton steps"
	}
	for _, f := range finals {
		if f-bestF <= sameOptimum {
			res.StartsAgreeing++
		}
	}
	_, g := obj.valueGrad(bestX)
	res.GradNorm = maxAbs(g[:])
	res.Converged = res.GradNorm <= gradTolerance
	res.Params = paramsFromLogs(bestX)
	res.LogLikelihood = -bestF * d.customers
	res.StdErr = stdErr(res.Params, hess, d.customers)
	res.Evaluations = obj.evals
	return res, nil
}

// sameOptimum is how close (in mean log-likelihood per customer) a start's
// result must come to the best one to count as having found it.
const sameOptimum = 1e-9

// defaultStarts spreads starting points over typical shapes of the
// heterogeneity (r) and dropout (a, b) distributions, with α set so that the
// prior mean rate r/α matches the observed repeat rate: the likelihood is
// fairly flat along r/α = const, and starting on it saves iterations.
func defaultStarts(d *dataset) []Params {
	var sx, st float64
	for _, rw := range d.rows {
		sx += rw.w * d.xs[rw.x]
		st += rw.w * d.ts[rw.t]
	}
	rate := sx / st // repeat purchases per customer-week
	if !(rate > 0) || math.IsInf(rate, 0) {
		rate = 1
	}
	shapes := []Params{
		{R: 1, A: 1, B: 1},
		{R: 0.3, A: 0.8, B: 3},
		{R: 3, A: 1, B: 20},
		{R: 0.5, A: 3, B: 3},
	}
	for i := range shapes {
		shapes[i].Alpha = shapes[i].R / rate
	}
	return shapes
}

// objective is the mean negative log-likelihood over log-parameters, with a
// one-entry cache because the optimizer asks for the value and the gradient
// at the same point in separate calls.
type objective struct {
	ev    *evaluator
	n     float64
	evals int

	at   []float64
	f    float64
	grad [4]float64
}

func (o *objective) valueGrad(l []float64) (float64, [4]float64) {
	if o.at != nil && slices.Equal(o.at, l) {
		return o.f, o.grad
	}
	o.at = append(o.at[:0], l...)
	o.evals++
	for _, v := range l {
		if !(math.Abs(v) <= logParamLimit) {
			o.f, o.grad = math.Inf(1), [4]float64{}
			return o.f, o.grad
		}
	}
	p := paramsFromLogs(l)
	ll, g := o.ev.eval(p)
	theta := [4]float64{p.R, p.Alpha, p.A, p.B}
	o.f = -ll / o.n
	for i := range g {
		// Chain rule for θ = e^l: ∂/∂l = θ ∂/∂θ.
		o.grad[i] = -g[i] * theta[i] / o.n
	}
	if math.IsNaN(o.f) {
		o.f = math.Inf(1)
	}
	return o.f, o.grad
}

func (o *objective) minimize(x0 []float64, maxIter int) ([]float64, string) {
	prob := optimize.Problem{
		Func: func(x []float64) float64 {
			f, _ := o.valueGrad(x)
			return f
		},
		Grad: func(grad, x []float64) {
			_, g := o.valueGrad(x)
			copy(grad, g[:])
		},
	}
	settings := &optimize.Settings{
		GradientThreshold: gradTolerance,
		Converger:         &optimize.FunctionConverge{Absolute: 1e-15, Iterations: 20},
		MajorIterations:   maxIter,
	}
	result, err := optimize.Minimize(prob, x0, settings, &optimize.BFGS{})
	if result == nil {
		return x0, fmt.Sprintf("Failure: %v", err)
	}
	status := result.Status.String()
	if err != nil {
		// Typically the line search cannot improve any more at the
		// precision of float64; the location is still the best one found.
		status += ": " + err.Error()
	}
	return result.X, status
}

// polish refines the optimizer's answer with Newton steps on the gradient,
// using the Hessian from central differences of the analytic gradient.
// BFGS's line search compares function values, which near the optimum differ
// by less than float64 resolves when the mean log-likelihood is large (dense
// purchase histories) and the problem is ill-conditioned (r and α move
// together); the gradient is still accurate there, so Newton's method on it
// goes the last mile. A step is kept only if it shrinks the gradient. It
// returns the final point, its objective, its Hessian (nil if not positive
// definite) and whether any step was taken.
func (o *objective) polish(l []float64) ([]float64, float64, *mat.SymDense, bool) {
	x := slices.Clone(l)
	f, g := o.valueGrad(x)
	gn := maxAbs(g[:])
	hess := o.hessian(x)
	polished := false
	for range 8 {
		if gn <= gradTolerance/1000 || hess == nil {
			break
		}
		var chol mat.Cholesky
		if !chol.Factorize(hess) {
			break
		}
		step := mat.NewVecDense(4, nil)
		if err := chol.SolveVecTo(step, mat.NewVecDense(4, g[:])); err != nil {
			break
		}
		next := make([]float64, 4)
		for i := range next {
			next[i] = x[i] - step.AtVec(i)
		}
		nf, ng := o.valueGrad(next)
		ngn := maxAbs(ng[:])
		if !(ngn < gn) || math.IsInf(nf, 1) {
			break
		}
		x, f, g, gn, polished = next, nf, ng, ngn, true
		hess = o.hessian(x)
	}
	return x, f, hess, polished
}

// hessian is the Hessian of the mean negative log-likelihood in
// log-parameters, by central differences of the analytic gradient; nil when
// it is not finite.
func (o *objective) hessian(l []float64) *mat.SymDense {
	const h = 1e-5
	var cols [4][4]float64
	x := slices.Clone(l)
	for j := range 4 {
		x[j] = l[j] + h
		_, gp := o.valueGrad(x)
		x[j] = l[j] - h
		_, gm := o.valueGrad(x)
		x[j] = l[j]
		for i := range 4 {
			cols[j][i] = (gp[i] - gm[i]) / (2 * h)
		}
	}
	hess := mat.NewSymDense(4, nil)
	for i := range 4 {
		for j := i; j < 4; j++ {
			v := (cols[i][j] + cols[j][i]) / 2
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil
			}
			hess.SetSym(i, j, v)
		}
	}
	return hess
}

// stdErr inverts the observed information, n times the per-customer Hessian
// in log-parameters; standard errors of θ follow by the delta method,
// SE(θ) = θ SE(ln θ).
func stdErr(p Params, hess *mat.SymDense, n float64) Params {
	if hess == nil {
		return Params{}
	}
	var chol mat.Cholesky
	if !chol.Factorize(hess) {
		return Params{}
	}
	var cov mat.SymDense
	if err := chol.InverseTo(&cov); err != nil {
		return Params{}
	}
	se := func(i int) float64 { return math.Sqrt(cov.At(i, i) / n) }
	return Params{R: p.R * se(0), Alpha: p.Alpha * se(1), A: p.A * se(2), B: p.B * se(3)}
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}
