package notifier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// fieldViolation returns the description of err's violation of field, or
// fails the test when err is not INVALID_ARGUMENT naming it.
func fieldViolation(t *testing.T, err error, field string) string {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("%v, want INVALID_ARGUMENT", err)
	}
	for _, v := range server.Violations(err) {
		if v.Field == field {
			return v.Description
		}
	}
	t.Fatalf("%v does not name %s", err, field)
	return ""
}

// TestPreviewOfAnInlineTemplateNeedsCampaignsWrite: rendering a template
// the caller wrote is what saving one does, so it needs the scope saving
// needs; a read token still previews the tenant's stored templates.
func TestPreviewOfAnInlineTemplateNeedsCampaignsWrite(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	inline := &notifierv1.Template{Key: "x", Channel: notifierv1.Channel_CHANNEL_SMS, Variants: []*notifierv1.TemplateVariant{{Body: "Hi {{.customer.first_name}}"}}}
	_, err := s.client().PreviewTemplate(ctx, &notifierv1.PreviewTemplateRequest{Template: inline}, s.token(t, "shop", auth.ScopeRead))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("inline preview with a read token: %v, want PERMISSION_DENIED", err)
	}
	// The method needs read, as every preview; the inline template needs
	// campaigns:write on top.
	resp, err := s.client().PreviewTemplate(ctx, &notifierv1.PreviewTemplateRequest{Template: inline, FirstName: "Sara"}, s.token(t, "shop", auth.ScopeRead, auth.ScopeCampaignsWrite))
	if err != nil || resp.GetMessage().GetBody() != "Hi Sara" {
		t.Fatalf("inline preview with campaigns:write: %v %v", resp, err)
	}
	resp, err = s.client().PreviewTemplate(ctx, &notifierv1.PreviewTemplateRequest{Key: "winback_90", Channel: notifierv1.Channel_CHANNEL_SMS, FirstName: "Sara"},
		s.token(t, "shop", auth.ScopeRead))
	if err != nil || resp.GetMessage().GetBody() == "" {
		t.Fatalf("stored preview with a read token: %v %v", resp, err)
	}
}

// TestRunawayTemplatesAreRefusedQuickly: templates that would spin for
// ever or render a gigabyte are refused when previewed or saved, at once,
// naming the part: refused for their loops, which are read, not run (run,
// the first spins far past the calls' 10 s and the second stops at the
// SMS's length instead).
func TestRunawayTemplatesAreRefusedQuickly(t *testing.T) {
	s := setup(t)
	cred := s.token(t, "shop", auth.ScopeRead, auth.ScopeCampaignsWrite)
	for _, body := range []string{
		`{{range 100000}}{{range 100000}}{{end}}{{end}}ok`,
		`{{range 20000}}{{range 1000}}0123456789{{end}}{{end}}`,
	} {
		tpl := &notifierv1.Template{Key: "runaway", Channel: notifierv1.Channel_CHANNEL_SMS, Variants: []*notifierv1.TemplateVariant{{Body: body}}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.client().PreviewTemplate(ctx, &notifierv1.PreviewTemplateRequest{Template: tpl}, cred)
		if d := fieldViolation(t, err, "template.variants[0].body"); !strings.Contains(d, "{{range}}") {
			t.Errorf("%s: previewed, refused for %q, want {{range}}", body, d)
		}
		_, err = s.client().CreateTemplate(ctx, &notifierv1.CreateTemplateRequest{Template: tpl}, cred)
		if d := fieldViolation(t, err, "template.variants[0].body"); !strings.Contains(d, "{{range}}") {
			t.Errorf("%s: saved, refused for %q, want {{range}}", body, d)
		}
		cancel()
	}
	// What a preview's caller gives is bounded too.
	ctx := context.Background()
	read := s.token(t, "shop", auth.ScopeRead)
	stored := &notifierv1.PreviewTemplateRequest{Key: "thank_you_feedback", Channel: notifierv1.Channel_CHANNEL_EMAIL, FirstName: strings.Repeat("a", 257)}
	_, err := s.client().PreviewTemplate(ctx, stored, read)
	fieldViolation(t, err, "first_name")
	stored.FirstName = "Sara"
	stored.Variables = map[string]*notifierv1.TemplateValue{"survey_url": {Value: &notifierv1.TemplateValue_Text{Text: strings.Repeat("a", 64<<10)}}}
	_, err = s.client().PreviewTemplate(ctx, stored, read)
	if d := fieldViolation(t, err, "variables"); !strings.Contains(d, "survey_url") {
		t.Errorf("variables: %s", d)
	}
	// A long value within the limits is sent; a message past its
	// channel's limit is not.
	s.customers(t, "shop", customer{id: "c", email: "c@example.com", emailConsent: granted})
	s.request(t, &notifierv1.NotificationRequested{RequestId: "long", TenantId: "shop", CustomerId: "c", Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, TemplateKey: "thank_you_feedback",
		Variables: map[string]*notifierv1.TemplateValue{"survey_url": {Value: &notifierv1.TemplateValue_Text{Text: strings.Repeat("a", 60<<10)}}}}, "")
	s.delivery(t, "shop", "long", "sent")
	_, err = s.client().CreateTemplate(ctx, &notifierv1.CreateTemplateRequest{Template: &notifierv1.Template{Key: "long", Channel: notifierv1.Channel_CHANNEL_SMS,
		Variables: []*notifierv1.VariableSpec{{Name: "x", Type: "text"}}, Variants: []*notifierv1.TemplateVariant{{Body: "{{.x}}"}}}}, cred)
	if err != nil {
		t.Fatal(err)
	}
	s.customers(t, "shop", customer{id: "p", phone: "+4915112345678", smsConsent: granted})
	s.request(t, &notifierv1.NotificationRequested{RequestId: "long-sms", TenantId: "shop", CustomerId: "p", Channel: notifierv1.Channel_CHANNEL_SMS,
		Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, TemplateKey: "long",
		Variables: map[string]*notifierv1.TemplateValue{"x": {Value: &notifierv1.TemplateValue_Text{Text: strings.Repeat("a", 1601)}}}}, "")
	d := s.delivery(t, "shop", "long-sms", "failed")
	if d.GetReasonCode() != "template_render_failed" || !strings.Contains(d.GetReason(), "body: renders to more than 1,600 characters") {
		t.Errorf("%s: %s", d.GetReasonCode(), d.GetReason())
	}
	if calls, _ := s.sms.stats(); calls != 0 {
		t.Errorf("%d SMS sent", calls)
	}
}
