package metrics_test

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// refClient answers MetricsService calls with the domain's reference
// computations (plain loops over the deduplicated facts, no SQL), in one
// page, in the shop's single currency. The service's answers must equal
// its answers.
type refClient struct {
	ledger  retention.Ledger
	acts    []retention.Activity
	answers []retention.Answer
}

const refCurrency = "EUR"

func refRatio(r retention.Ratio) *metricsv1.Ratio {
	out := &metricsv1.Ratio{Numerator: r.Num, Denominator: r.Den}
	if v, ok := r.Value(); ok {
		p, _ := r.Percent()
		out.Defined, out.Value, out.Percent = true, v, p
	}
	return out
}

func refPeriod(p *metricsv1.Period) retention.Period {
	return mustPeriod(p.GetFrom().AsTime(), p.GetTo().AsTime())
}

func (r *refClient) GetRetention(_ context.Context, in *metricsv1.GetRetentionRequest, _ ...grpc.CallOption) (*metricsv1.GetRetentionResponse, error) {
	p := refPeriod(in.GetPeriod())
	c := retention.CountRetention(r.acts, p, retention.WindowDays(int(in.GetWindowDays())))
	return &metricsv1.GetRetentionResponse{
		Period: pbPeriod(p), WindowDays: in.GetWindowDays(),
		ActiveAtStart: c.Start, ActiveAtEnd: c.End, NewCustomers: c.New,
		Retained: c.Retained, Churned: c.Churned, Reactivated: c.Reactivated, NewActiveAtEnd: c.NewActiveAtEnd,
		RetentionRate: refRatio(c.CRR()), ChurnRate: refRatio(c.ChurnRate()), LostPerAcquired: refRatio(c.LostPerAcquired()),
	}, nil
}

func (r *refClient) GetRepeatPurchase(_ context.Context, in *metricsv1.GetRepeatPurchaseRequest, _ ...grpc.CallOption) (*metricsv1.GetRepeatPurchaseResponse, error) {
	p := refPeriod(in.GetPeriod())
	pb := func(c retention.RepeatCounts) *metricsv1.RepeatPurchase {
		return &metricsv1.RepeatPurchase{Buyers: c.Buyers, RepeatBuyers: c.Repeaters, Rate: refRatio(c.Rate())}
	}
	return &metricsv1.GetRepeatPurchaseResponse{
		Period: pbPeriod(p), InPeriod: pb(retention.CountRepeat(r.acts, p)), Lifetime: pb(retention.CountRepeatLifetime(r.acts, p.To)),
	}, nil
}

func (r *refClient) GetCohorts(_ context.Context, in *metricsv1.GetCohortsRequest, _ ...grpc.CallOption) (*metricsv1.GetCohortsResponse, error) {
	first, last := parseMonth(in.GetFromMonth()), parseMonth(in.GetToMonth())
	table, err := retention.Cohorts(r.ledger.Orders, first, last)
	if err != nil {
		return nil, err
	}
	resp := &metricsv1.GetCohortsResponse{FromMonth: first.String(), ToMonth: last.String(), Currency: refCurrency}
	for _, row := range table.Rows {
		pbRow := &metricsv1.CohortRow{Cohort: row.Cohort.String(), Members: row.Members}
		for k := range row.Active {
			perMember, _ := row.RevenuePerMember(k)
			pbRow.Cells = append(pbRow.Cells, &metricsv1.CohortCell{
				Offset: int32(k), Month: (row.Cohort + retention.Month(k)).String(), Active: row.Active[k],
				Share: refRatio(row.Retention(k)), RevenueMinor: row.NetMinor[k], RevenuePerMemberMinor: perMember,
			})
		}
		resp.Rows = append(resp.Rows, pbRow)
	}
	return resp, nil
}

func parseMonth(s string) retention.Month {
	var y, m int
	for i, c := range s {
		switch {
		case i < 4:
			y = y*10 + int(c-'0')
		case i > 4:
			m = m*10 + int(c-'0')
		}
	}
	return retention.Month(y*12 + m - 1)
}

