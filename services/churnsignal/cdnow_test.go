package churnsignal_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/retainhq/retain/platform/auth"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// TestCDNOW is the validity test at service level: the CDNOW
// purchases go in as order events through RETAIN_EVENTS, Refit as of the end
// of the calibration period (1997-09-30) must return the published BG/NBD
// estimates, and the scores as of that day must rank the customers who made
// no purchase in the 39-week holdout at least as well as days since the last
// purchase.
func TestCDNOW(t *testing.T) {
	raw, err := os.ReadFile("internal/model/testdata/cdnow_sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		customer string
		at       time.Time
		cents    int64
	}
	var lines []line
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) != 5 {
			continue
		}
		at, err := time.Parse("20060102", string(f[2]))
		if err != nil {
			t.Fatal(err)
		}
		usd, err := strconv.ParseFloat(string(f[4]), 64)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line{customer: "cdnow-" + string(f[1]), at: at, cents: int64(math.Round(usd * 100))})
	}
	if len(lines) != 6919 {
		t.Fatalf("%d CDNOW lines, want 6919", len(lines))
	}

	s := setup(t)
	ctx := context.Background()
	evs := make([]*eventsv1.Event, len(lines))
	for i, l := range lines {
		evs[i] = orderEv(fmt.Sprintf("cdnow-%d", i+1), l.customer, l.at, l.cents)
	}
	start := time.Now()
	s.publish(t, "cdnow", evs...)
	s.caughtUp(t)
	t.Logf("6919 orders published and projected in %s", time.Since(start).Round(time.Millisecond))

	calibrationEnd := time.Date(1997, 9, 30, 23, 59, 59, 999999999, time.UTC)
	start = time.Now()
	refit, err := s.client().Refit(ctx, &churnv1.RefitRequest{AsOf: ts(calibrationEnd)}, s.token(t, "cdnow", auth.ScopeAdmin))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("refit and rescoring of %d customers in %s", refit.GetCustomersRescored(), time.Since(start).Round(time.Millisecond))
	read := s.token(t, "cdnow", auth.ScopeRead)
	got, err := s.client().GetModel(ctx, &churnv1.GetModelRequest{}, read)
	if err != nil {
		t.Fatal(err)
	}
	m := got.GetModel()
	for _, p := range []struct {
		name      string
		got, want float64
	}{{"r", m.GetR(), 0.2426}, {"alpha", m.GetAlpha(), 4.4136}, {"a", m.GetA(), 0.7929}, {"b", m.GetB(), 2.4259}} {
		if rel := math.Abs(p.got-p.want) / p.want; rel > 1e-3 {
			t.Errorf("%s = %.5f, published %.4f (relative error %.2g > 1e-3)", p.name, p.got, p.want, rel)
		}
	}
	if math.Abs(m.GetLogLikelihood()-(-9582.43)) > 0.01 {
		t.Errorf("log-likelihood %.3f, published -9582.43", m.GetLogLikelihood())
	}
	if m.GetCustomers() != 2357 || !m.GetConverged() || !m.GetPinned() {
		t.Errorf("model %v", m)
	}
	t.Logf("r=%.4f alpha=%.4f a=%.4f b=%.4f LL=%.2f", m.GetR(), m.GetAlpha(), m.GetA(), m.GetB(), m.GetLogLikelihood())

	// Backtest: every customer's score as of the calibration end against
	// whether they bought in the holdout (to 1998-06-30).
	holdoutEnd := time.Date(1998, 6, 30, 23, 59, 59, 0, time.UTC)
	bought := map[string]bool{}
	customers := map[string]bool{}
	for _, l := range lines {
		customers[l.customer] = true
		if l.at.After(calibrationEnd) && !l.at.After(holdoutEnd) {
			bought[l.customer] = true
		}
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for c := range customers {
			if !yield(c) {
				return
			}
		}
	})
	scores, recency, churned := make([]float64, len(ids)), make([]float64, len(ids)), make([]bool, len(ids))
	start = time.Now()
	var g errgroup.Group
	g.SetLimit(4)
	for i, id := range ids {
		g.Go(func() error {
			r, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: id, AsOf: ts(calibrationEnd)}, read)
			if err != nil {
				return err
			}
			scores[i] = r.GetRisk().GetExactScore()
			recency[i] = float64(r.GetFeatures().GetDaysSinceLastOrder())
			churned[i] = !bought[id]
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d as-of reads in %s", len(ids), time.Since(start).Round(time.Millisecond))
	aucScore, aucRecency := auc(scores, churned), auc(recency, churned)
	t.Logf("holdout no-purchase AUC: score %.4f, days since last purchase %.4f", aucScore, aucRecency)
	if aucScore < aucRecency {
		t.Errorf("score AUC %.4f below the days-since-last-purchase baseline %.4f", aucScore, aucRecency)
	}
}

// auc is the Mann-Whitney probability that a positive scores above a
// negative, ties counting half.
func auc(scores []float64, positive []bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	var rankSum, nPos, nNeg float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2
		for k := i; k < j; k++ {
			if positive[idx[k]] {
				rankSum += avg
				nPos++
			} else {
				nNeg++
			}
		}
		i = j
	}
	return (rankSum - nPos*(nPos+1)/2) / (nPos * nNeg)
}
