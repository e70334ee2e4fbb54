// Package api is the metrics service's gRPC edge: it validates requests with
// the domain's rules, scopes every query to the caller token's tenant, asks
// the store for counts, lets the domain derive the figures, and maps errors
// to status codes. Nothing below it knows about gRPC.
package api

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/currency"
	"github.com/retainhq/retain/platform/server"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/metrics/internal/consumer"
	"github.com/retainhq/retain/services/metrics/internal/retention"
	"github.com/retainhq/retain/services/metrics/internal/store"
	"github.com/retainhq/retain/services/metrics/rfm"
)

// MethodScopes is the scope each MetricsService method requires.
var MethodScopes = map[string]string{
	metricsv1.MetricsService_GetRetention_FullMethodName:      auth.ScopeRead,
	metricsv1.MetricsService_GetRepeatPurchase_FullMethodName: auth.ScopeRead,
	metricsv1.MetricsService_GetCohorts_FullMethodName:        auth.ScopeRead,
	metricsv1.MetricsService_GetNPS_FullMethodName:            auth.ScopeRead,
	metricsv1.MetricsService_GetRFM_FullMethodName:            auth.ScopeRead,
	metricsv1.MetricsService_GetTopCustomers_FullMethodName:   auth.ScopeRead,
	metricsv1.MetricsService_GetSales_FullMethodName:          auth.ScopeRead,
	metricsv1.MetricsService_Rebuild_FullMethodName:           auth.ScopeAdmin,
	// Admin as Rebuild: the answer names the service's database sessions
	// (pid, client address) and its raw errors, which are the operator's,
	// not a read token's; queries already tell a reader that the figures
	// are being rebuilt, and since when.
	metricsv1.MetricsService_GetRebuild_FullMethodName: auth.ScopeAdmin,
}

// Paging and defaults of the list calls.
const (
	DefaultPageSize   = 100
	MaxPageSize       = 1000
	DefaultTopPercent = 20
)

// GRPC implements retain.metrics.v1.MetricsService.
type GRPC struct {
	metricsv1.UnimplementedMetricsServiceServer
	store     *store.Store
	rebuilder *consumer.Rebuilder
	now       func() time.Time
}

// NewGRPC returns the gRPC edge, measuring up to now (nil: time.Now).
func NewGRPC(s *store.Store, r *consumer.Rebuilder, now func() time.Time) *GRPC {
	if now == nil {
		now = time.Now
	}
	return &GRPC{store: s, rebuilder: r, now: now}
}

// GetRetention answers CRR, churn and reactivation of a period.
func (g *GRPC) GetRetention(ctx context.Context, req *metricsv1.GetRetentionRequest) (*metricsv1.GetRetentionResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	p, err := g.period(req.GetPeriod())
	if err != nil {
		return nil, err
	}
	w, days, err := window(req.GetWindowDays())
	if err != nil {
		return nil, err
	}
	var c retention.RetentionCounts
	if err := g.whole(ctx, tenant, "GetRetention", func() (err error) {
		c, err = g.store.Retention(ctx, tenant, p, w)
		return err
	}); err != nil {
		return nil, err
	}
	return &metricsv1.GetRetentionResponse{
		Period:          periodPB(p),
		WindowDays:      days,
		ActiveAtStart:   c.Start,
		ActiveAtEnd:     c.End,
		NewCustomers:    c.New,
		Retained:        c.Retained,
		Churned:         c.Churned,
		Reactivated:     c.Reactivated,
		NewActiveAtEnd:  c.NewActiveAtEnd,
		RetentionRate:   ratio(c.CRR()),
		ChurnRate:       ratio(c.ChurnRate()),
		LostPerAcquired: ratio(c.LostPerAcquired()),
	}, nil
}

