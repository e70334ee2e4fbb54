// Package api is churn-signal's gRPC edge: it validates requests, takes the
// tenant from the caller's token (never from the request) and maps the use
// cases' errors to status codes.
package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/churnsignal/internal/app"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// MethodScopes is the scope each ChurnService method requires: reading
// needs read; refitting and setting weights (which change every customer's
// score) need admin.
var MethodScopes = map[string]string{
	churnv1.ChurnService_GetCustomerRisk_FullMethodName: auth.ScopeRead,
	churnv1.ChurnService_ListAtRisk_FullMethodName:      auth.ScopeRead,
	churnv1.ChurnService_GetModel_FullMethodName:        auth.ScopeRead,
	churnv1.ChurnService_Refit_FullMethodName:           auth.ScopeAdmin,
	churnv1.ChurnService_GetWeights_FullMethodName:      auth.ScopeRead,
	churnv1.ChurnService_SetWeights_FullMethodName:      auth.ScopeAdmin,
}

// Page sizes of ListAtRisk.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// maxCustomerID bounds customer ids as ingest does.
const maxCustomerID = 256

// GRPC implements retain.churn.v1.ChurnService.
type GRPC struct {
	churnv1.UnimplementedChurnServiceServer
	engine *app.Engine
	now    func() time.Time
}

// NewGRPC returns the gRPC edge; now is the clock that as_of is checked
// against (nil: time.Now).
func NewGRPC(e *app.Engine, now func() time.Time) *GRPC {
	if now == nil {
		now = time.Now
	}
	return &GRPC{engine: e, now: now}
}

// violation is one bad field of a request.
type violation = server.FieldViolation

