// Package api is the notifier's edge: NotifierService over gRPC and the
// unsubscribe page over HTTP. It validates input (naming the field),
// takes the tenant from the caller's token, and maps errors to codes.
package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/render"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

// MethodScopes: reading needs read; templates, preferences and sends are
// what campaign tooling changes (campaigns:write); the suppression list is
// an operator's (admin). PreviewTemplate of an inline template needs
// campaigns:write as well (PreviewTemplate checks it).
var MethodScopes = map[string]string{
	notifierv1.NotifierService_CreateTemplate_FullMethodName:    auth.ScopeCampaignsWrite,
	notifierv1.NotifierService_UpdateTemplate_FullMethodName:    auth.ScopeCampaignsWrite,
	notifierv1.NotifierService_GetTemplate_FullMethodName:       auth.ScopeRead,
	notifierv1.NotifierService_ListTemplates_FullMethodName:     auth.ScopeRead,
	notifierv1.NotifierService_PreviewTemplate_FullMethodName:   auth.ScopeRead,
	notifierv1.NotifierService_GetPreferences_FullMethodName:    auth.ScopeRead,
	notifierv1.NotifierService_SetPreferences_FullMethodName:    auth.ScopeCampaignsWrite,
	notifierv1.NotifierService_Unsubscribe_FullMethodName:       auth.ScopeCampaignsWrite,
	notifierv1.NotifierService_AddSuppression_FullMethodName:    auth.ScopeAdmin,
	notifierv1.NotifierService_RemoveSuppression_FullMethodName: auth.ScopeAdmin,
	notifierv1.NotifierService_ListSuppressions_FullMethodName:  auth.ScopeRead,
	notifierv1.NotifierService_ListDeliveries_FullMethodName:    auth.ScopeRead,
	notifierv1.NotifierService_GetDelivery_FullMethodName:       auth.ScopeRead,
	notifierv1.NotifierService_SendTest_FullMethodName:          auth.ScopeCampaignsWrite,
}

// Page sizes of the list methods.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
	maxID           = 256
)

// GRPC implements retain.notifier.v1.NotifierService.
type GRPC struct {
	notifierv1.UnimplementedNotifierServiceServer
	e *app.Engine
}

// NewGRPC returns the gRPC edge.
func NewGRPC(e *app.Engine) *GRPC { return &GRPC{e: e} }

type violation = server.FieldViolation

func checkID(field, v string) *violation {
	switch {
	case v == "":
		return &violation{Field: field, Description: "is required"}
	case len(v) > maxID:
		return &violation{Field: field, Description: fmt.Sprintf("%d bytes: at most %d", len(v), maxID)}
	case !utf8.ValidString(v):
		return &violation{Field: field, Description: "is not valid UTF-8"}
	}
	return nil
}

// maxName bounds a customer's name given in a request.
const maxName = 256

func checkName(field, v string) *violation {
	if len(v) > maxName {
		return &violation{Field: field, Description: fmt.Sprintf("%d bytes: at most %d", len(v), maxName)}
	}
	return nil
}