// GetRepeatPurchase answers the repeat purchase rate in a period and over
// the lifetime up to its end.
func (g *GRPC) GetRepeatPurchase(ctx context.Context, req *metricsv1.GetRepeatPurchaseRequest) (*metricsv1.GetRepeatPurchaseResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	p, err := g.period(req.GetPeriod())
	if err != nil {
		return nil, err
	}
	var in, life retention.RepeatCounts
	if err := g.whole(ctx, tenant, "GetRepeatPurchase", func() (err error) {
		in, life, err = g.store.Repeat(ctx, tenant, p)
		return err
	}); err != nil {
		return nil, err
	}
	return &metricsv1.GetRepeatPurchaseResponse{Period: periodPB(p), InPeriod: repeatPB(in), Lifetime: repeatPB(life)}, nil
}

func repeatPB(c retention.RepeatCounts) *metricsv1.RepeatPurchase {
	return &metricsv1.RepeatPurchase{Buyers: c.Buyers, RepeatBuyers: c.Repeaters, Rate: ratio(c.Rate())}
}

// GetCohorts answers the cohort matrix of the cohorts from_month..to_month.
func (g *GRPC) GetCohorts(ctx context.Context, req *metricsv1.GetCohortsRequest) (*metricsv1.GetCohortsResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	first, err := month("from_month", req.GetFromMonth())
	if err != nil {
		return nil, err
	}
	last, err := month("to_month", req.GetToMonth())
	if err != nil {
		return nil, err
	}
	// The cohorts are measured up to now, as periods are: ingest accepts
	// orders dated up to a day ahead, and those are not members or buyers
	// yet.
	now := g.now().UTC().Truncate(store.Precision)
	first, last, err = retention.CohortRangeSoFar(first, last, now)
	if err != nil {
		return nil, invalid("from_month", err.Error())
	}
	if err := retention.ValidateCohortRange(first, last); err != nil {
		return nil, invalid("to_month", err.Error())
	}
	if err := checkCurrency(req.GetCurrency()); err != nil {
		return nil, err
	}
	var (
		currency string
		cells    []retention.CohortCell
	)
	if err := g.whole(ctx, tenant, "GetCohorts", func() (err error) {
		cells, currency, err = g.store.CohortCells(ctx, tenant, first, last, now, req.GetCurrency())
		return currencyError(err)
	}); err != nil {
		return nil, err
	}
	table, err := retention.AssembleCohorts(first, last, cells)
	if err != nil {
		return nil, g.internal(ctx, "GetCohorts", err)
	}
	resp := &metricsv1.GetCohortsResponse{FromMonth: first.String(), ToMonth: last.String(), Currency: currency}
	for _, row := range table.Rows {
		r := &metricsv1.CohortRow{Cohort: row.Cohort.String(), Members: row.Members}
		for k := range row.Active {
			perMember, _ := row.RevenuePerMember(k)
			r.Cells = append(r.Cells, &metricsv1.CohortCell{
				Offset:                int32(k),
				Month:                 (row.Cohort + retention.Month(k)).String(),
				Active:                row.Active[k],
				Share:                 ratio(row.Retention(k)),
				RevenueMinor:          row.NetMinor[k],
				RevenuePerMemberMinor: perMember,
			})
		}
		resp.Rows = append(resp.Rows, r)
	}
	return resp, nil
}

// GetNPS answers NPS and CSAT of the answers given in a period.
func (g *GRPC) GetNPS(ctx context.Context, req *metricsv1.GetNPSRequest) (*metricsv1.GetNPSResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	p, err := g.period(req.GetPeriod())
	if err != nil {
		return nil, err
	}
	var t retention.SurveyTally
	if err := g.whole(ctx, tenant, "GetNPS", func() (err error) {
		t, err = g.store.Surveys(ctx, tenant, p)
		return err
	}); err != nil {
		return nil, err
	}
	return &metricsv1.GetNPSResponse{
		Period: periodPB(p),
		Nps: &metricsv1.NetPromoterScore{
			Promoters: t.NPS.Promoters, Passives: t.NPS.Passives, Detractors: t.NPS.Detractors,
			Answers: t.NPS.Answers(), Score: ratio(t.NPS.NPS()),
		},
		Csat:           &metricsv1.CustomerSatisfaction{Satisfied: t.CSAT.Satisfied, Answers: t.CSAT.Answers, Score: ratio(t.CSAT.CSAT())},
		IgnoredAnswers: t.Ignored,
	}, nil
}