func (r *refClient) GetNPS(_ context.Context, in *metricsv1.GetNPSRequest, _ ...grpc.CallOption) (*metricsv1.GetNPSResponse, error) {
	p := refPeriod(in.GetPeriod())
	t := retention.TallySurveys(r.answers, p)
	return &metricsv1.GetNPSResponse{
		Period: pbPeriod(p),
		Nps: &metricsv1.NetPromoterScore{
			Promoters: t.NPS.Promoters, Passives: t.NPS.Passives, Detractors: t.NPS.Detractors,
			Answers: t.NPS.Answers(), Score: refRatio(t.NPS.NPS()),
		},
		Csat:           &metricsv1.CustomerSatisfaction{Satisfied: t.CSAT.Satisfied, Answers: t.CSAT.Answers, Score: refRatio(t.CSAT.CSAT())},
		IgnoredAnswers: t.Ignored,
	}, nil
}

func (r *refClient) GetRFM(_ context.Context, in *metricsv1.GetRFMRequest, _ ...grpc.CallOption) (*metricsv1.GetRFMResponse, error) {
	at := in.GetAt().AsTime()
	rfm, err := retention.ScoreRFM(retention.CustomerValuesAsOf(r.ledger.Orders, at), at)
	if err != nil {
		return nil, err
	}
	resp := &metricsv1.GetRFMResponse{At: timestamppb.New(at), Currency: refCurrency, Customers: int64(len(rfm.Customers))}
	for _, s := range rfm.Segments {
		resp.Segments = append(resp.Segments, &metricsv1.RFMSegmentSize{
			Segment: metricsv1.RFMSegment(s.Segment), Name: s.Segment.String(), Customers: s.Customers, RevenueMinor: s.NetMinor,
		})
	}
	for _, c := range rfm.Customers {
		resp.Scores = append(resp.Scores, &metricsv1.RFMCustomerScore{
			CustomerId: string(c.Customer), LastOrderAt: timestamppb.New(at.Add(-c.Recency)),
			RecencyDays: int64(c.Recency / retention.Day), Frequency: c.Frequency, MonetaryMinor: c.MonetaryMinor,
			RecencyScore: int32(c.R), FrequencyScore: int32(c.F), MonetaryScore: int32(c.M),
			Segment: metricsv1.RFMSegment(c.Segment),
		})
	}
	return resp, nil
}

func (r *refClient) GetTopCustomers(_ context.Context, in *metricsv1.GetTopCustomersRequest, _ ...grpc.CallOption) (*metricsv1.GetTopCustomersResponse, error) {
	p := refPeriod(in.GetPeriod())
	ranked := retention.RevenueByCustomer(r.ledger.Orders, p)
	top, err := retention.Top(ranked, in.GetPercent())
	if err != nil {
		return nil, err
	}
	resp := &metricsv1.GetTopCustomersResponse{
		Period: pbPeriod(p), Percent: in.GetPercent(), Currency: refCurrency,
		TopCustomers: top.Customers, Customers: top.Of, TopRevenueMinor: top.TopNetMinor, RevenueMinor: top.AllNetMinor,
		RevenueShare: refRatio(top.RevenueShare()),
	}
	for i, c := range ranked[:top.Customers] {
		resp.Top = append(resp.Top, &metricsv1.RankedCustomer{Rank: int64(i + 1), CustomerId: string(c.Customer), RevenueMinor: c.NetMinor, Orders: c.Orders})
	}
	return resp, nil
}

func (r *refClient) GetSales(_ context.Context, in *metricsv1.GetSalesRequest, _ ...grpc.CallOption) (*metricsv1.GetSalesResponse, error) {
	p := refPeriod(in.GetPeriod())
	s := retention.SumSales(r.ledger.Orders, p)
	aov, _ := s.AOV()
	return &metricsv1.GetSalesResponse{
		Period: pbPeriod(p), Currency: refCurrency, Orders: s.Orders, Customers: s.Customers,
		GrossRevenueMinor: s.GrossMinor, RefundedMinor: s.RefundedMinor, NetRevenueMinor: s.NetMinor,
		AverageOrderValueMinor: aov, OrdersPerCustomer: refRatio(s.OrdersPerCustomer()),
	}, nil
}

func (r *refClient) Rebuild(context.Context, *metricsv1.RebuildRequest, ...grpc.CallOption) (*metricsv1.RebuildResponse, error) {
	return nil, errors.New("the reference has nothing to rebuild")
}

func (r *refClient) GetRebuild(context.Context, *metricsv1.GetRebuildRequest, ...grpc.CallOption) (*metricsv1.GetRebuildResponse, error) {
	return nil, errors.New("the reference has nothing to rebuild")
}