func invalid(vs ...*violation) error {
	var out []violation
	for _, v := range vs {
		if v != nil {
			out = append(out, *v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return server.InvalidArgument(out...)
}

func customerChannel(field string, c notifierv1.Channel, allowUnset bool) *violation {
	switch {
	case c == notifierv1.Channel_CHANNEL_EMAIL || c == notifierv1.Channel_CHANNEL_SMS:
		return nil
	case c == notifierv1.Channel_CHANNEL_UNSPECIFIED && allowUnset:
		return nil
	}
	return &violation{Field: field, Description: fmt.Sprintf("%s: want CHANNEL_EMAIL or CHANNEL_SMS", c)}
}

func errStatus(err error) error {
	var ie *app.InvalidError
	var me *render.MissingError
	switch {
	case errors.As(err, &ie):
		vs := make([]violation, len(ie.Violations))
		for i, v := range ie.Violations {
			vs[i] = violation{Field: v.Field, Description: v.Description}
		}
		return server.InvalidArgument(vs...)
	case errors.As(err, &me):
		return server.InvalidArgument(violation{Field: "variables", Description: me.Reason})
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error()+" (use UpdateTemplate for a new version)")
	}
	return server.Failure(err)
}

// saveTemplate stores t, or with validateOnly checks it as storing it
// would and answers it as given (changed: unknown, so reported true).
func (g *GRPC) saveTemplate(ctx context.Context, t *notifierv1.Template, create, validateOnly bool) (*notifierv1.Template, bool, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, false, err
	}
	if validateOnly {
		if err := g.e.CheckTemplate(ctx, tenant, t, create); err != nil {
			return nil, false, errStatus(err)
		}
		return t, true, nil
	}
	out, changed, err := g.e.SaveTemplate(ctx, tenant, t, create)
	if err != nil {
		return nil, false, errStatus(err)
	}
	return out, changed, nil
}

// CreateTemplate stores version 1 of a template.
func (g *GRPC) CreateTemplate(ctx context.Context, req *notifierv1.CreateTemplateRequest) (*notifierv1.CreateTemplateResponse, error) {
	t, _, err := g.saveTemplate(ctx, req.GetTemplate(), true, req.GetValidateOnly())
	if err != nil {
		return nil, err
	}
	return &notifierv1.CreateTemplateResponse{Template: t}, nil
}

// UpdateTemplate stores the next version, or nothing when the template
// equals its latest version.
func (g *GRPC) UpdateTemplate(ctx context.Context, req *notifierv1.UpdateTemplateRequest) (*notifierv1.UpdateTemplateResponse, error) {
	t, changed, err := g.saveTemplate(ctx, req.GetTemplate(), false, req.GetValidateOnly())
	if err != nil {
		return nil, err
	}
	return &notifierv1.UpdateTemplateResponse{Template: t, Unchanged: !changed}, nil
}

// templateRef checks a stored template's key and channel. The server
// refuses a channel number the schema lacks before any handler sees it.
func templateRef(key string, ch notifierv1.Channel) []*violation {
	vs := []*violation{checkID("key", key)}
	if ch == notifierv1.Channel_CHANNEL_UNSPECIFIED {
		vs = append(vs, &violation{Field: "channel", Description: "is required: CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_WEBHOOK"})
	}
	return vs
}

// GetTemplate returns one version.
func (g *GRPC) GetTemplate(ctx context.Context, req *notifierv1.GetTemplateRequest) (*notifierv1.GetTemplateResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	vs := templateRef(req.GetKey(), req.GetChannel())
	if req.GetVersion() < 0 {
		vs = append(vs, &violation{Field: "version", Description: "must not be negative (0: the latest)"})
	}
	if err := invalid(vs...); err != nil {
		return nil, err
	}
	t, err := g.e.GetTemplate(ctx, tenant, req.GetKey(), req.GetChannel(), req.GetVersion())
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.GetTemplateResponse{Template: t}, nil
}

// ListTemplates returns the latest versions.
func (g *GRPC) ListTemplates(ctx context.Context, req *notifierv1.ListTemplatesRequest) (*notifierv1.ListTemplatesResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := g.e.ListTemplates(ctx, tenant, req.GetChannel())
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.ListTemplatesResponse{Templates: ts}, nil
}

// PreviewTemplate renders a stored or inline template.
func (g *GRPC) PreviewTemplate(ctx context.Context, req *notifierv1.PreviewTemplateRequest) (*notifierv1.PreviewTemplateResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	t := req.GetTemplate()
	if t != nil {
		// Rendering a template the caller wrote is what saving one does
		// (compiled, rendered with sample values), so it needs the scope
		// saving needs; a read token previews the tenant's own templates.
		if c, _ := auth.ClaimsFromContext(ctx); !c.HasScope(auth.ScopeCampaignsWrite) {
			return nil, status.Errorf(codes.PermissionDenied, "token lacks scope %q, which an inline template needs (a stored one needs %q only)", auth.ScopeCampaignsWrite, auth.ScopeRead)
		}
	} else {
		if err := invalid(templateRef(req.GetKey(), req.GetChannel())...); err != nil {
			return nil, err
		}
		if t, err = g.e.GetTemplate(ctx, tenant, req.GetKey(), req.GetChannel(), 0); err != nil {
			return nil, errStatus(err)
		}
	}
	if l := req.GetLocale(); l != "" {
		if err := render.CheckLocale(l); err != nil {
			return nil, invalid(&violation{Field: "locale", Description: err.Error()})
		}
	}
	if tz := req.GetTimeZone(); tz != "" {
		if _, err := time.LoadLocation(tz); err != nil {
			return nil, invalid(&violation{Field: "time_zone", Description: fmt.Sprintf("%q is not an IANA time zone (like Asia/Tehran)", tz)})
		}
	}
	// Names are values a template compares and slices as often as it
	// says, as a request's variables are (bounded by the renderer).
	if err := invalid(checkName("first_name", req.GetFirstName()), checkName("last_name", req.GetLastName())); err != nil {
		return nil, err
	}
	// A customer's own details fill what the request leaves out, so the
	// preview is the message that customer would get.
	var c store.Contact
	if id := req.GetCustomerId(); id != "" {
		if err := invalid(checkID("customer_id", id)); err != nil {
			return nil, err
		}
		if c, err = g.e.Contact(ctx, tenant, id); err != nil {
			return nil, errStatus(err)
		}
	}
	locale, tz := cmp.Or(req.GetLocale(), c.Locale), cmp.Or(req.GetTimeZone(), c.TZ)
	m, err := g.e.Preview(t, render.Input{
		Tenant:    tenant,
		Locale:    render.Locale{Tag: locale, Zone: g.e.Zone(tz)},
		Variables: req.GetVariables(),
		Customer: map[string]string{"first_name": cmp.Or(req.GetFirstName(), c.FirstName), "last_name": cmp.Or(req.GetLastName(), c.LastName),
			"email": c.Email, "phone": c.Phone, "locale": locale},
	})
	if err != nil {
		var me *render.MissingError
		var ie *app.InvalidError
		if !errors.As(err, &me) && !errors.As(err, &ie) {
			return nil, status.Error(codes.FailedPrecondition, "render: "+err.Error())
		}
		return nil, errStatus(err)
	}
	return &notifierv1.PreviewTemplateResponse{Version: t.GetVersion(), Message: &notifierv1.RenderedMessage{
		Locale: m.Locale, Subject: m.Subject, Html: m.HTML, Text: m.Text, Body: m.Body, Direction: m.Dir}}, nil
}

// GetPreferences returns the effective choices.
func (g *GRPC) GetPreferences(ctx context.Context, req *notifierv1.GetPreferencesRequest) (*notifierv1.GetPreferencesResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := invalid(checkID("customer_id", req.GetCustomerId())); err != nil {
		return nil, err
	}
	p, err := g.e.GetPreferences(ctx, tenant, req.GetCustomerId())
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.GetPreferencesResponse{CustomerId: req.GetCustomerId(), Preferences: p.Prefs, Locale: p.Contact.Locale,
		TimeZone: p.Contact.TZ, HasEmail: p.Contact.Email != "", HasPhone: p.Contact.Phone != ""}, nil
}

// SetPreferences stores choices.
func (g *GRPC) SetPreferences(ctx context.Context, req *notifierv1.SetPreferencesRequest) (*notifierv1.SetPreferencesResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	vs := []*violation{checkID("customer_id", req.GetCustomerId())}
	if len(req.GetPreferences()) == 0 {
		vs = append(vs, &violation{Field: "preferences", Description: "at least one preference is required"})
	}
	for i, p := range req.GetPreferences() {
		f := fmt.Sprintf("preferences[%d]", i)
		vs = append(vs, customerChannel(f+".channel", p.GetChannel(), false))
		if c := p.GetCategory(); c != notifierv1.Category_CATEGORY_MARKETING && c != notifierv1.Category_CATEGORY_TRANSACTIONAL {
			vs = append(vs, &violation{Field: f + ".category", Description: fmt.Sprintf("%s: want CATEGORY_MARKETING or CATEGORY_TRANSACTIONAL", c)})
		}
		if s := p.GetSource(); s != "" && s != "api" {
			vs = append(vs, &violation{Field: f + ".source", Description: fmt.Sprintf("%q: leave empty (set by the notifier)", s)})
		}
	}
	if err := invalid(vs...); err != nil {
		return nil, err
	}
	if err := g.e.SetPreferences(ctx, tenant, req.GetCustomerId(), req.GetPreferences(), "api", ""); err != nil {
		return nil, errStatus(err)
	}
	p, err := g.e.GetPreferences(ctx, tenant, req.GetCustomerId())
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.SetPreferencesResponse{Preferences: p.Prefs}, nil
}

// Unsubscribe opts a customer out.
func (g *GRPC) Unsubscribe(ctx context.Context, req *notifierv1.UnsubscribeRequest) (*notifierv1.UnsubscribeResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	vs := []*violation{checkID("customer_id", req.GetCustomerId()), customerChannel("channel", req.GetChannel(), true)}
	cat := req.GetCategory()
	if cat == notifierv1.Category_CATEGORY_UNSPECIFIED {
		cat = notifierv1.Category_CATEGORY_MARKETING
	}
	if err := invalid(vs...); err != nil {
		return nil, err
	}
	chs := []notifierv1.Channel{req.GetChannel()}
	if req.GetChannel() == notifierv1.Channel_CHANNEL_UNSPECIFIED {
		chs = []notifierv1.Channel{notifierv1.Channel_CHANNEL_EMAIL, notifierv1.Channel_CHANNEL_SMS}
	}
	var ps []*notifierv1.ChannelPreference
	for _, ch := range chs {
		ps = append(ps, &notifierv1.ChannelPreference{Channel: ch, Category: cat})
	}
	if err := g.e.SetPreferences(ctx, tenant, req.GetCustomerId(), ps, "api", ""); err != nil {
		return nil, errStatus(err)
	}
	p, err := g.e.GetPreferences(ctx, tenant, req.GetCustomerId())
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.UnsubscribeResponse{Preferences: p.Prefs}, nil
}

var suppressionReasons = []string{"hard_bounce", "complaint", "manual"}

// maxEmailLen is the longest email address: RFC 5321's 256-byte path
// less its angle brackets.
const maxEmailLen = 254

func validAddress(ch notifierv1.Channel, a string) *violation {
	switch {
	case a == "":
		return &violation{Field: "address", Description: "is required"}
	case ch == notifierv1.Channel_CHANNEL_EMAIL && len(a) > maxEmailLen:
		// Longer is no address SMTP can deliver to (RFC 5321's path), and
		// past the index's row limit it would fail as a server error.
		return &violation{Field: "address", Description: fmt.Sprintf("is %d bytes; an email address has at most %d", len(a), maxEmailLen)}
	case ch == notifierv1.Channel_CHANNEL_EMAIL:
		if m, err := mail.ParseAddress(a); err != nil || m.Address != strings.TrimSpace(a) {
			return &violation{Field: "address", Description: fmt.Sprintf("%q is not an email address", a)}
		}
	case ch == notifierv1.Channel_CHANNEL_SMS:
		n := store.NormalizeAddress(ch, a)
		if !strings.HasPrefix(n, "+") || len(n) < 8 || len(n) > 16 || strings.Trim(n[1:], "0123456789") != "" {
			return &violation{Field: "address", Description: fmt.Sprintf("%q is not an E.164 phone number (like +4915112345678)", a)}
		}
	}
	return nil
}

// AddSuppression lists an address.
func (g *GRPC) AddSuppression(ctx context.Context, req *notifierv1.AddSuppressionRequest) (*notifierv1.AddSuppressionResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	s := req.GetSuppression()
	vs := []*violation{customerChannel("suppression.channel", s.GetChannel(), false)}
	if v := validAddress(s.GetChannel(), s.GetAddress()); v != nil {
		v.Field = "suppression.address"
		vs = append(vs, v)
	}
	reason := s.GetReason()
	if reason == "" {
		reason = "manual"
	}
	if !slices.Contains(suppressionReasons, reason) {
		vs = append(vs, &violation{Field: "suppression.reason", Description: fmt.Sprintf("%q: want hard_bounce, complaint or manual", reason)})
	}
	if len(s.GetNote()) > 1000 {
		vs = append(vs, &violation{Field: "suppression.note", Description: "at most 1000 bytes"})
	}
	if err := invalid(vs...); err != nil {
		return nil, err
	}
	out, err := g.e.AddSuppression(ctx, tenant, store.Suppression{Channel: s.GetChannel(), Address: s.GetAddress(), Reason: reason, Note: s.GetNote()})
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.AddSuppressionResponse{Suppression: suppressionPB(out)}, nil
}

func suppressionPB(s store.Suppression) *notifierv1.Suppression {
	return &notifierv1.Suppression{Channel: s.Channel, Address: s.Address, Reason: s.Reason, Note: s.Note, CreatedAt: timestamppb.New(s.CreatedAt)}
}

// RemoveSuppression unlists an address.
func (g *GRPC) RemoveSuppression(ctx context.Context, req *notifierv1.RemoveSuppressionRequest) (*notifierv1.RemoveSuppressionResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := invalid(customerChannel("channel", req.GetChannel(), false), validAddress(req.GetChannel(), req.GetAddress())); err != nil {
		return nil, err
	}
	ok, err := g.e.RemoveSuppression(ctx, tenant, req.GetChannel(), req.GetAddress())
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.RemoveSuppressionResponse{Removed: ok}, nil
}

// suppressionCursor is a ListSuppressions page token's position: the
// last suppression listed (by channel, then address).
type suppressionCursor struct {
	Channel int16  `json:"ch"`
	Address string `json:"a"`
}

// ListSuppressions pages through the list.
func (g *GRPC) ListSuppressions(ctx context.Context, req *notifierv1.ListSuppressionsRequest) (*notifierv1.ListSuppressionsResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	n, v := server.PageSize(req.GetPageSize(), DefaultPageSize, MaxPageSize)
	vs := []*violation{v, customerChannel("channel", req.GetChannel(), true)}
	var after suppressionCursor
	_, tv := server.PageCursor(req, &after)
	if err := invalid(append(vs, tv)...); err != nil {
		return nil, err
	}
	ss, err := g.e.ListSuppressions(ctx, tenant, req.GetChannel(), after.Channel, after.Address, n+1)
	if err != nil {
		return nil, errStatus(err)
	}
	resp := &notifierv1.ListSuppressionsResponse{}
	if len(ss) > n {
		ss = ss[:n]
		last := ss[n-1]
		if resp.NextPageToken, err = server.NextPageToken(req, suppressionCursor{Channel: int16(last.Channel), Address: last.Address}); err != nil {
			return nil, errStatus(err)
		}
	}
	for _, s := range ss {
		resp.Suppressions = append(resp.Suppressions, suppressionPB(s))
	}
	return resp, nil
}

func deliveryPB(d store.Delivery, ds []store.Decision) *notifierv1.Delivery {
	out := &notifierv1.Delivery{RequestId: d.RequestID, CustomerId: d.CustomerID, Channel: d.Channel, Category: d.Category,
		Priority: d.Priority, Rank: d.Rank, TemplateKey: d.TemplateKey, TemplateVersion: d.TemplateVersion, Status: d.Status, Outcome: d.Outcome,
		ReasonCode: d.ReasonCode, Reason: d.Reason, Attempts: d.Attempts, ProviderMessageId: d.ProviderID, Origin: d.Request.GetOrigin(),
		RequestedAt: timestamppb.New(d.RequestedAt), UpdatedAt: timestamppb.New(d.UpdatedAt), Locale: d.Locale}
	if d.DueAt != nil && (d.Status == store.StatusDeferred || d.Status == store.StatusQueued) {
		out.DueAt = timestamppb.New(*d.DueAt)
	}
	for _, x := range ds {
		out.Decisions = append(out.Decisions, &notifierv1.Decision{Step: x.Step, Stage: x.Stage, Verdict: x.Verdict,
			ReasonCode: x.ReasonCode, Reason: x.Reason, DecidedAt: timestamppb.New(x.At)})
	}
	return out
}

// deliveryCursor is a ListDeliveries page token's position: the last
// delivery listed (newest first, by creation, then request id).
type deliveryCursor struct {
	At        time.Time `json:"t"`
	RequestID string    `json:"r"`
}

// ListDeliveries lists a customer's or a campaign's deliveries.
func (g *GRPC) ListDeliveries(ctx context.Context, req *notifierv1.ListDeliveriesRequest) (*notifierv1.ListDeliveriesResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	n, v := server.PageSize(req.GetPageSize(), DefaultPageSize, MaxPageSize)
	vs := []*violation{v}
	switch {
	case (req.GetCustomerId() == "") == (req.GetCampaignId() == ""):
		vs = append(vs, &violation{Field: "customer_id", Description: "give exactly one of customer_id and campaign_id"})
	case req.GetCustomerId() != "":
		vs = append(vs, checkID("customer_id", req.GetCustomerId()))
	default:
		vs = append(vs, checkID("campaign_id", req.GetCampaignId()))
	}
	f := store.ListFilter{Tenant: tenant, Customer: req.GetCustomerId(), Campaign: req.GetCampaignId(), Limit: n + 1}
	var after deliveryCursor
	ok, tv := server.PageCursor(req, &after)
	if ok {
		f.AfterAt, f.AfterID = &after.At, after.RequestID
	}
	vs = append(vs, tv)
	if err := invalid(vs...); err != nil {
		return nil, err
	}
	ds, err := g.e.ListDeliveries(ctx, f)
	if err != nil {
		return nil, errStatus(err)
	}
	resp := &notifierv1.ListDeliveriesResponse{}
	if len(ds) > n {
		ds = ds[:n]
		last := ds[n-1]
		if resp.NextPageToken, err = server.NextPageToken(req, deliveryCursor{At: last.CreatedAt, RequestID: last.RequestID}); err != nil {
			return nil, errStatus(err)
		}
	}
	for _, d := range ds {
		resp.Deliveries = append(resp.Deliveries, deliveryPB(d, nil))
	}
	return resp, nil
}

// GetDelivery returns one delivery with its decision trail.
func (g *GRPC) GetDelivery(ctx context.Context, req *notifierv1.GetDeliveryRequest) (*notifierv1.GetDeliveryResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := invalid(checkID("request_id", req.GetRequestId())); err != nil {
		return nil, err
	}
	d, ds, err := g.e.GetDelivery(ctx, tenant, req.GetRequestId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "delivery %q not found", req.GetRequestId())
	}
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.GetDeliveryResponse{Delivery: deliveryPB(d, ds)}, nil
}

