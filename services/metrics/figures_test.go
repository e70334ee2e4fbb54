package metrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// query is one call of the figure set, with a label for failure messages.
type query struct {
	name string
	call func(ctx context.Context, c client) (proto.Message, error)
}

// figure is one answer.
type figure struct {
	name string
	msg  proto.Message
}

// figureQueries is a broad set of calls over [start, end): every month and
// quarter with two windows, repeat purchase, the whole cohort matrix, NPS,
// RFM at two instants and top customers, every page of the lists fetched
// and joined so that page tokens do not enter the comparison.
func figureQueries(start, end time.Time) []query {
	var qs []query
	months := func(step int) []retention.Period {
		var ps []retention.Period
		for from := start; from.Before(end); from = from.AddDate(0, step, 0) {
			ps = append(ps, mustPeriod(from, from.AddDate(0, step, 0)))
		}
		return ps
	}
	for _, p := range months(1) {
		for _, w := range []int32{30, 90} {
			qs = append(qs, query{fmt.Sprintf("retention %s W%d", p.From.Format("2006-01"), w), func(ctx context.Context, c client) (proto.Message, error) {
				return c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: pbPeriod(p), WindowDays: w}, c.creds)
			}})
		}
		qs = append(qs, query{"sales " + p.From.Format("2006-01"), func(ctx context.Context, c client) (proto.Message, error) {
			return c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: pbPeriod(p)}, c.creds)
		}})
	}
	for _, p := range append(months(3), mustPeriod(start, end)) {
		label := p.From.Format("2006-01-02") + ".." + p.To.Format("2006-01-02")
		qs = append(qs,
			query{"retention W365 " + label, func(ctx context.Context, c client) (proto.Message, error) {
				return c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: pbPeriod(p), WindowDays: 365}, c.creds)
			}},
			query{"repeat " + label, func(ctx context.Context, c client) (proto.Message, error) {
				return c.GetRepeatPurchase(ctx, &metricsv1.GetRepeatPurchaseRequest{Period: pbPeriod(p)}, c.creds)
			}},
			query{"nps " + label, func(ctx context.Context, c client) (proto.Message, error) {
				return c.GetNPS(ctx, &metricsv1.GetNPSRequest{Period: pbPeriod(p)}, c.creds)
			}},
		)
		for _, pct := range []float64{20, 1} {
			qs = append(qs, query{fmt.Sprintf("top %v%% %s", pct, label), func(ctx context.Context, c client) (proto.Message, error) {
				return allTop(ctx, c, &metricsv1.GetTopCustomersRequest{Period: pbPeriod(p), Percent: pct, PageSize: 7})
			}})
		}
	}
	qs = append(qs, query{"cohorts", func(ctx context.Context, c client) (proto.Message, error) {
		return c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: start.Format("2006-01"), ToMonth: end.AddDate(0, 0, -1).Format("2006-01")}, c.creds)
	}})
	for _, at := range []time.Time{start.Add(end.Sub(start) / 2), end} {
		qs = append(qs, query{"rfm " + at.Format(time.DateOnly), func(ctx context.Context, c client) (proto.Message, error) {
			return allRFM(ctx, c, &metricsv1.GetRFMRequest{At: timestamppb.New(at), PageSize: 50})
		}})
	}
	return qs
}

// allTop fetches every page and returns the first response holding them all.
func allTop(ctx context.Context, c client, req *metricsv1.GetTopCustomersRequest) (*metricsv1.GetTopCustomersResponse, error) {
	var all *metricsv1.GetTopCustomersResponse
	for {
		resp, err := c.GetTopCustomers(ctx, req, c.creds)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = resp
		} else {
			all.Top = append(all.Top, resp.Top...)
		}
		if resp.NextPageToken == "" {
			all.NextPageToken = ""
			return all, nil
		}
		req = proto.Clone(req).(*metricsv1.GetTopCustomersRequest)
		req.PageToken = resp.NextPageToken
	}
}

func allRFM(ctx context.Context, c client, req *metricsv1.GetRFMRequest) (*metricsv1.GetRFMResponse, error) {
	var all *metricsv1.GetRFMResponse
	for {
		resp, err := c.GetRFM(ctx, req, c.creds)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = resp
		} else {
			all.Scores = append(all.Scores, resp.Scores...)
		}
		if resp.NextPageToken == "" {
			all.NextPageToken = ""
			return all, nil
		}
		req = proto.Clone(req).(*metricsv1.GetRFMRequest)
		req.PageToken = resp.NextPageToken
	}
}

// figures runs every query as the client.
func figures(t *testing.T, c client, qs []query) []figure {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := make([]figure, len(qs))
	for i, q := range qs {
		m, err := q.call(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		out[i] = figure{q.name, m}
	}
	return out
}

// sameFigures fails on the first answer that differs.
func sameFigures(t *testing.T, what string, got, want []figure) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d figures, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if !proto.Equal(got[i].msg, want[i].msg) {
			bad++
			if bad <= 3 {
				t.Errorf("%s: %s differs:\ngot  %s\nwant %s", what, got[i].name, dump(got[i].msg), dump(want[i].msg))
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d figures differ", what, bad, len(got))
	}
}

// reference answers the same queries with the domain's reference
// computations over the facts, laid out as the API lays them out: what
// every figure must be, whatever order the facts arrived in.
func reference(t *testing.T, s *shop, qs []query) []figure {
	t.Helper()
	ref := &refClient{ledger: retention.NewLedger(s.orders, s.refunds), answers: s.answers}
	ref.acts = ref.ledger.Activities()
	return figures(t, client{MetricsServiceClient: ref}, qs)
}
