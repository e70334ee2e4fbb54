// Package api is the campaign service's gRPC edge: it takes the tenant
// from the caller's token (never from the request), validates requests and
// maps the use cases' errors to status codes (a bad campaign is
// INVALID_ARGUMENT naming each bad field).
package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/internal/app"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// MethodScopes is the scope each method requires: changing campaigns
// needs campaigns:write, reading needs read.
var MethodScopes = map[string]string{
	campaignv1.CampaignService_CreateCampaign_FullMethodName:          auth.ScopeCampaignsWrite,
	campaignv1.CampaignService_UpdateCampaign_FullMethodName:          auth.ScopeCampaignsWrite,
	campaignv1.CampaignService_PauseCampaign_FullMethodName:           auth.ScopeCampaignsWrite,
	campaignv1.CampaignService_ResumeCampaign_FullMethodName:          auth.ScopeCampaignsWrite,
	campaignv1.CampaignService_ArchiveCampaign_FullMethodName:         auth.ScopeCampaignsWrite,
	campaignv1.CampaignService_InstallPlaybook_FullMethodName:         auth.ScopeCampaignsWrite,
	campaignv1.CampaignService_GetCampaign_FullMethodName:             auth.ScopeRead,
	campaignv1.CampaignService_ListCampaigns_FullMethodName:           auth.ScopeRead,
	campaignv1.CampaignService_PreviewAudience_FullMethodName:         auth.ScopeRead,
	campaignv1.CampaignService_GetReport_FullMethodName:               auth.ScopeRead,
	campaignv1.CampaignService_ListCustomerEnrollments_FullMethodName: auth.ScopeRead,
	campaignv1.CampaignService_ListPlaybooks_FullMethodName:           auth.ScopeRead,
}

// GRPC implements retain.campaign.v1.CampaignService.
type GRPC struct {
	campaignv1.UnimplementedCampaignServiceServer
	engine *app.Engine
}

// NewGRPC returns the gRPC edge of e.
func NewGRPC(e *app.Engine) *GRPC { return &GRPC{engine: e} }

