package model

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The paper's published CDNOW estimates (Fader, Hardie & Lee 2005, section 4).
func publishedCDNOW() (Params, float64) {
	return Params{R: 0.2426, Alpha: 4.4136, A: 0.7929, B: 2.4259}, -9582.43
}

// cdnowDay is a calendar date of the CDNOW sample.
func cdnowDay(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

type cdnowCustomer struct {
	id        int
	purchases []time.Time
}

// loadCDNOW parses testdata/cdnow_sample.txt: master id, sample id, date
// YYYYMMDD, CDs, amount, whitespace separated with CRLF line ends.
func loadCDNOW(t testing.TB) []cdnowCustomer {
	t.Helper()
	raw, err := os.ReadFile("testdata/cdnow_sample.txt")
	if err != nil {
		t.Fatalf("read CDNOW sample: %v", err)
	}
	byID := map[int][]time.Time{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	lines := 0
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes()) // also drops the CR of CRLF
		if len(f) == 0 {
			continue
		}
		lines++
		if len(f) != 5 {
			t.Fatalf("CDNOW line %d: %d fields, want 5", lines, len(f))
		}
		id, err := strconv.Atoi(string(f[1]))
		if err != nil {
			t.Fatalf("CDNOW line %d: sample id: %v", lines, err)
		}
		day, err := time.Parse("20060102", string(f[2]))
		if err != nil {
			t.Fatalf("CDNOW line %d: date: %v", lines, err)
		}
		byID[id] = append(byID[id], day)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scan CDNOW sample: %v", err)
	}
	if lines != 6919 || len(byID) != 2357 {
		t.Fatalf("CDNOW sample: %d lines, %d customers; want 6919 and 2357", lines, len(byID))
	}
	out := make([]cdnowCustomer, 0, len(byID))
	for id, ps := range byID {
		out = append(out, cdnowCustomer{id: id, purchases: ps})
	}
	slices.SortFunc(out, func(a, b cdnowCustomer) int { return a.id - b.id })
	return out
}

func cdnowSummaries(t testing.TB, cs []cdnowCustomer, end time.Time) []Summary {
	t.Helper()
	ss := make([]Summary, len(cs))
	for i, c := range cs {
		s, ok := Summarize(c.purchases, end, nil)
		if !ok {
			t.Fatalf("CDNOW customer %d: no purchase by %s", c.id, end.Format(time.DateOnly))
		}
		ss[i] = s
	}
	return ss
}

// TestCDNOWCalibrationConvention pins the time convention that reproduces the
// paper: T runs from the first purchase day to the calendar day 1997-09-30,
// in whole days / 7 (a customer first seen on 1997-01-01 has T = 272/7).
// Ending the period a day later ("end of day 09-30" = 10-01 00:00) or earlier
// shifts the likelihood at the published estimates by tens of units.
func TestCDNOWCalibrationConvention(t *testing.T) {
	cs := loadCDNOW(t)
	pub, pubLL := publishedCDNOW()
	tests := []struct {
		name      string
		end       time.Time
		repeats   int
		reproduce bool
	}{
		{"last calibration day 1997-09-30", cdnowDay(1997, 9, 30), 2457, true},
		{"through 1997-10-01", cdnowDay(1997, 10, 1), 2462, false},
		{"through 1997-09-29", cdnowDay(1997, 9, 29), 2444, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := cdnowSummaries(t, cs, tt.end)
			repeats := 0
			for _, s := range ss {
				repeats += s.X
			}
			if repeats != tt.repeats {
				t.Errorf("Σx = %d, want %d", repeats, tt.repeats)
			}
			ll, err := TotalLogLikelihood(pub, Aggregate(ss))
			if err != nil {
				t.Fatal(err)
			}
			// The published parameters are rounded to 4 decimals, which moves
			// the likelihood by well under 0.01 at the optimum.
			if got := math.Abs(ll-pubLL) < 0.01; got != tt.reproduce {
				t.Errorf("LL at published parameters = %.4f, published %.2f: reproduces = %v, want %v",
					ll, pubLL, got, tt.reproduce)
			}
		})
	}
	first := cdnowSummaries(t, cs[:1], cdnowDay(1997, 9, 30))[0]
	if want := (Summary{X: 2, Tx: 213.0 / 7, T: 272.0 / 7}); first != want {
		t.Errorf("customer 1 = %+v, want %+v (the paper's x=2, t_x=30.43, T=38.86)", first, want)
	}
}