// SendTest sends a template to a customer now.
func (g *GRPC) SendTest(ctx context.Context, req *notifierv1.SendTestRequest) (*notifierv1.SendTestResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	vs := []*violation{checkID("customer_id", req.GetCustomerId()), checkID("template_key", req.GetTemplateKey())}
	if req.GetChannel() == notifierv1.Channel_CHANNEL_UNSPECIFIED {
		vs = append(vs, &violation{Field: "channel", Description: "is required: CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_WEBHOOK"})
	}
	// Marketing unless asked otherwise: a test of a marketing template on
	// a real customer must not skip their consent, unsubscribes and the
	// cap because the caller left the category out.
	cat := req.GetCategory()
	if cat == notifierv1.Category_CATEGORY_UNSPECIFIED {
		cat = notifierv1.Category_CATEGORY_MARKETING
	}
	if err := invalid(vs...); err != nil {
		return nil, err
	}
	id, err := g.e.SendTest(ctx, tenant, &notifierv1.NotificationRequested{CustomerId: req.GetCustomerId(), Channel: req.GetChannel(),
		Category: cat, TemplateKey: req.GetTemplateKey(), Variables: req.GetVariables()})
	if err != nil {
		return nil, errStatus(err)
	}
	return &notifierv1.SendTestResponse{RequestId: id}, nil
}
