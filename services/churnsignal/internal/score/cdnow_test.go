package score

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/retainhq/retain/services/churnsignal/internal/model"
)

// cdnowPurchases reads the model package's copy of the CDNOW sample:
// purchase instants per sample customer id.
func cdnowPurchases(t testing.TB) map[int][]time.Time {
	t.Helper()
	raw, err := os.ReadFile("../model/testdata/cdnow_sample.txt")
	if err != nil {
		t.Fatalf("read CDNOW sample: %v", err)
	}
	out := map[int][]time.Time{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) != 5 {
			continue
		}
		id, err := strconv.Atoi(string(f[1]))
		if err != nil {
			t.Fatal(err)
		}
		d, err := time.Parse("20060102", string(f[2]))
		if err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], d)
	}
	if len(out) != 2357 {
		t.Fatalf("CDNOW: %d customers, want 2357", len(out))
	}
	return out
}

// featuresAsOf builds the order features of a purchase list as of asOf.
func featuresAsOf(ps []time.Time, asOf time.Time) (Features, bool) {
	f := Features{AsOf: asOf}
	daysSeen := map[int64]bool{}
	for _, p := range ps {
		if p.After(asOf) {
			continue
		}
		f.Orders++
		daysSeen[civilDay(p)] = true
		if f.FirstOrder.IsZero() || p.Before(f.FirstOrder) {
			f.FirstOrder = p
		}
		if p.After(f.LastOrder) {
			f.LastOrder = p
		}
	}
	f.PurchaseDays = len(daysSeen)
	return f, f.Orders > 0
}

// auc is the probability that a random positive scores above a random
// negative (ties count half).
func auc(scores []float64, positive []bool) float64 {
	type sp struct {
		s float64
		p bool
	}
	xs := make([]sp, len(scores))
	for i := range scores {
		xs[i] = sp{scores[i], positive[i]}
	}
	slices.SortFunc(xs, func(a, b sp) int {
		switch {
		case a.s < b.s:
			return -1
		case a.s > b.s:
			return 1
		}
		return 0
	})
	// Mann-Whitney U with average ranks for ties.
	var rankSumPos, nPos, nNeg float64
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j].s == xs[i].s {
			j++
		}
		avg := float64(i+j+1) / 2
		for k := i; k < j; k++ {
			if xs[k].p {
				rankSumPos += avg
				nPos++
			} else {
				nNeg++
			}
		}
		i = j
	}
	return (rankSumPos - nPos*(nPos+1)/2) / (nPos * nNeg)
}

// TestCDNOWRanking is the ranking test: as of the end of the
// calibration period (1997-09-30), the score must rank the customers who
// made no purchase in the 39-week holdout at least as well as the best simple
// baseline, days since the last purchase.
func TestCDNOWRanking(t *testing.T) {
	purchases := cdnowPurchases(t)
	asOf := time.Date(1997, 9, 30, 23, 59, 59, 0, time.UTC)
	holdoutEnd := time.Date(1998, 6, 30, 23, 59, 59, 0, time.UTC)

	ids := make([]int, 0, len(purchases))
	for id := range purchases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var (
		feats   []Features
		churned []bool
		sums    []model.Summary
	)
	for _, id := range ids {
		f, ok := featuresAsOf(purchases[id], asOf)
		if !ok {
			t.Fatalf("customer %d: no purchase in calibration", id)
		}
		bought := false
		for _, p := range purchases[id] {
			if p.After(asOf) && !p.After(holdoutEnd) {
				bought = true
			}
		}
		feats = append(feats, f)
		churned = append(churned, !bought)
		s, _ := f.History()
		sums = append(sums, s)
	}
	fit, err := model.Fit(model.Aggregate(sums), model.FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pop := Population{Model: &fit.Params, TypicalGapDays: medianGap(sums), HorizonWeeks: DefaultHorizonWeeks}
	w := DefaultWeights()

	var recency, expected, pNone, score, outlookOnly, overdueOnly []float64
	for _, f := range feats {
		r := Compute(f, pop, w)
		recency = append(recency, float64(r.Derived.DaysSinceLast))
		expected = append(expected, -r.Derived.Prediction.ExpectedPurchases)
		pNone = append(pNone, r.Derived.Prediction.PNoPurchase)
		score = append(score, r.Exact)
		wo := w
		wo.Overdue = 0
		outlookOnly = append(outlookOnly, Compute(f, pop, wo).Exact)
		wr := w
		wr.PurchaseOutlook = 0
		overdueOnly = append(overdueOnly, Compute(f, pop, wr).Exact)
	}
	got := map[string]float64{
		"days since last purchase": auc(recency, churned),
		"-E[purchases in 13 w]":    auc(expected, churned),
		"P(no purchase in 13 w)":   auc(pNone, churned),
		"score: outlook only":      auc(outlookOnly, churned),
		"score: overdue only":      auc(overdueOnly, churned),
		"score (default weights)":  auc(score, churned),
	}
	for _, k := range []string{"days since last purchase", "-E[purchases in 13 w]", "P(no purchase in 13 w)", "score: outlook only", "score: overdue only", "score (default weights)"} {
		t.Logf("AUC %-26s %.4f", k, got[k])
	}
	if got["score (default weights)"] < got["days since last purchase"] {
		t.Errorf("score AUC %.4f is below the days-since-last-purchase baseline %.4f", got["score (default weights)"], got["days since last purchase"])
	}
}

func medianGap(sums []model.Summary) float64 {
	var gaps []float64
	for _, s := range sums {
		if s.X > 0 {
			gaps = append(gaps, s.Tx*7/float64(s.X))
		}
	}
	slices.Sort(gaps)
	if len(gaps) == 0 {
		return 0
	}
	return gaps[len(gaps)/2]
}
