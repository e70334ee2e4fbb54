package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestFitRecoversSimulatedParameters fits customers simulated from known
// parameters and expects the truth back within sampling error: 4 asymptotic
// standard errors, and 20% relative.
func TestFitRecoversSimulatedParameters(t *testing.T) {
	tests := []struct {
		name       string
		truth      Params
		customers  int
		tMin, tMax float64 // weeks observed
	}{
		{"CDNOW-like", Params{R: 0.25, Alpha: 4, A: 0.8, B: 2.5}, 40000, 26, 52},
		{"regulars, few dropouts", Params{R: 2, Alpha: 10, A: 2, B: 8}, 20000, 20, 78},
		// Mean 16 purchases a week and about 60 purchases before dropping
		// out: x runs into the hundreds, where (α+T)^(r+x) overflows.
		{"frequent buyers", Params{R: 8, Alpha: 0.5, A: 1, B: 60}, 20000, 13, 39},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			customers := newSimulator(uint64(100+i), tt.truth).cohort(tt.customers, tt.tMin, tt.tMax, false)
			maxX := 0
			for _, s := range customers {
				maxX = max(maxX, s.X)
			}
			res, err := Fit(Aggregate(customers), FitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("max x %d; fit %+v (truth %+v); SE %+v; LL %.2f; %s, |grad| %.2g, %d/%d starts agree",
				maxX, res.Params, tt.truth, res.StdErr, res.LogLikelihood, res.Status, res.GradNorm, res.StartsAgreeing, res.Starts)
			if !res.Converged {
				t.Errorf("not converged: %s, |grad| %g", res.Status, res.GradNorm)
			}
			for _, c := range []struct {
				name             string
				got, se, truthly float64
			}{
				{"r", res.Params.R, res.StdErr.R, tt.truth.R},
				{"alpha", res.Params.Alpha, res.StdErr.Alpha, tt.truth.Alpha},
				{"a", res.Params.A, res.StdErr.A, tt.truth.A},
				{"b", res.Params.B, res.StdErr.B, tt.truth.B},
			} {
				if !(c.se > 0) {
					t.Errorf("%s: no standard error", c.name)
				}
				if dev := math.Abs(c.got - c.truthly); dev > 4*c.se || dev > 0.2*c.truthly {
					t.Errorf("%s = %.4f ± %.4f, truth %.4f", c.name, c.got, c.se, c.truthly)
				}
			}
		})
	}
}

// TestFitOnDegenerateData fits populations at the edges of the model: nobody
// drops out (b/a -> ∞, the MLE is on the boundary) and everybody drops out
// almost at once. The purchase rates must still come back and nothing may
// turn into NaN; the boundary case is reported, not hidden.
func TestFitOnDegenerateData(t *testing.T) {
	tests := []struct {
		name  string
		truth Params
	}{
		{"nobody drops out", Params{R: 1, Alpha: 2, A: 0.01, B: 1000}},
		{"everybody drops out", Params{R: 1, Alpha: 2, A: 50, B: 0.5}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Fit(Aggregate(newSimulator(uint64(5+i), tt.truth).cohort(20000, 10, 50, false)), FitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("fit %+v; converged %v (%s, |grad| %.2g); SE %+v", res.Params, res.Converged, res.Status, res.GradNorm, res.StdErr)
			if math.IsNaN(res.LogLikelihood) || math.IsInf(res.LogLikelihood, 0) {
				t.Errorf("LL = %v", res.LogLikelihood)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"r", res.Params.R, tt.truth.R}, {"alpha", res.Params.Alpha, tt.truth.Alpha}} {
				if math.Abs(c.got/c.want-1) > 0.1 {
					t.Errorf("%s = %.4f, truth %.4f", c.name, c.got, c.want)
				}
			}
			meanDrop := res.Params.A / (res.Params.A + res.Params.B)
			wantDrop := tt.truth.A / (tt.truth.A + tt.truth.B)
			if math.Abs(meanDrop-wantDrop) > 0.02 {
				t.Errorf("mean dropout probability %.4f, truth %.4f", meanDrop, wantDrop)
			}
		})
	}
}

func TestFitIsIndependentOfInputOrder(t *testing.T) {
	customers := newSimulator(7, Params{R: 0.5, Alpha: 3, A: 1, B: 3}).cohort(5000, 10, 40, true)
	first, err := Fit(Aggregate(customers), FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(customers), func(i, j int) {
		customers[i], customers[j] = customers[j], customers[i]
	})
	second, err := Fit(Aggregate(customers), FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if first.Params != second.Params || first.LogLikelihood != second.LogLikelihood {
		t.Errorf("shuffled input changed the fit: %+v vs %+v", first.Params, second.Params)
	}
}

func TestFitRejectsUnusableInput(t *testing.T) {
	ok := []Group{{Summary{X: 1, Tx: 1, T: 2}, 3}, {Summary{X: 0, T: 2}, 1}}
	tests := []struct {
		name   string
		groups []Group
		opts   FitOptions
		want   string
	}{
		{"no customers", nil, FitOptions{}, "no customers"},
		{"only empty groups", []Group{{Summary{T: 1}, 0}}, FitOptions{}, "no customers"},
		{"no repeat purchases", []Group{{Summary{T: 5}, 10}}, FitOptions{}, "no repeat purchases"},
		{"negative count", []Group{{Summary{T: 5}, -1}}, FitOptions{}, "negative count"},
		{"impossible history", []Group{{Summary{X: 1, Tx: 5, T: 2}, 1}}, FitOptions{}, "t_x <= T"},
		{"bad start", ok, FitOptions{Starts: []Params{{R: 1, Alpha: 0, A: 1, B: 1}}}, "alpha"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Fit(tt.groups, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Fit error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