func errStatus(err error) error {
	var inv *domain.InvalidError
	switch {
	case errors.As(err, &inv):
		vs := make([]server.FieldViolation, len(inv.Violations))
		for i, v := range inv.Violations {
			vs[i] = server.FieldViolation{Field: "campaign." + v.Field, Description: v.Description}
		}
		return server.InvalidArgument(vs...)
	case errors.Is(err, app.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, app.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error()+" (UpdateCampaign changes it: retain campaigns apply -f FILE)")
	case errors.Is(err, app.ErrArchived):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return server.Failure(err) // a status already (the notifier's answer to a template check) is kept
}

func needID(field, id string) error {
	if !domain.ValidID(id) {
		return server.InvalidArgument(server.FieldViolation{Field: field, Description: fmt.Sprintf("%q is not a campaign id ([a-z0-9][a-z0-9_-]{0,62})", id)})
	}
	return nil
}

func needCampaign(c *campaignv1.Campaign) error {
	if c == nil {
		return server.InvalidArgument(server.FieldViolation{Field: "campaign", Description: "is required"})
	}
	return nil
}

// CreateCampaign stores a new campaign.
func (g *GRPC) CreateCampaign(ctx context.Context, req *campaignv1.CreateCampaignRequest) (*campaignv1.CreateCampaignResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := needCampaign(req.GetCampaign()); err != nil {
		return nil, err
	}
	c, err := g.engine.Create(ctx, tenant, req.GetCampaign(), "", false)
	if err != nil {
		return nil, errStatus(err)
	}
	return &campaignv1.CreateCampaignResponse{Campaign: c}, nil
}

// UpdateCampaign stores a new version, or nothing when the definition
// equals the current version's.
func (g *GRPC) UpdateCampaign(ctx context.Context, req *campaignv1.UpdateCampaignRequest) (*campaignv1.UpdateCampaignResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := needCampaign(req.GetCampaign()); err != nil {
		return nil, err
	}
	c, changed, err := g.engine.Update(ctx, tenant, req.GetCampaign())
	if err != nil {
		return nil, errStatus(err)
	}
	return &campaignv1.UpdateCampaignResponse{Campaign: c, Unchanged: !changed}, nil
}

// GetCampaign returns a campaign.
func (g *GRPC) GetCampaign(ctx context.Context, req *campaignv1.GetCampaignRequest) (*campaignv1.GetCampaignResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := needID("id", req.GetId()); err != nil {
		return nil, err
	}
	if req.GetVersion() < 0 {
		return nil, server.InvalidArgument(server.FieldViolation{Field: "version", Description: "must not be negative"})
	}
	c, err := g.engine.Get(ctx, tenant, req.GetId(), req.GetVersion())
	if err != nil {
		return nil, errStatus(err)
	}
	return &campaignv1.GetCampaignResponse{Campaign: c}, nil
}

// ListCampaigns lists the tenant's campaigns.
func (g *GRPC) ListCampaigns(ctx context.Context, req *campaignv1.ListCampaignsRequest) (*campaignv1.ListCampaignsResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := g.engine.List(ctx, tenant, req.GetIncludeArchived())
	if err != nil {
		return nil, errStatus(err)
	}
	return &campaignv1.ListCampaignsResponse{Campaigns: cs}, nil
}

func (g *GRPC) setState(ctx context.Context, id string, state campaignv1.CampaignState) (*campaignv1.Campaign, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := needID("id", id); err != nil {
		return nil, err
	}
	c, err := g.engine.SetState(ctx, tenant, id, state)
	if err != nil {
		return nil, errStatus(err)
	}
	return c, nil
}

// PauseCampaign stops new enrollments and holds running ones.
func (g *GRPC) PauseCampaign(ctx context.Context, req *campaignv1.PauseCampaignRequest) (*campaignv1.PauseCampaignResponse, error) {
	c, err := g.setState(ctx, req.GetId(), campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED)
	if err != nil {
		return nil, err
	}
	return &campaignv1.PauseCampaignResponse{Campaign: c}, nil
}

// ResumeCampaign continues a paused campaign.
func (g *GRPC) ResumeCampaign(ctx context.Context, req *campaignv1.ResumeCampaignRequest) (*campaignv1.ResumeCampaignResponse, error) {
	c, err := g.setState(ctx, req.GetId(), campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE)
	if err != nil {
		return nil, err
	}
	return &campaignv1.ResumeCampaignResponse{Campaign: c}, nil
}

// ArchiveCampaign ends a campaign and its running enrollments.
func (g *GRPC) ArchiveCampaign(ctx context.Context, req *campaignv1.ArchiveCampaignRequest) (*campaignv1.ArchiveCampaignResponse, error) {
	c, err := g.setState(ctx, req.GetId(), campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED)
	if err != nil {
		return nil, err
	}
	return &campaignv1.ArchiveCampaignResponse{Campaign: c}, nil
}

// Preview limits.
const (
	DefaultPreviewLimit = 20
	MaxPreviewLimit     = 1000
)

// PreviewAudience is a dry run of who would enter now.
func (g *GRPC) PreviewAudience(ctx context.Context, req *campaignv1.PreviewAudienceRequest) (*campaignv1.PreviewAudienceResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = DefaultPreviewLimit
	case limit < 0 || limit > MaxPreviewLimit:
		return nil, server.InvalidArgument(server.FieldViolation{Field: "limit", Description: fmt.Sprintf("%d is outside 1-%d", limit, MaxPreviewLimit)})
	}
	c := req.GetCampaign()
	stored := c == nil
	switch {
	case c != nil && req.GetId() != "":
		return nil, server.InvalidArgument(server.FieldViolation{Field: "id", Description: "give id or campaign, not both"})
	case c == nil:
		if err := needID("id", req.GetId()); err != nil {
			return nil, err
		}
		if c, err = g.engine.Get(ctx, tenant, req.GetId(), 0); err != nil {
			return nil, errStatus(err)
		}
	}
	pv, err := g.engine.PreviewAudience(ctx, tenant, c, stored, limit)
	if err != nil {
		return nil, errStatus(err)
	}
	return &campaignv1.PreviewAudienceResponse{Count: pv.Count, CustomerIds: pv.Customers, Note: pv.Note}, nil
}

// GetReport computes a campaign's report.
func (g *GRPC) GetReport(ctx context.Context, req *campaignv1.GetReportRequest) (*campaignv1.GetReportResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := needID("id", req.GetId()); err != nil {
		return nil, err
	}
	r, err := g.engine.Report(ctx, tenant, req.GetId())
	if err != nil {
		return nil, errStatus(err)
	}
	return &campaignv1.GetReportResponse{Report: r}, nil
}

// Enrollment page sizes.
const (
	DefaultEnrollmentPage = 100
	MaxEnrollmentPage     = 1000
)

