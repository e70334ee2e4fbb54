package model

import (
	"math"
	"testing"
)

func logBeta(a, b float64) float64 { return lgamma(a) + lgamma(b) - lgamma(a+b) }

// paperLikelihood is eq. 6 of the paper evaluated literally, as a spreadsheet
// would: fine for small x, overflowing for frequent buyers.
func paperLikelihood(p Params, s Summary) float64 {
	x := float64(s.X)
	common := math.Gamma(p.R+x) * math.Pow(p.Alpha, p.R) / math.Gamma(p.R)
	l := math.Exp(logBeta(p.A, p.B+x)-logBeta(p.A, p.B)) * common / math.Pow(p.Alpha+s.T, p.R+x)
	if s.X > 0 {
		l += math.Exp(logBeta(p.A+1, p.B+x-1)-logBeta(p.A, p.B)) * common / math.Pow(p.Alpha+s.Tx, p.R+x)
	}
	return l
}

// logSumExpLikelihood arranges the same likelihood differently from
// LogLikelihood: both terms in logs, combined by log-sum-exp, without the
// B(a+1,b+x-1)/B(a,b+x) = a/(b+x-1) identity.
func logSumExpLikelihood(p Params, s Summary) float64 {
	x := float64(s.X)
	common := lgamma(p.R+x) - lgamma(p.R) + p.R*math.Log(p.Alpha)
	l1 := logBeta(p.A, p.B+x) - logBeta(p.A, p.B) + common - (p.R+x)*math.Log(p.Alpha+s.T)
	if s.X == 0 {
		return l1
	}
	l2 := logBeta(p.A+1, p.B+x-1) - logBeta(p.A, p.B) + common - (p.R+x)*math.Log(p.Alpha+s.Tx)
	m := max(l1, l2)
	return m + math.Log(math.Exp(l1-m)+math.Exp(l2-m))
}

func TestLogLikelihood(t *testing.T) {
	cdnow, _ := publishedCDNOW()
	frequent := Params{R: 8, Alpha: 0.5, A: 1, B: 60}
	tests := []struct {
		name     string
		p        Params
		s        Summary
		overflow bool // the literal formula cannot be evaluated
	}{
		{"one-time buyer", cdnow, Summary{X: 0, T: 38.86}, false},
		{"CDNOW customer 1", cdnow, Summary{X: 2, Tx: 30.43, T: 38.86}, false},
		{"lapsed", cdnow, Summary{X: 5, Tx: 3, T: 38}, false},
		{"new today", cdnow, Summary{X: 0, T: 0}, false},
		{"b < 1", Params{R: 1, Alpha: 2, A: 0.3, B: 0.4}, Summary{X: 1, Tx: 0.5, T: 9}, false},
		{"frequent, x = 300", frequent, Summary{X: 300, Tx: 38.9, T: 39}, true},
		{"frequent, x = 300, lapsed", frequent, Summary{X: 300, Tx: 12, T: 39}, true},
		{"x = 20000", frequent, Summary{X: 20000, Tx: 300, T: 300}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LogLikelihood(tt.p, tt.s)
			if math.IsNaN(got) || math.IsInf(got, 0) {
				t.Fatalf("LogLikelihood = %v", got)
			}
			ref := logSumExpLikelihood(tt.p, tt.s)
			if d := math.Abs(got - ref); d > 1e-11*max(1, math.Abs(ref)) {
				t.Errorf("LogLikelihood = %.15g, log-sum-exp arrangement %.15g", got, ref)
			}
			naive := math.Log(paperLikelihood(tt.p, tt.s))
			finite := !math.IsNaN(naive) && !math.IsInf(naive, 0)
			if finite == tt.overflow {
				t.Errorf("literal formula gives %v; overflow expected: %v", naive, tt.overflow)
			}
			if finite && math.Abs(naive-got) > 1e-10*max(1, math.Abs(got)) {
				t.Errorf("LogLikelihood = %.15g, literal formula %.15g", got, naive)
			}
		})
	}
}

// TestTotalLogLikelihood checks the grouped, tabulated and chunked evaluation
// (and its analytic gradient) against per-customer sums and finite
// differences, on enough groups to run the parallel path.
func TestTotalLogLikelihood(t *testing.T) {
	truth := Params{R: 0.7, Alpha: 3, A: 0.9, B: 4}
	groups := Aggregate(newSimulator(11, truth).cohort(60000, 1, 52, false))
	if len(groups) <= 2*rowsPerChunk {
		t.Fatalf("only %d groups: the parallel path is not exercised", len(groups))
	}
	d, err := newDataset(groups)
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvaluator(d)
	at := Params{R: 0.5, Alpha: 2.5, A: 1.2, B: 3}
	ll, grad := ev.eval(at)

	want := 0.0
	for _, g := range groups {
		want += float64(g.Count) * LogLikelihood(at, g.Summary)
	}
	if math.Abs(ll-want) > 1e-9*math.Abs(want) {
		t.Errorf("grouped LL = %.10f, sum over customers %.10f", ll, want)
	}

	params := func(i int, v float64) Params {
		q := [4]float64{at.R, at.Alpha, at.A, at.B}
		q[i] = v
		return Params{R: q[0], Alpha: q[1], A: q[2], B: q[3]}
	}
	for i, name := range []string{"r", "alpha", "a", "b"} {
		theta := [4]float64{at.R, at.Alpha, at.A, at.B}[i]
		h := 1e-5 * theta
		up, _ := ev.eval(params(i, theta+h))
		down, _ := ev.eval(params(i, theta-h))
		fd := (up - down) / (2 * h)
		if math.Abs(grad[i]-fd) > 1e-5*max(1, math.Abs(fd)) {
			t.Errorf("∂LL/∂%s = %.8g, finite difference %.8g", name, grad[i], fd)
		}
	}
}