// rfmCursor is a GetRFM page token's position: the instant scored and
// the last customer listed.
type rfmCursor struct {
	At       time.Time `json:"at"`
	Customer string    `json:"c"`
}

// GetRFM scores every customer as of an instant and returns the segment
// sizes and one page of scores, by customer id.
func (g *GRPC) GetRFM(ctx context.Context, req *metricsv1.GetRFMRequest) (*metricsv1.GetRFMResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	now := g.now().UTC()
	at := now.Truncate(store.Precision)
	if req.GetAt() != nil {
		if err := req.GetAt().CheckValid(); err != nil {
			return nil, invalid("at", err.Error())
		}
		at = req.GetAt().AsTime().UTC()
		// Unlike a period's end, an instant is not cut at now: scores "as
		// of" a future instant would age every customer's recency by time
		// that has not passed, so the caller's mistake is named instead.
		if at.After(now) {
			return nil, invalid("at", fmt.Sprintf("%s is in the future (now %s): RFM scores the orders known up to now; leave at unset for now",
				at.Format(time.RFC3339Nano), now.Format(time.RFC3339)))
		}
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var after rfmCursor
	ok, v := server.PageCursor(req, &after)
	if v != nil {
		return nil, server.InvalidArgument(*v)
	}
	// The pages of a listing "as of now" are scored as of the first
	// page's instant: one ranking, whenever the next page is asked for.
	if ok && req.GetAt() == nil {
		if at = after.At; at.IsZero() || at.After(now.Add(pageClockSkew)) {
			return nil, server.InvalidArgument(server.MalformedPageToken("bad instant"))
		}
	}
	if err := checkCurrency(req.GetCurrency()); err != nil {
		return nil, err
	}
	var (
		currency string
		values   []retention.CustomerValue
	)
	if err := g.whole(ctx, tenant, "GetRFM", func() (err error) {
		values, currency, err = g.store.CustomerValues(ctx, tenant, at, req.GetCurrency())
		return currencyError(err)
	}); err != nil {
		return nil, err
	}
	scores, err := retention.ScoreRFM(values, at)
	if err != nil {
		return nil, g.internal(ctx, "GetRFM", err)
	}
	resp := &metricsv1.GetRFMResponse{At: timestamppb.New(at), Currency: currency, Customers: int64(len(scores.Customers))}
	for _, s := range scores.Segments {
		resp.Segments = append(resp.Segments, &metricsv1.RFMSegmentSize{
			Segment: segmentPB(s.Segment), Name: s.Segment.String(), Customers: s.Customers, RevenueMinor: s.NetMinor,
		})
	}
	// Scores are sorted by customer id: the page starts after the token's id.
	start := 0
	if ok {
		for start < len(scores.Customers) && string(scores.Customers[start].Customer) <= after.Customer {
			start++
		}
	}
	end := min(start+size, len(scores.Customers))
	for _, c := range scores.Customers[start:end] {
		resp.Scores = append(resp.Scores, &metricsv1.RFMCustomerScore{
			CustomerId:     string(c.Customer),
			LastOrderAt:    timestamppb.New(at.Add(-c.Recency)),
			RecencyDays:    int64(c.Recency / retention.Day),
			Frequency:      c.Frequency,
			MonetaryMinor:  c.MonetaryMinor,
			RecencyScore:   int32(c.R),
			FrequencyScore: int32(c.F),
			MonetaryScore:  int32(c.M),
			Segment:        segmentPB(c.Segment),
		})
	}
	if end < len(scores.Customers) {
		if resp.NextPageToken, err = server.NextPageToken(req, rfmCursor{At: at, Customer: string(scores.Customers[end-1].Customer)}); err != nil {
			return nil, g.internal(ctx, "GetRFM", err)
		}
	}
	return resp, nil
}

// segmentPB maps the segments onto the enum; both list them in the same
// order from 1 (rfm's TestSegmentsAreTheProtoEnum).
func segmentPB(s rfm.Segment) metricsv1.RFMSegment {
	if s < rfm.SegmentChampions || s > rfm.SegmentLost {
		return metricsv1.RFMSegment_RFM_SEGMENT_UNSPECIFIED
	}
	return metricsv1.RFMSegment(s)
}

// topCursor is a top customers page token's position: the domain's keyset
// cursor. Not the rank: that is counted in the ranking, so a token cannot
// make a customer's rank up.
type topCursor struct {
	NetMinor int64  `json:"n"`
	Customer string `json:"c"`
	// To is the end the first page measured to: a period that ends after
	// now is cut at each page's now, and the pages of one listing are of
	// one ranking.
	To time.Time `json:"to"`
}

// pageClockSkew is how far ahead of this replica's clock a page token's
// instant may be: the replica that answered the first page may run a
// little ahead.
const pageClockSkew = 5 * time.Second

// GetTopCustomers answers the top percent of customers by revenue in a
// period, their share of revenue and one page of them.
func (g *GRPC) GetTopCustomers(ctx context.Context, req *metricsv1.GetTopCustomersRequest) (*metricsv1.GetTopCustomersResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	p, err := g.period(req.GetPeriod())
	if err != nil {
		return nil, err
	}
	percent := req.GetPercent()
	if percent == 0 {
		percent = DefaultTopPercent
	}
	if _, err := retention.Top(nil, percent); err != nil {
		return nil, invalid("percent", err.Error())
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var after topCursor
	ok, v := server.PageCursor(req, &after)
	if v != nil {
		return nil, server.InvalidArgument(*v)
	}
	if ok {
		if !after.To.After(p.From) || after.To.After(req.GetPeriod().GetTo().AsTime()) || after.To.After(p.To.Add(pageClockSkew)) {
			return nil, server.InvalidArgument(server.MalformedPageToken("bad period end"))
		}
		p.To = after.To
	}
	if err := checkCurrency(req.GetCurrency()); err != nil {
		return nil, err
	}
	var (
		currency string
		ranked   []retention.CustomerRevenue
	)
	if err := g.whole(ctx, tenant, "GetTopCustomers", func() (err error) {
		ranked, currency, err = g.store.RevenueByCustomer(ctx, tenant, p, req.GetCurrency())
		return currencyError(err)
	}); err != nil {
		return nil, err
	}
	top, err := retention.Top(ranked, percent)
	if err != nil {
		return nil, g.internal(ctx, "GetTopCustomers", err)
	}
	resp := &metricsv1.GetTopCustomersResponse{
		Period: periodPB(p), Percent: percent, Currency: currency,
		TopCustomers: top.Customers, Customers: top.Of,
		TopRevenueMinor: top.TopNetMinor, RevenueMinor: top.AllNetMinor,
		RevenueShare: ratio(top.RevenueShare()),
	}
	group := ranked[:top.Customers]
	var cursor *retention.RankCursor
	if ok {
		cursor = &retention.RankCursor{NetMinor: after.NetMinor, Customer: retention.CustomerID(after.Customer)}
	}
	rank := int64(retention.RankAfter(group, cursor))
	page, next := retention.PageAfter(group, cursor, size)
	for _, c := range page {
		rank++
		resp.Top = append(resp.Top, &metricsv1.RankedCustomer{Rank: rank, CustomerId: string(c.Customer), RevenueMinor: c.NetMinor, Orders: c.Orders})
	}
	if next != nil {
		if resp.NextPageToken, err = server.NextPageToken(req, topCursor{NetMinor: next.NetMinor, Customer: string(next.Customer), To: p.To}); err != nil {
			return nil, g.internal(ctx, "GetTopCustomers", err)
		}
	}
	return resp, nil
}

// GetSales answers orders, customers, revenue and averages of a period.
func (g *GRPC) GetSales(ctx context.Context, req *metricsv1.GetSalesRequest) (*metricsv1.GetSalesResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	p, err := g.period(req.GetPeriod())
	if err != nil {
		return nil, err
	}
	if err := checkCurrency(req.GetCurrency()); err != nil {
		return nil, err
	}
	var (
		currency string
		s        retention.Sales
	)
	if err := g.whole(ctx, tenant, "GetSales", func() (err error) {
		s, currency, err = g.store.Sales(ctx, tenant, p, req.GetCurrency())
		return currencyError(err)
	}); err != nil {
		return nil, err
	}
	aov, _ := s.AOV()
	return &metricsv1.GetSalesResponse{
		Period: periodPB(p), Currency: currency,
		Orders: s.Orders, Customers: s.Customers,
		GrossRevenueMinor: s.GrossMinor, RefundedMinor: s.RefundedMinor, NetRevenueMinor: s.NetMinor,
		AverageOrderValueMinor: aov,
		OrdersPerCustomer:      ratio(s.OrdersPerCustomer()),
	}, nil
}

// Rebuild drops the caller tenant's projections and replays its facts, or
// joins the rebuild of the tenant this process runs, and answers when it
// is done (detached: once it has reset the tenant). The rebuild is the
// service's, not the call's: a caller that goes away (or whose deadline
// passes) leaves it running to the end.
func (g *GRPC) Rebuild(ctx context.Context, req *metricsv1.RebuildRequest) (*metricsv1.RebuildResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var res consumer.RebuildResult
	if req.GetDetach() {
		err = g.rebuilder.Start(ctx, tenant)
	} else {
		res, err = g.rebuilder.Rebuild(ctx, tenant)
	}
	switch {
	case ctx.Err() != nil:
		return nil, status.Error(status.FromContextError(ctx.Err()).Code(),
			"stopped waiting for the rebuild, which goes on in the service: queries say so until it is done")
	case errors.Is(err, consumer.ErrRebuildElsewhere):
		return nil, status.Error(codes.Aborted, err.Error()+"; queries say so until it is done")
	case errors.Is(err, consumer.ErrRebuilderStopped):
		return nil, status.Error(codes.Unavailable, err.Error()+"; ask again")
	case err != nil:
		return nil, g.internal(ctx, "Rebuild", err)
	case req.GetDetach():
		st, err := g.store.RebuildStatus(ctx, tenant)
		if err != nil {
			return nil, g.internal(ctx, "Rebuild", err)
		}
		resp := &metricsv1.RebuildResponse{
			EventsReplayed: st.Progress.Replayed, EventsApplied: st.Progress.Applied, EventsRejected: st.Progress.Rejected,
			StartedAt: optionalTime(st.AttemptStartedAt),
		}
		if !st.Rebuilding() {
			resp.FinishedAt = optionalTime(st.FinishedAt)
		}
		return resp, nil
	}
	return &metricsv1.RebuildResponse{
		EventsReplayed: res.Replayed, EventsApplied: res.Applied, EventsRejected: res.Rejected,
		StartedAt: timestamppb.New(res.StartedAt), FinishedAt: timestamppb.New(res.StartedAt.Add(res.Duration)),
	}, nil
}

// GetRebuild says where the caller tenant's rebuild stands, from what the
// database knows (tenant_rebuilds and the holder of the tenant's rebuild
// lock), so that any replica answers alike.
func (g *GRPC) GetRebuild(ctx context.Context, _ *metricsv1.GetRebuildRequest) (*metricsv1.GetRebuildResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	st, err := g.store.RebuildStatus(ctx, tenant)
	if err != nil {
		return nil, g.internal(ctx, "GetRebuild", err)
	}
	resp := &metricsv1.GetRebuildResponse{PartialSince: optionalTime(st.Since)}
	switch {
	case st.Holder != nil:
		resp.State = metricsv1.RebuildState_REBUILD_STATE_RUNNING
		resp.Process = &metricsv1.RebuildProcess{
			Pid: st.Holder.PID, ApplicationName: st.Holder.Application, ClientAddress: st.Holder.Address,
			ConnectedAt: optionalTime(st.Holder.ConnectedAt),
		}
	case !st.Rebuilding():
		resp.State = metricsv1.RebuildState_REBUILD_STATE_NONE
	case st.LastError != "":
		resp.State = metricsv1.RebuildState_REBUILD_STATE_FAILED
	default:
		resp.State = metricsv1.RebuildState_REBUILD_STATE_INTERRUPTED
	}
	if st.Holder != nil && !st.Rebuilding() {
		// Its process holds the lock but has not reset the tenant yet:
		// the counts in the table are the last rebuild's, not this one's.
		return resp, nil
	}
	resp.StartedAt = optionalTime(st.AttemptStartedAt)
	resp.EventsReplayed, resp.EventsApplied, resp.EventsRejected = st.Progress.Replayed, st.Progress.Applied, st.Progress.Rejected
	resp.EventsPending = st.Progress.Pending
	resp.ProgressAt = optionalTime(st.ProgressAt)
	if st.Rebuilding() {
		resp.LastError, resp.FailedAt = st.LastError, optionalTime(st.FailedAt)
	} else {
		resp.FinishedAt = optionalTime(st.FinishedAt)
	}
	return resp, nil
}

// optionalTime is t as a Timestamp, nil when t is zero (unset).
func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// whole runs read, the store reads of one answer, when the tenant's
// figures are whole. During a rebuild (from its reset until its replay is
// done) the tenant's rows are partial: rather than answer with them, as if
// the shop had fewer orders, it refuses with UNAVAILABLE naming the
// rebuild, also when one started (or ran entirely) while read ran. Errors
// of read without a status are failures of op.
func (g *GRPC) whole(ctx context.Context, tenant, op string, read func() error) error {
	before, err := g.store.RebuildState(ctx, tenant)
	if err != nil {
		return g.internal(ctx, op, err)
	}
	if before.Rebuilding() {
		return rebuilding(before)
	}
	err = read()
	after, serr := g.store.RebuildState(ctx, tenant)
	switch {
	case serr == nil && after != before:
		return rebuilding(after)
	case err == nil && serr != nil:
		err = serr
	}
	if _, ok := status.FromError(err); err != nil && !ok {
		return g.internal(ctx, op, err)
	}
	return err
}

// rebuilding is the answer of a query that met a rebuild.
func rebuilding(st store.RebuildState) error {
	if !st.Rebuilding() {
		return status.Error(codes.Unavailable, "the figures of this tenant were rebuilt while the query ran: ask again")
	}
	return status.Errorf(codes.Unavailable,
		"the figures of this tenant are being rebuilt from the event stream (partial since %s): no answer until the rebuild is done; `retain metrics rebuild` waits for it, `retain metrics rebuild --status` says how far it is",
		st.Since.Format(time.RFC3339))
}

// beforeEarliest answers a period bound at 0001-01-01T00:00:00Z, a valid
// Timestamp that is Go's zero time, which the domain reads as unset.
var beforeEarliest = fmt.Sprintf("%s is before the earliest supported time, %s",
	time.Time{}.Format(time.RFC3339), time.Time{}.Add(store.Precision).Format(time.RFC3339Nano))

// period validates a request's period with the domain's rule, naming the
// field at fault, and cuts a period that ends in the future at now
// (retention.Period.SoFar): responses carry the period measured.
func (g *GRPC) period(p *metricsv1.Period) (retention.Period, error) {
	var from, to time.Time
	if p.GetFrom() != nil {
		if err := p.GetFrom().CheckValid(); err != nil {
			return retention.Period{}, invalid("period.from", err.Error())
		}
		if from = p.GetFrom().AsTime(); from.IsZero() {
			return retention.Period{}, invalid("period.from", beforeEarliest)
		}
	}
	if p.GetTo() != nil {
		if err := p.GetTo().CheckValid(); err != nil {
			return retention.Period{}, invalid("period.to", err.Error())
		}
		if to = p.GetTo().AsTime(); to.IsZero() {
			return retention.Period{}, invalid("period.to", beforeEarliest)
		}
	}
	out, err := retention.NewPeriod(from, to)
	switch {
	case err == nil:
		soFar, err := out.SoFar(g.now().UTC().Truncate(store.Precision))
		if err != nil {
			return out, invalid("period.from", err.Error())
		}
		return soFar, nil
	case from.IsZero():
		return out, invalid("period.from", "is required")
	case to.IsZero():
		return out, invalid("period.to", "is required")
	default:
		return out, invalid("period", err.Error())
	}
}

func periodPB(p retention.Period) *metricsv1.Period {
	return &metricsv1.Period{From: timestamppb.New(p.From), To: timestamppb.New(p.To)}
}

// window turns window_days into the domain's window: 0 is the default, and
// the domain decides what is absurd.
func window(days int32) (retention.Window, int32, error) {
	if days == 0 {
		return retention.DefaultWindow, int32(retention.DefaultWindow.Duration() / retention.Day), nil
	}
	w := retention.WindowDays(int(days))
	if days < 0 || w.Validate() != nil {
		return 0, 0, invalid("window_days", fmt.Sprintf("%d days: must be between %d and %d",
			days, retention.MinWindow.Duration()/retention.Day, retention.MaxWindow.Duration()/retention.Day))
	}
	return w, days, nil
}

var monthRE = regexp.MustCompile(`^([0-9]{4})-(0[1-9]|1[0-2])$`)

// month parses "YYYY-MM".
func month(field, s string) (retention.Month, error) {
	if s == "" {
		return 0, invalid(field, `is required, as "YYYY-MM"`)
	}
	if !monthRE.MatchString(s) {
		return 0, invalid(field, fmt.Sprintf("%q: must be a month as \"YYYY-MM\"", s))
	}
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return 0, invalid(field, fmt.Sprintf("%q: %v", s, err))
	}
	return retention.MonthOf(t), nil
}

func pageSize(n int32) (int, error) {
	switch {
	case n == 0:
		return DefaultPageSize, nil
	case n < 0 || n > MaxPageSize:
		return 0, invalid("page_size", fmt.Sprintf("%d: must be between 1 and %d (0 means %d)", n, MaxPageSize, DefaultPageSize))
	}
	return int(n), nil
}

// checkCurrency validates the requested currency: a known ISO 4217 code,
// the table ingest checks orders against.
func checkCurrency(want string) error {
	if want == "" {
		return nil
	}
	if err := currency.Check(want); err != nil {
		return invalid("currency", err.Error())
	}
	return nil
}

// currencyError names the currency field when the store could not resolve
// the one asked for (it says which the tenant has), and passes on other
// errors.
func currencyError(err error) error {
	var ce *store.CurrencyError
	if errors.As(err, &ce) {
		return invalid("currency", ce.Error())
	}
	return err
}

func ratio(r retention.Ratio) *metricsv1.Ratio {
	out := &metricsv1.Ratio{Numerator: r.Num, Denominator: r.Den}
	if v, ok := r.Value(); ok {
		p, _ := r.Percent()
		out.Defined, out.Value, out.Percent = true, v, p
	}
	return out
}

// invalid is INVALID_ARGUMENT naming one field.
func invalid(field, description string) error {
	return server.InvalidArgument(server.FieldViolation{Field: field, Description: description})
}

// internal maps a failure below the edge (server.Failure), naming the
// call in the server's log; the caller's own cancellation keeps its code
// even when the store reports it otherwise.
func (g *GRPC) internal(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return server.Failure(fmt.Errorf("%s: %w", op, err))
}