// ListCustomerEnrollments lists a page of a customer's enrollments, newest
// first.
func (g *GRPC) ListCustomerEnrollments(ctx context.Context, req *campaignv1.ListCustomerEnrollmentsRequest) (*campaignv1.ListCustomerEnrollmentsResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	f := store.EnrollmentFilter{Tenant: tenant, Customer: req.GetCustomerId(), Campaign: req.GetCampaignId()}
	var bad []server.FieldViolation
	switch id := f.Customer; {
	case id == "":
		bad = append(bad, server.FieldViolation{Field: "customer_id", Description: "is required"})
	case len(id) > 256:
		bad = append(bad, server.FieldViolation{Field: "customer_id", Description: fmt.Sprintf("is %d bytes: at most 256", len(id))})
	}
	if f.Campaign != "" && !domain.ValidID(f.Campaign) {
		bad = append(bad, server.FieldViolation{Field: "campaign_id", Description: fmt.Sprintf("%q is not a campaign id ([a-z0-9][a-z0-9_-]{0,62})", f.Campaign)})
	}
	size, v := server.PageSize(req.GetPageSize(), DefaultEnrollmentPage, MaxEnrollmentPage)
	if v != nil {
		bad = append(bad, *v)
	}
	var after enrollmentCursor
	switch ok, tv := server.PageCursor(req, &after); {
	case tv != nil:
		bad = append(bad, *tv)
	case ok && (!domain.ValidID(after.Campaign) || after.Key == ""):
		bad = append(bad, server.MalformedPageToken("it names no enrollment"))
	case ok:
		f.AfterAt, f.AfterCampaign, f.AfterKey = &after.At, after.Campaign, after.Key
	}
	if len(bad) > 0 {
		return nil, server.InvalidArgument(bad...)
	}
	// One row more than the page tells whether another page follows.
	f.Limit = size + 1
	es, err := g.engine.Enrollments(ctx, f)
	if err != nil {
		return nil, errStatus(err)
	}
	out := &campaignv1.ListCustomerEnrollmentsResponse{}
	if len(es) > size {
		es = es[:size]
		last := es[size-1]
		if out.NextPageToken, err = server.NextPageToken(req, enrollmentCursor{At: last.EnteredAt, Campaign: last.CampaignID, Key: last.Key}); err != nil {
			return nil, errStatus(err)
		}
	}
	for _, e := range es {
		p, err := g.engine.PlanOf(ctx, tenant, e.CampaignID, e.Version)
		if err != nil {
			return nil, errStatus(err)
		}
		pe := &campaignv1.Enrollment{
			Id: e.Ref(), CampaignId: e.CampaignID, CampaignVersion: e.Version, CustomerId: e.CustomerID,
			EntryKey: e.Key, Holdout: e.Holdout, Status: e.Status, EnteredAt: timestamppb.New(e.EnteredAt),
			StepsDone: e.StepsDone, CouponCode: e.CouponCode,
		}
		if e.Status == domain.StatusActive {
			pe.CurrentStep = app.StepID(p, e.Step)
		}
		if e.Due != nil {
			pe.NextAt = timestamppb.New(*e.Due)
		}
		if e.ConvertedAt != nil {
			pe.ConvertedAt = timestamppb.New(*e.ConvertedAt)
		}
		out.Enrollments = append(out.Enrollments, pe)
	}
	return out, nil
}

// enrollmentCursor is the position after a page of a customer's
// enrollments: the last one's entered_at (Postgres keeps microseconds, so
// the time is exact), campaign and entry key. Not its row id, which would
// show the enrollment sequence all shops share (decision 0048).
type enrollmentCursor struct {
	At       time.Time `json:"t"`
	Campaign string    `json:"c"`
	Key      string    `json:"k"`
}

// ListPlaybooks lists the ready-made campaigns.
func (g *GRPC) ListPlaybooks(ctx context.Context, _ *campaignv1.ListPlaybooksRequest) (*campaignv1.ListPlaybooksResponse, error) {
	if _, err := auth.TenantFromContext(ctx); err != nil {
		return nil, err
	}
	pbs, err := domain.Playbooks()
	if err != nil {
		return nil, server.Failure(err)
	}
	out := &campaignv1.ListPlaybooksResponse{}
	for _, p := range pbs {
		out.Playbooks = append(out.Playbooks, &campaignv1.Playbook{Name: p.Name, Summary: p.Summary, Campaign: p.Campaign})
	}
	return out, nil
}

// InstallPlaybook creates a campaign from a playbook.
func (g *GRPC) InstallPlaybook(ctx context.Context, req *campaignv1.InstallPlaybookRequest) (*campaignv1.InstallPlaybookResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetName() == "" {
		return nil, server.InvalidArgument(server.FieldViolation{Field: "name", Description: "is required (retain playbooks list)"})
	}
	if id := req.GetId(); id != "" {
		if err := needID("id", id); err != nil {
			return nil, err
		}
	}
	c, err := g.engine.InstallPlaybook(ctx, tenant, req.GetName(), req.GetId(), req.GetPaused())
	if err != nil {
		return nil, errStatus(err)
	}
	return &campaignv1.InstallPlaybookResponse{Campaign: c}, nil
}