// asOf validates an optional as_of: a valid timestamp not in the future.
func (g *GRPC) asOf(field string, ts *timestamppb.Timestamp) (*time.Time, *violation) {
	if ts == nil {
		return nil, nil
	}
	if err := ts.CheckValid(); err != nil {
		return nil, &violation{Field: field, Description: err.Error()}
	}
	t := ts.AsTime()
	if now := g.now(); t.After(now) {
		return nil, &violation{Field: field, Description: fmt.Sprintf("%s is in the future (now %s): the evidence is only known up to now", t.Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	return &t, nil
}

func errStatus(err error) error {
	switch {
	case errors.Is(err, app.ErrNotFound), errors.Is(err, app.ErrNoModel):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, app.ErrNotEnoughData):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return server.Failure(err)
}

// GetCustomerRisk evaluates one customer.
func (g *GRPC) GetCustomerRisk(ctx context.Context, req *churnv1.GetCustomerRiskRequest) (*churnv1.GetCustomerRiskResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var vs []violation
	id := req.GetCustomerId()
	switch {
	case id == "":
		vs = append(vs, violation{Field: "customer_id", Description: "is required"})
	case len(id) > maxCustomerID:
		vs = append(vs, violation{Field: "customer_id", Description: fmt.Sprintf("%d bytes: at most %d", len(id), maxCustomerID)})
	case !utf8.ValidString(id):
		vs = append(vs, violation{Field: "customer_id", Description: "is not valid UTF-8"})
	}
	at, v := g.asOf("as_of", req.GetAsOf())
	if v != nil {
		vs = append(vs, *v)
	}
	if len(vs) > 0 {
		return nil, server.InvalidArgument(vs...)
	}
	r, err := g.engine.CustomerRisk(ctx, tenant, id, at)
	if err != nil {
		return nil, errStatus(err)
	}
	return &churnv1.GetCustomerRiskResponse{
		Risk: &churnv1.CustomerRisk{
			CustomerId: r.CustomerID,
			Score:      int32(r.Result.Score),
			ExactScore: r.Result.Exact,
			Band:       churnv1.RiskBand(r.Band),
			Reasons:    app.ProtoReasons(r.Result.Reasons, r.AsOf),
			ComputedAt: timestamppb.New(r.ComputedAt),
			AsOf:       timestamppb.New(r.AsOf),
		},
		Features: protoFeatures(r),
	}, nil
}

func protoFeatures(r app.Risk) *churnv1.CustomerFeatures {
	f, d := r.Features, r.Result.Derived
	pf := &churnv1.CustomerFeatures{
		Orders:             int32(f.Orders),
		PurchaseDays:       int32(f.PurchaseDays),
		Tickets_30D:        int32(d.Tickets30),
		Tickets_90D:        int32(d.Tickets90),
		OpenTickets:        int32(d.OpenTickets),
		BillingTickets_90D: int32(d.BillingTickets90),
		HorizonWeeks:       r.Horizon,
	}
	if d.HasOrders {
		pf.RepeatPurchases = int32(d.History.X)
		pf.RecencyWeeks = d.History.Tx
		pf.AgeWeeks = d.History.T
		pf.FirstOrderAt = timestamppb.New(f.FirstOrder)
		pf.LastOrderAt = timestamppb.New(f.LastOrder)
		pf.DaysSinceLastOrder = int32(d.DaysSinceLast)
		pf.TypicalGapDays = d.TypicalGapDays
		pf.MeanOrderValue = &churnv1.Money{AmountMinor: f.MeanOrderValue.AmountMinor, Currency: f.MeanOrderValue.Currency}
	}
	if !f.RenewalDate.IsZero() {
		pf.RenewalDate = f.RenewalDate.Format(time.DateOnly)
	}
	if d.LatestNPS != nil {
		pf.LatestNps, pf.MeanNps = proto.Int32(int32(*d.LatestNPS)), proto.Float64(*d.MeanNPS)
	}
	if d.LatestCSAT != nil {
		pf.LatestCsat, pf.MeanCsat = proto.Int32(int32(*d.LatestCSAT)), proto.Float64(*d.MeanCSAT)
	}
	if p := d.Prediction; p != nil {
		pf.PAlive, pf.ExpectedPurchases, pf.PNoPurchase = proto.Float64(p.PAlive), proto.Float64(p.ExpectedPurchases), proto.Float64(p.PNoPurchase)
	}
	return pf
}

// ListAtRisk pages through the current scores, by score or by customer id
// (decision 0050).
func (g *GRPC) ListAtRisk(ctx context.Context, req *churnv1.ListAtRiskRequest) (*churnv1.ListAtRiskResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	// The server refuses a band or order number the schema lacks before
	// any handler sees it.
	var vs []violation
	band := req.GetBand()
	order := store.ByScore
	if req.GetOrder() == churnv1.AtRiskOrder_AT_RISK_ORDER_CUSTOMER_ID {
		order = store.ByCustomer
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		vs = append(vs, violation{Field: "page_size", Description: fmt.Sprintf("%d: must not be negative", size)})
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	var cursor *store.Cursor
	var after atRiskCursor
	ok, v := server.PageCursor(req, &after)
	switch {
	case v != nil:
		vs = append(vs, *v)
	case ok:
		cursor = &store.Cursor{Exact: math.Float64frombits(after.ScoreBits), CustomerID: after.Customer}
	}
	if len(vs) > 0 {
		return nil, server.InvalidArgument(vs...)
	}
	// One more than asked tells whether there is a next page.
	rows, err := g.engine.ListAtRisk(ctx, tenant, score.Band(band), order, size+1, cursor)
	if err != nil {
		return nil, errStatus(err)
	}
	resp := &churnv1.ListAtRiskResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[size-1]
		if resp.NextPageToken, err = server.NextPageToken(req, atRiskCursor{ScoreBits: math.Float64bits(last.Exact), Customer: last.CustomerID}); err != nil {
			return nil, errStatus(err)
		}
	}
	for _, r := range rows {
		resp.Customers = append(resp.Customers, &churnv1.CustomerRisk{
			CustomerId: r.CustomerID,
			Score:      int32(r.Score),
			ExactScore: r.Exact,
			Band:       churnv1.RiskBand(r.Band),
			Reasons:    app.ProtoStoredReasons(r.Reasons, r.AsOf),
			ComputedAt: timestamppb.New(r.ComputedAt),
			AsOf:       timestamppb.New(r.AsOf),
		})
	}
	return resp, nil
}

// atRiskCursor is a ListAtRisk page token's position: the last customer
// listed and their exact score, as its bits (JSON has no NaN, and a
// decimal could round). The score is not read in customer id order.
type atRiskCursor struct {
	ScoreBits uint64 `json:"s"`
	Customer  string `json:"c"`
}

func protoModel(m store.Model) *churnv1.Model {
	return &churnv1.Model{
		R: m.Params.R, Alpha: m.Params.Alpha, A: m.Params.A, B: m.Params.B,
		LogLikelihood:  m.LogLikelihood,
		Customers:      int32(m.Customers),
		Converged:      m.Converged,
		FittedAt:       timestamppb.New(m.FittedAt),
		AsOf:           timestamppb.New(m.AsOf),
		Pinned:         m.Pinned,
		TypicalGapDays: m.TypicalGapDays,
	}
}

// GetModel returns the tenant's model.
func (g *GRPC) GetModel(ctx context.Context, _ *churnv1.GetModelRequest) (*churnv1.GetModelResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	m, err := g.engine.Model(ctx, tenant)
	if err != nil {
		return nil, errStatus(err)
	}
	return &churnv1.GetModelResponse{Model: protoModel(m)}, nil
}

// Refit fits the model again and rescores every customer.
func (g *GRPC) Refit(ctx context.Context, req *churnv1.RefitRequest) (*churnv1.RefitResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	at, v := g.asOf("as_of", req.GetAsOf())
	if v != nil {
		return nil, server.InvalidArgument(*v)
	}
	m, st, err := g.engine.Refit(ctx, tenant, at)
	if err != nil {
		return nil, errStatus(err)
	}
	return &churnv1.RefitResponse{Model: protoModel(m), CustomersRescored: int32(st.Customers), BandChanges: int32(st.BandChanges)}, nil
}

func protoWeights(w score.Weights) *churnv1.Weights {
	return &churnv1.Weights{
		PurchaseOutlook: w.PurchaseOutlook, Overdue: w.Overdue, SupportTickets: w.SupportTickets,
		PriceComplaints: w.PriceComplaints, Sentiment: w.Sentiment,
		MediumAt: int32(w.MediumAt), HighAt: int32(w.HighAt), Hysteresis: int32(w.Hysteresis),
	}
}

// GetWeights returns the tenant's weights and the defaults.
func (g *GRPC) GetWeights(ctx context.Context, _ *churnv1.GetWeightsRequest) (*churnv1.GetWeightsResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	w, err := g.engine.Weights(ctx, tenant)
	if err != nil {
		return nil, errStatus(err)
	}
	resp := &churnv1.GetWeightsResponse{Weights: protoWeights(w.Weights), Default: w.Default, Defaults: protoWeights(score.DefaultWeights())}
	if !w.Default {
		resp.UpdatedAt = timestamppb.New(w.UpdatedAt)
	}
	return resp, nil
}

// SetWeights changes the fields set in the request, validating the result
// as a whole: a threshold is checked against the other's new or kept value.
func (g *GRPC) SetWeights(ctx context.Context, req *churnv1.SetWeightsRequest) (*churnv1.SetWeightsResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	// NaN and infinities fail the range checks; int32 thresholds cannot
	// overflow int.
	update := func(w *score.Weights) error {
		for _, f := range []struct {
			v   *float64
			dst *float64
		}{
			{req.PurchaseOutlook, &w.PurchaseOutlook}, {req.Overdue, &w.Overdue}, {req.SupportTickets, &w.SupportTickets},
			{req.PriceComplaints, &w.PriceComplaints}, {req.Sentiment, &w.Sentiment},
		} {
			if f.v != nil {
				*f.dst = *f.v
			}
		}
		for _, f := range []struct {
			v   *int32
			dst *int
		}{{req.MediumAt, &w.MediumAt}, {req.HighAt, &w.HighAt}, {req.Hysteresis, &w.Hysteresis}} {
			if f.v != nil {
				*f.dst = int(*f.v)
			}
		}
		return nil
	}
	w, st, err := g.engine.SetWeights(ctx, tenant, update, req.GetRescore())
	var bad score.FieldErrors
	if errors.As(err, &bad) {
		vs := make([]violation, len(bad))
		for i, e := range bad {
			vs[i] = violation{Field: e.Field, Description: e.Problem}
		}
		return nil, server.InvalidArgument(vs...)
	}
	if err != nil {
		return nil, errStatus(err)
	}
	return &churnv1.SetWeightsResponse{
		Weights: protoWeights(w.Weights), UpdatedAt: timestamppb.New(w.UpdatedAt),
		CustomersRescored: int32(st.Customers), BandChanges: int32(st.BandChanges),
	}, nil
}