func TestCDNOWFitReproducesPublishedEstimates(t *testing.T) {
	ss := cdnowSummaries(t, loadCDNOW(t), cdnowDay(1997, 9, 30))
	res, err := Fit(Aggregate(ss), FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CDNOW fit: %+v LL %.4f; converged %v (%s, |grad| %.2g, %d/%d starts agree, %d evaluations); SE %+v",
		res.Params, res.LogLikelihood, res.Converged, res.Status, res.GradNorm,
		res.StartsAgreeing, res.Starts, res.Evaluations, res.StdErr)
	pub, pubLL := publishedCDNOW()
	if !res.Converged {
		t.Errorf("fit did not converge: %s", res.Status)
	}
	if res.Customers != 2357 {
		t.Errorf("customers = %d, want 2357", res.Customers)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"r", res.Params.R, pub.R}, {"alpha", res.Params.Alpha, pub.Alpha},
		{"a", res.Params.A, pub.A}, {"b", res.Params.B, pub.B},
	} {
		if rel := math.Abs(c.got/c.want - 1); rel > 1e-3 {
			t.Errorf("%s = %.6f, published %.4f (relative error %.2g > 1e-3)", c.name, c.got, c.want, rel)
		}
	}
	if math.Abs(res.LogLikelihood-pubLL) > 0.01 {
		t.Errorf("LL = %.4f, published %.2f", res.LogLikelihood, pubLL)
	}
}

// TestCDNOWHoldoutRanking scores every customer as of 1997-09-30 and checks
// how well the model ranks the customers who made no purchase in the 39-week
// holdout (1997-10-01..1998-06-30), against the simple baseline "days since
// the last purchase".
//
// Measured (and logged): expected purchases in the holdout rank slightly
// better than recency (AUC 0.7725 vs 0.7714), but P(no purchase in 39 weeks)
// ranks worse (0.7569). Within the one-time buyers P0 orders exactly like
// recency, and within the repeat buyers it beats it (0.720 vs 0.712); pooled,
// it loses because the BG/NBD overstates dropout for repeat buyers (predicted
// P0 exceeds the observed no-purchase rate by 8-20 points for x = 1..5, while
// x = 0 is close), so repeat buyers get too high a P0 next to one-time
// buyers and the pooled ranking interleaves the two groups badly. That is a property of the model on
// these data, not of its arithmetic (TestPredictionsMatchMonteCarlo), so the
// P0 row guards the measured level rather than the baseline.
func TestCDNOWHoldoutRanking(t *testing.T) {
	cs := loadCDNOW(t)
	end := cdnowDay(1997, 9, 30)
	holdoutEnd := cdnowDay(1998, 6, 30)
	const horizon = 39.0 // weeks: 1997-10-01..1998-06-30 is 273 days
	ss := cdnowSummaries(t, cs, end)
	res, err := Fit(Aggregate(ss), FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	churned := make([]bool, len(cs))
	nChurned := 0
	for i, c := range cs {
		churned[i] = !slices.ContainsFunc(c.purchases, func(p time.Time) bool {
			return p.After(end) && !p.After(holdoutEnd)
		})
		if churned[i] {
			nChurned++
		}
	}
	scoreAUC := func(score func(Summary) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = score(s)
		}
		return auc(v, churned)
	}
	baseline := scoreAUC(func(s Summary) float64 { return (s.T - s.Tx) * daysPerWeek })
	t.Logf("CDNOW holdout: %d of %d customers made no purchase; baseline days since last purchase: AUC %.4f",
		nChurned, len(cs), baseline)

	p := res.Params
	tests := []struct {
		name  string
		score func(Summary) float64
		// minAUC is the least acceptable AUC given the baseline.
		minAUC float64
	}{
		{"P(no purchase in 39 weeks)", func(s Summary) float64 { return p.PNoPurchase(s, horizon) }, 0.755},
		{"minus expected purchases in 39 weeks", func(s Summary) float64 { return -p.ExpectedPurchases(s, horizon) }, baseline - 0.005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scoreAUC(tt.score)
			t.Logf("%s: AUC %.4f (baseline %.4f, %+.4f)", tt.name, got, baseline, got-baseline)
			if got < tt.minAUC {
				t.Errorf("AUC %.4f < %.4f", got, tt.minAUC)
			}
		})
	}
}

// auc is the area under the ROC curve of score for the positive class: the
// probability that a random positive outscores a random negative, ties
// counting one half (Mann-Whitney U with mid-ranks).
func auc(score []float64, positive []bool) float64 {
	idx := make([]int, len(score))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		switch {
		case score[i] < score[j]:
			return -1
		case score[i] > score[j]:
			return 1
		}
		return 0
	})
	var rankSum, nPos float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && score[idx[j]] == score[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2 // mean of the 1-based ranks i+1..j
		for _, k := range idx[i:j] {
			if positive[k] {
				rankSum += mid
				nPos++
			}
		}
		i = j
	}
	nNeg := float64(len(score)) - nPos
	return (rankSum - nPos*(nPos+1)/2) / (nPos * nNeg)
}
