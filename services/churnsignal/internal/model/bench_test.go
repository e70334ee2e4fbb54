package model

import (
	"fmt"
	"testing"
	"time"
)

// benchParams is a typical e-commerce shape: most customers buy rarely, and
// about one in four drops out after a purchase.
func benchParams() Params { return Params{R: 0.5, Alpha: 5, A: 0.8, B: 2.5} }

// BenchmarkFit measures a tenant's full refit, grouping included, on
// day-resolution histories of customers aged up to two years.
//
//	go test -run '^$' -bench BenchmarkFit -benchtime 3x ./internal/model
func BenchmarkFit(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("customers=%d", n), func(b *testing.B) {
			customers := newSimulator(42, benchParams()).cohort(n, 0, 104, true)
			var res FitResult
			start := time.Now()
			runs := 0
			for b.Loop() {
				var err error
				res, err = Fit(Aggregate(customers), FitOptions{})
				if err != nil {
					b.Fatal(err)
				}
				runs++
			}
			if !res.Converged {
				b.Fatalf("fit did not converge: %s", res.Status)
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(runs), "ms/fit")
			b.ReportMetric(float64(res.Groups), "groups")
			b.ReportMetric(float64(res.Evaluations), "evals")
		})
	}
}

// BenchmarkScore measures full rescoring: P(alive), expected purchases and
// P(no purchase) in the next 52 weeks for 1M customers. "typical" is the
// BenchmarkFit population; "worst case" is a tenant whose customers buy
// several times a week (α = 0.05) and are all less than a week old, so that
// the 52-week horizon dwarfs α+T and expected purchases need the quadrature.
//
//	go test -run '^$' -bench BenchmarkScore -benchtime 3x ./internal/model
func BenchmarkScore(b *testing.B) {
	const n = 1_000_000
	tests := []struct {
		name       string
		p          Params
		tMin, tMax float64
	}{
		{"typical", benchParams(), 0, 104},
		{"worst case", Params{R: 0.5, Alpha: 0.05, A: 0.8, B: 2.5}, 0, 1},
	}
	for i, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			customers := newSimulator(uint64(43+i), tt.p).cohort(n, tt.tMin, tt.tMax, true)
			quad := 0
			for _, s := range customers {
				if _, ok := tt.p.expectedIfAliveSeries(s, 52, maxSeriesTerms); !ok {
					quad++
				}
			}
			var sink float64
			start := time.Now()
			runs := 0
			for b.Loop() {
				for _, s := range customers {
					sc := tt.p.Score(s, 52)
					sink += sc.PNoPurchase + sc.ExpectedPurchases
				}
				runs++
			}
			elapsed := time.Since(start).Seconds() / float64(runs)
			b.ReportMetric(n/elapsed, "customers/s")
			b.ReportMetric(elapsed*1e3, "ms/1M")
			b.ReportMetric(float64(quad)/n*100, "%quadrature")
			if sink == 0 {
				b.Fatal("no scores")
			}
		})
	}
}
