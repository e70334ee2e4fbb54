package main

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/templatefile"
)

// cannedNotifier answers NotifierService calls with fixed responses and
// records the requests, so the CLI's flags, paging and output can be
// checked without a running stack (the service itself is tested on real
// NATS, Postgres and SMTP in services/notifier).
type cannedNotifier struct {
	notifierv1.UnimplementedNotifierServiceServer
	mu   sync.Mutex
	reqs []proto.Message
}

func (c *cannedNotifier) record(m proto.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, m)
}

func (c *cannedNotifier) last() proto.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[len(c.reqs)-1]
}

// lastOf is the last request of type R, for a command that makes more
// than one call.
func lastOf[R proto.Message](c *cannedNotifier) R {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.reqs) - 1; i >= 0; i-- {
		if r, ok := c.reqs[i].(R); ok {
			return r
		}
	}
	var none R
	return none
}

var (
	cannedAt       = timestamppb.New(time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC))
	cannedTemplate = &notifierv1.Template{Key: "winback_90", Channel: notifierv1.Channel_CHANNEL_EMAIL, Version: 3, CreatedAt: cannedAt,
		Description: "90 days without an order",
		Variables:   []*notifierv1.VariableSpec{{Name: "coupon", Type: "coupon", Optional: true}, {Name: "total", Type: "money"}, {Name: "due", Type: "time"}},
		Variants: []*notifierv1.TemplateVariant{{Subject: "We miss you", Html: "<p>{{.coupon}}</p>", Text: "{{.coupon}}"},
			{Locale: "fa", Subject: "دلمان برایتان تنگ شده", Html: "<p>{{.coupon}}</p>"}}}
)

func (c *cannedNotifier) ListTemplates(_ context.Context, r *notifierv1.ListTemplatesRequest) (*notifierv1.ListTemplatesResponse, error) {
	c.record(r)
	return &notifierv1.ListTemplatesResponse{Templates: []*notifierv1.Template{cannedTemplate,
		{Key: "detractor_support_alert", Channel: notifierv1.Channel_CHANNEL_WEBHOOK, Version: 1, Variants: []*notifierv1.TemplateVariant{{Body: "{}"}}}}}, nil
}

func (c *cannedNotifier) GetTemplate(_ context.Context, r *notifierv1.GetTemplateRequest) (*notifierv1.GetTemplateResponse, error) {
	c.record(r)
	if r.GetKey() != cannedTemplate.GetKey() {
		return nil, status.Errorf(codes.NotFound, "template %q (%s): not found", r.GetKey(), templatefile.ChannelName(r.GetChannel()))
	}
	return &notifierv1.GetTemplateResponse{Template: cannedTemplate}, nil
}

// UpdateTemplate knows only winback_90; CreateTemplate refuses a template
// without a default variant, as the notifier does.
func (c *cannedNotifier) UpdateTemplate(_ context.Context, r *notifierv1.UpdateTemplateRequest) (*notifierv1.UpdateTemplateResponse, error) {
	c.record(r)
	if r.GetTemplate().GetKey() != cannedTemplate.GetKey() {
		return nil, status.Error(codes.NotFound, "not found")
	}
	t := proto.Clone(r.GetTemplate()).(*notifierv1.Template)
	if r.GetValidateOnly() {
		return &notifierv1.UpdateTemplateResponse{Template: t}, nil
	}
	t.Version = 4
	return &notifierv1.UpdateTemplateResponse{Template: t}, nil
}

func (c *cannedNotifier) CreateTemplate(_ context.Context, r *notifierv1.CreateTemplateRequest) (*notifierv1.CreateTemplateResponse, error) {
	c.record(r)
	if r.GetTemplate().GetVariants()[0].GetLocale() != "" {
		return nil, status.Error(codes.InvalidArgument, "invalid request: template.variants: a default variant (locale \"\") is required")
	}
	t := proto.Clone(r.GetTemplate()).(*notifierv1.Template)
	if r.GetValidateOnly() {
		return &notifierv1.CreateTemplateResponse{Template: t}, nil
	}
	t.Version = 1
	return &notifierv1.CreateTemplateResponse{Template: t}, nil
}

func (c *cannedNotifier) PreviewTemplate(_ context.Context, r *notifierv1.PreviewTemplateRequest) (*notifierv1.PreviewTemplateResponse, error) {
	c.record(r)
	return &notifierv1.PreviewTemplateResponse{Version: 3, Message: &notifierv1.RenderedMessage{Locale: "fa", Subject: "دلمان برایتان تنگ شده",
		Html: `<html lang="fa-IR" dir="rtl"><p>WELCOME20</p></html>`, Text: "WELCOME20", Direction: "rtl"}}, nil
}

func (c *cannedNotifier) ListDeliveries(_ context.Context, r *notifierv1.ListDeliveriesRequest) (*notifierv1.ListDeliveriesResponse, error) {
	c.record(r)
	// Three deliveries, served in pages of the requested size.
	all := []*notifierv1.Delivery{
		{RequestId: "winback/e-1/s-1", CustomerId: "c-42", Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_MARKETING,
			TemplateKey: "winback_90", Status: "sent", RequestedAt: cannedAt},
		{RequestId: "winback/e-2/s-1", CustomerId: "c-42", Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_MARKETING,
			TemplateKey: "winback_90", Status: "deferred", ReasonCode: "quiet_hours", Reason: "21:30 in Asia/Tehran is in quiet hours",
			DueAt: timestamppb.New(time.Date(2026, 6, 11, 5, 30, 15, 0, time.UTC)), RequestedAt: cannedAt},
		{RequestId: "vip/e-3/s-1", CustomerId: "c-42", Channel: notifierv1.Channel_CHANNEL_SMS, Category: notifierv1.Category_CATEGORY_MARKETING,
			TemplateKey: "vip_care", Status: "suppressed", ReasonCode: "consent_revoked", Reason: "the shop recorded SMS consent revoked", RequestedAt: cannedAt},
	}
	start := 0
	if r.GetPageToken() != "" {
		start = int(r.GetPageToken()[0] - '0')
	}
	end := min(start+int(r.GetPageSize()), len(all))
	resp := &notifierv1.ListDeliveriesResponse{Deliveries: all[start:end]}
	if end < len(all) {
		resp.NextPageToken = string(rune('0' + end))
	}
	return resp, nil
}

func (c *cannedNotifier) GetDelivery(_ context.Context, r *notifierv1.GetDeliveryRequest) (*notifierv1.GetDeliveryResponse, error) {
	c.record(r)
	if r.GetRequestId() == "nope" {
		// What the notifier says: no more than "not found".
		return nil, status.Error(codes.NotFound, "not found")
	}
	return &notifierv1.GetDeliveryResponse{Delivery: &notifierv1.Delivery{RequestId: r.GetRequestId(), CustomerId: "c-42", Rank: 70,
		Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_MARKETING, Priority: notifierv1.Priority_PRIORITY_NORMAL,
		TemplateKey: "winback_90", TemplateVersion: 3, Locale: "fa", Status: "sent", Outcome: notifierv1.Outcome_OUTCOME_SENT, Attempts: 1,
		ProviderMessageId: "<abc@shop.example>", Origin: &notifierv1.Origin{CampaignId: "winback", CampaignVersion: 2, EnrollmentId: "e-1", StepId: "s-1"},
		RequestedAt: cannedAt, UpdatedAt: cannedAt,
		Decisions: []*notifierv1.Decision{
			{Step: 1, Stage: "consent", Verdict: "pass", Reason: "the shop recorded email consent granted", DecidedAt: cannedAt},
			{Step: 2, Stage: "quiet_hours", Verdict: "defer", ReasonCode: "quiet_hours", Reason: "21:30 in Asia/Tehran is in quiet hours (21:00-09:00)", DecidedAt: cannedAt},
			{Step: 3, Stage: "send", Verdict: "sent", Reason: "accepted by the email provider on attempt 1", DecidedAt: cannedAt},
		}}}, nil
}

var cannedPrefs = []*notifierv1.ChannelPreference{
	{Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, Subscribed: true, Source: "default"},
	{Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_MARKETING, Subscribed: false, Source: "one_click", UpdatedAt: cannedAt},
}

func (c *cannedNotifier) GetPreferences(_ context.Context, r *notifierv1.GetPreferencesRequest) (*notifierv1.GetPreferencesResponse, error) {
	c.record(r)
	return &notifierv1.GetPreferencesResponse{CustomerId: r.GetCustomerId(), Preferences: cannedPrefs, Locale: "fa-IR", TimeZone: "Asia/Tehran", HasEmail: true}, nil
}

func (c *cannedNotifier) SetPreferences(_ context.Context, r *notifierv1.SetPreferencesRequest) (*notifierv1.SetPreferencesResponse, error) {
	c.record(r)
	return &notifierv1.SetPreferencesResponse{Preferences: cannedPrefs}, nil
}

func startCannedNotifier(t *testing.T) (*cannedNotifier, map[string]string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	c := &cannedNotifier{}
	notifierv1.RegisterNotifierServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return c, map[string]string{"RETAIN_ADDR": lis.Addr().String(), "RETAIN_TOKEN": "tok"}
}

func TestNotifierCommands(t *testing.T) {
	svc, vars := startCannedNotifier(t)
	ctx := context.Background()
	cli := func(t *testing.T, args ...string) string {
		t.Helper()
		env, out, errOut := testEnv(vars)
		if err := run(ctx, env, args); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out.String()
	}
	// wantAll checks the output for each pattern; runs of spaces in a
	// pattern match any column padding.
	wantAll := func(t *testing.T, out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			re := regexp.MustCompile(strings.Join(strings.Fields(regexp.QuoteMeta(w)), `\s+`))
			if !re.MatchString(out) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	t.Run("templates list", func(t *testing.T) {
		out := cli(t, "templates", "list", "--channel", "email")
		if req := svc.last().(*notifierv1.ListTemplatesRequest); req.GetChannel() != notifierv1.Channel_CHANNEL_EMAIL {
			t.Errorf("request %v", req)
		}
		wantAll(t, out, "KEY", "winback_90  email    3", "default,fa", "coupon:coupon?,total:money,due:time", "90 days without an order", "detractor_support_alert  webhook")
		out = cli(t, "templates", "list", "--output", "json")
		if req := svc.last().(*notifierv1.ListTemplatesRequest); req.GetChannel() != notifierv1.Channel_CHANNEL_UNSPECIFIED {
			t.Errorf("no --channel means every channel: %v", req)
		}
		var got struct {
			Templates []struct{ Key, Channel string }
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Templates) != 2 || got.Templates[0].Channel != "CHANNEL_EMAIL" {
			t.Fatalf("json %s: %v", out, err)
		}
	})
	t.Run("templates show is the file form", func(t *testing.T) {
		out := cli(t, "templates", "show", "winback_90", "--version", "3")
		if req := lastOf[*notifierv1.GetTemplateRequest](svc); req.GetVersion() != 3 || req.GetChannel() != notifierv1.Channel_CHANNEL_EMAIL {
			t.Errorf("request %v", req)
		}
		wantAll(t, out, "# winback_90 (email): version 3, saved 2026-06-10T12:00:00Z", "retain templates apply -f FILE", "key: winback_90", "channel: email", "locale: fa")
	})
	t.Run("templates apply updates or creates each template of the file", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "t.yaml")
		os.WriteFile(file, []byte("key: winback_90\nchannel: email\nvariants:\n  - locale: \"\"\n    subject: Hi\n    text: Hi\n---\nkey: sms_hello\nchannel: sms\nvariants:\n  - locale: \"\"\n    body: Hello\n"), 0o644)
		out := cli(t, "templates", "apply", "-f", file)
		wantAll(t, out, "template winback_90 (email) updated: version 4", "template sms_hello (sms) created: version 1")
		if req := svc.last().(*notifierv1.CreateTemplateRequest); req.GetTemplate().GetChannel() != notifierv1.Channel_CHANNEL_SMS || req.GetTemplate().GetVariants()[0].GetBody() != "Hello" {
			t.Errorf("create %v", req)
		}
		// A refused template names the template and the field, and none
		// of the file is saved.
		os.WriteFile(file, []byte("key: winback_90\nchannel: email\nvariants:\n  - locale: \"\"\n    text: Hi\n---\nkey: bad\nchannel: email\nvariants:\n  - locale: fa\n    text: x\n"), 0o644)
		env, out2, _ := testEnv(vars)
		svc.mu.Lock()
		before := len(svc.reqs)
		svc.mu.Unlock()
		err := run(ctx, env, []string{"templates", "apply", "-f", file})
		if err == nil || !strings.Contains(err.Error(), "template bad (email): invalid request: template.variants") || !strings.Contains(err.Error(), "none saved") {
			t.Fatalf("err %v", err)
		}
		if out2.String() != "" {
			t.Errorf("output of a refused file:\n%s", out2)
		}
		svc.mu.Lock()
		reqs := svc.reqs[before:]
		svc.mu.Unlock()
		for _, r := range reqs {
			if v, ok := r.(interface{ GetValidateOnly() bool }); !ok || !v.GetValidateOnly() {
				t.Errorf("a refused file was saved: %v", r)
			}
		}
		env, _, _ = testEnv(vars)
		os.WriteFile(file, []byte("key: x\nchanel: email\n"), 0o644)
		if err := run(ctx, env, []string{"templates", "apply", "-f", file}); err == nil || !strings.Contains(err.Error(), "chanel") {
			t.Errorf("a typo in the file must be named: %v", err)
		}
		// A syntax error is at its own line, not the list's around it.
		env, _, _ = testEnv(vars)
		os.WriteFile(file, []byte("key: x\nchannel: email\nvariables:\n  - {name: coupon, type: coupon}\n  - {name: a, type: [text}\n"), 0o644)
		if err := run(ctx, env, []string{"templates", "apply", "-f", file}); err == nil || !strings.Contains(err.Error(), "line 5, column 26: did not find expected ',' or ']'") {
			t.Errorf("a syntax error on line 5: %v", err)
		}
	})
	t.Run("templates preview types the variables by the template", func(t *testing.T) {
		out := cli(t, "templates", "preview", "winback_90", "--customer", "c-42", "--locale", "fa-IR",
			"--var", "coupon=WELCOME20:20%", "--var", "total=1234.5 EUR", "--var", "due=2026-07-01")
		req := svc.last().(*notifierv1.PreviewTemplateRequest)
		if req.GetCustomerId() != "c-42" || req.GetLocale() != "fa-IR" || req.GetKey() != "winback_90" {
			t.Errorf("request %v", req)
		}
		if c := req.GetVariables()["coupon"].GetCoupon(); c.GetCode() != "WELCOME20" || c.GetPercentOff() != 20 {
			t.Errorf("coupon %v", c)
		}
		if m := req.GetVariables()["total"].GetMoney(); m.GetAmountMinor() != 123450 || m.GetCurrency() != "EUR" {
			t.Errorf("money %v", m)
		}
		if d := req.GetVariables()["due"].GetTime(); !d.AsTime().Equal(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("time %v", d)
		}
		wantAll(t, out, "variant fa, direction rtl", "Subject: دلمان برایتان تنگ شده", "--- HTML", `dir="rtl"`, "--- Text")
		if strings.Contains(out, "SAMPLE") {
			t.Errorf("a preview for a customer says it is for a sample:\n%s", out)
		}
	})
	t.Run("templates preview without --customer is for a sample customer, and says so", func(t *testing.T) {
		out := cli(t, "templates", "preview", "winback_90")
		req := svc.last().(*notifierv1.PreviewTemplateRequest)
		if req.GetCustomerId() != "" || req.GetFirstName() != "Sample" || req.GetLastName() != "Customer" {
			t.Errorf("request %v", req)
		}
		wantAll(t, out, "# for a SAMPLE customer (first name Sample, last name Customer, no email or phone): --customer C renders it as C gets it")
	})
	t.Run("deliveries list pages until the limit", func(t *testing.T) {
		out := cli(t, "deliveries", "list", "--customer", "c-42", "--limit", "2")
		if req := svc.last().(*notifierv1.ListDeliveriesRequest); req.GetCustomerId() != "c-42" || req.GetPageSize() != 2 {
			t.Errorf("request %v", req)
		}
		wantAll(t, out, "winback/e-1/s-1", "sent", "deferred (quiet_hours) until 2026-06-11 05:30:15Z", "21:30 in Asia/Tehran is in quiet hours", moreOfTheSame+" --page-token 2")
		if strings.Contains(out, "vip/e-3/s-1") {
			t.Errorf("listed beyond --limit:\n%s", out)
		}
		out = cli(t, "deliveries", "list", "--campaign", "winback", "--output", "json")
		if req := svc.last().(*notifierv1.ListDeliveriesRequest); req.GetCampaignId() != "winback" {
			t.Errorf("request %v", req)
		}
		if strings.Count(out, `"requestId"`) != 3 {
			t.Errorf("json of all pages:\n%s", out)
		}
	})
	t.Run("deliveries show prints the decision trail", func(t *testing.T) {
		out := cli(t, "deliveries", "show", "winback/e-1/s-1")
		wantAll(t, out, "winback/e-1/s-1: SENT", "c-42, marketing email, priority normal, rank 70", "winback_90 v3, variant fa",
			"campaign   winback v2, enrollment e-1, step s-1", "<abc@shop.example>", "decision trail:",
			"quiet_hours  defer  21:30 in Asia/Tehran", "3  2026-06-10 12:00:00Z  send")
	})
	t.Run("preferences", func(t *testing.T) {
		out := cli(t, "preferences", "get", "c-42")
		wantAll(t, out, "c-42: locale fa-IR, time zone Asia/Tehran; email on file, no phone", "email    marketing      no        one_click  2026-06-10 12:00Z")
		cli(t, "preferences", "set", "c-42", "--email-marketing=false", "--sms-transactional=true")
		req := svc.last().(*notifierv1.SetPreferencesRequest)
		if len(req.GetPreferences()) != 2 || req.GetPreferences()[0].GetChannel() != notifierv1.Channel_CHANNEL_EMAIL || req.GetPreferences()[0].GetSubscribed() ||
			req.GetPreferences()[1].GetCategory() != notifierv1.Category_CATEGORY_TRANSACTIONAL || !req.GetPreferences()[1].GetSubscribed() {
			t.Errorf("only the flags given are sent: %v", req)
		}
		out = cli(t, "preferences", "get", "c-42", "--output", "json")
		var got struct{ TimeZone string }
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.TimeZone != "Asia/Tehran" {
			t.Errorf("json %v:\n%s", err, out)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"templates"}, "templates needs a command"},
			{[]string{"templates", "nope"}, `unknown templates command "nope"`},
			{[]string{"templates", "show"}, "want exactly one template key"},
			{[]string{"templates", "list", "--channel", "fax"}, `invalid value "fax" for flag -channel: want email, sms or webhook`},
			{[]string{"templates", "apply"}, "needs -f FILE"},
			{[]string{"templates", "preview", "winback_90", "--var", "nope=1"}, "--var nope: template winback_90 declares no such variable (it declares: coupon, total, due)"},
			{[]string{"templates", "preview", "winback_90", "--var", "total=12,50 EUR"}, "--var total (money)"},
			{[]string{"templates", "preview", "winback_90", "--var", "coupon=X:200%"}, "1-100"},
			{[]string{"templates", "preview", "nope", "--var", "a=1"}, `no template "nope" on any channel (retain templates list lists them)`},
			{[]string{"templates", "show", "nope"}, `no template "nope" on any channel (retain templates list lists them)`},
			{[]string{"templates", "show", "detractor_support_alert"}, `no email template "detractor_support_alert" (--channel defaults to email): "detractor_support_alert" is on webhook; pass --channel webhook`},
			{[]string{"deliveries", "list"}, "exactly one of --customer and --campaign"},
			{[]string{"deliveries", "list", "--customer", "a", "--campaign", "b"}, "exactly one of --customer and --campaign"},
			{[]string{"deliveries", "show", "nope"}, `no delivery "nope"`},
			{[]string{"preferences", "set", "c-42"}, "needs at least one of --email-marketing"},
			{[]string{"preferences", "set", "c-42", "--email-marketing", "false"}, `want exactly one customer id, got 2 arguments; "false" after --email-marketing is not its value: use --email-marketing=false`},
			{[]string{"preferences", "set", "--email-marketing", "false"}, `want a customer id, got "false"; "false" after --email-marketing is not its value: use --email-marketing=false`},
			{[]string{"preferences", "get", "c-42", "--output", "yaml"}, `--output "yaml"`},
		} {
			env, _, _ := testEnv(vars)
			err := run(ctx, env, tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "not found") > 1 {
				t.Errorf("%v: %v, want %q (and \"not found\" at most once)", tt.args, err, tt.want)
			}
		}
	})
}

// TestNotifierThroughDevStack drives the notifier of a real `retain dev`
// with the CLI: a customer arrives through ingest, a template is applied
// and previewed for them, a request is sent and lands in the dev outbox as
// an .eml file, its decision trail is shown, and the one-click unsubscribe
// link in that email, POSTed as a mail client does, is recorded in the
// customer's preferences.
func TestNotifierThroughDevStack(t *testing.T) {
	ctx, dir, state, out := startDevStack(t)
	outbox := filepath.Join(dir, "outbox")
	if abs, _ := filepath.Abs(outbox); !strings.Contains(out.String(), "outbox        "+abs) {
		t.Errorf("the banner does not show the outbox %s:\n%s", abs, out)
	}
	if _, err := os.Stat(filepath.Join(dir, devUnsubscribeFile)); err != nil {
		t.Errorf("unsubscribe secret not persisted: %v", err)
	}
	// The stack's --dir is not ./.retain, so commands run here do not find
	// it: the banner says so and gives the variables that reach it, which
	// the commands below run with.
	export := regexp.MustCompile(`(?m)^  export RETAIN_ADDR=(\S+) RETAIN_TOKEN=(\S+)$`).FindStringSubmatch(out.String())
	if export == nil || export[1] != state.GRPCAddr || export[2] != state.Token || !strings.Contains(out.String(), "retain commands do not find this stack by themselves") {
		t.Fatalf("the banner does not give RETAIN_ADDR=%s and the token:\n%s", state.GRPCAddr, out)
	}
	cli := func(args ...string) (string, error) {
		env, out, errOut := testEnv(map[string]string{"RETAIN_ADDR": export[1], "RETAIN_TOKEN": export[2]})
		err := run(ctx, env, args)
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		s, err := cli(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, s)
		}
		return s
	}

	// The customer, through the public API as a shop sends it.
	env, pubOut, pubErr := testEnv(map[string]string{"RETAIN_ADDR": state.GRPCAddr, "RETAIN_TOKEN": state.Token})
	env.stdin = strings.NewReader(`{"id":"cu-1","occurred_at":"2026-01-02T10:00:00Z","customer_updated":{"customer_id":"c-fa","email":"shirin@example.com",` +
		`"first_name":"Shirin","locale":"fa-IR","time_zone":"Asia/Tehran","consent":{"email_marketing":"CONSENT_STATE_GRANTED"}}}` + "\n")
	if err := run(ctx, env, []string{"publish", "-", "--quiet"}); err != nil || !strings.Contains(pubOut.String(), "1 accepted") {
		t.Fatalf("publish: %v\n%s%s", err, pubOut, pubErr)
	}

	file := filepath.Join(t.TempDir(), "order.yaml")
	os.WriteFile(file, []byte(`key: order_thanks
channel: email
description: thanks for an order
variables:
  - {name: total, type: money}
variants:
  - locale: ""
    subject: Thanks, {{.customer.first_name}}
    html: <p>Your order of {{money .total}} is on its way.</p>
    text: Your order of {{money .total}} is on its way.
  - locale: fa
    subject: سپاس، {{.customer.first_name}}
    html: <p>سفارش شما به مبلغ {{money .total}} در راه است.</p>
    text: سفارش شما به مبلغ {{money .total}} در راه است.
`), 0o644)
	if s := must("templates", "apply", "-f", file); !strings.Contains(s, "template order_thanks (email) created: version 1") {
		t.Fatalf("apply:\n%s", s)
	}
	// The same file again stores no new version; a changed one does.
	if s := must("templates", "apply", "-f", file); !strings.Contains(s, "template order_thanks (email) unchanged: version 1") {
		t.Fatalf("the same file again:\n%s", s)
	}
	if b, err := os.ReadFile(file); err != nil || os.WriteFile(file, []byte(strings.Replace(string(b), "thanks for an order", "thanks for your order", 1)), 0o644) != nil {
		t.Fatal(err)
	}
	if s := must("templates", "apply", "-f", file); !strings.Contains(s, "updated: version 2") {
		t.Fatalf("second apply:\n%s", s)
	}
	if s := must("templates", "list"); !strings.Contains(s, "order_thanks") || !strings.Contains(s, "winback_90") {
		t.Fatalf("list (own and default templates):\n%s", s)
	}
	// The preview waits for the contact projection: the customer arrives
	// asynchronously.
	var preview string
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := cli("templates", "preview", "order_thanks", "--customer", "c-fa", "--var", "total=1234.50 EUR")
		if err == nil {
			preview = s
			break
		}
		if time.Now().After(deadline) || !strings.Contains(s+err.Error(), "not found") {
			t.Fatalf("preview: %v\n%s", err, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"variant fa, direction rtl", "Subject: سپاس، Shirin", `dir="rtl"`, "۱٬۲۳۴٫۵۰"} {
		if !strings.Contains(preview, want) {
			t.Errorf("preview lacks %q:\n%s", want, preview)
		}
	}
	// Without --customer, the default template renders for the sample
	// customer, not for nobody ("Hi ,").
	preview = must("templates", "preview", "winback_90")
	for _, want := range []string{"# for a SAMPLE customer", "Subject: We miss you, Sample\n", "Hi Sample,"} {
		if !strings.Contains(preview, want) {
			t.Errorf("preview without --customer lacks %q:\n%s", want, preview)
		}
	}

	// A transactional request, as the campaign service publishes them.
	b, err := bus.Connect(ctx, bus.Config{URL: state.NATSURL, Name: t.Name()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	req := &notifierv1.NotificationRequested{RequestId: "orders/o-1", TenantId: devTenant, CustomerId: "c-fa", Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, Priority: notifierv1.Priority_PRIORITY_NORMAL, TemplateKey: "order_thanks",
		Variables:   map[string]*notifierv1.TemplateValue{"total": {Value: &notifierv1.TemplateValue_Money{Money: &eventsv1.Money{AmountMinor: 123450, Currency: "EUR"}}}},
		RequestedAt: timestamppb.Now()}
	data, _ := proto.Marshal(req)
	for range 2 { // a duplicate publish delivers once
		if _, err := b.Publish(ctx, bus.Message{Subject: bus.NotificationSubject(devTenant, bus.TypeNotificationRequested), ID: devTenant + "/" + req.RequestId,
			Type: bus.TypeNotificationRequested, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	var show string
	deadline = time.Now().Add(30 * time.Second)
	for {
		show, err = cli("deliveries", "show", "orders/o-1")
		if err == nil && strings.Contains(show, "orders/o-1: SENT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery not sent: %v\n%s", err, show)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"order_thanks v2, variant fa", "decision trail:", "consent", "send"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
	if s := must("deliveries", "list", "--customer", "c-fa"); !strings.Contains(s, "orders/o-1") || strings.Count(s, "orders/o-1") != 1 {
		t.Errorf("list:\n%s", s)
	}
	emls, _ := filepath.Glob(filepath.Join(outbox, devTenant, "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("outbox holds %v", emls)
	}
	f, err := os.Open(emls[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msg, err := mail.ReadMessage(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if to, err := mail.ParseAddress(msg.Header.Get("To")); err != nil || to.Address != "shirin@example.com" || msg.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Errorf("headers %v", msg.Header)
	}

	// One-click unsubscribe: the mail client POSTs to the List-Unsubscribe
	// URL, which must be the dev stack's own HTTP server.
	link := strings.Trim(msg.Header.Get("List-Unsubscribe"), "<>")
	if !strings.HasPrefix(link, "http://"+state.HTTPAddr+"/v1/unsubscribe?t=") {
		t.Fatalf("unsubscribe link %q does not point at the dev HTTP server %s", link, state.HTTPAddr)
	}
	resp, err := http.PostForm(link, url.Values{"List-Unsubscribe": {"One-Click"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %s", resp.Status)
	}
	if s := must("preferences", "get", "c-fa"); !regexp.MustCompile(`email\s+marketing\s+no\s+one_click`).MatchString(s) {
		t.Errorf("preferences after one-click unsubscribe:\n%s", s)
	}
	must("preferences", "set", "c-fa", "--email-marketing=true")
	if s := must("preferences", "get", "c-fa"); !regexp.MustCompile(`email\s+marketing\s+yes\s+api`).MatchString(s) {
		t.Errorf("preferences after set:\n%s", s)
	}
}

// TestTemplatesApplyWholeThroughDevStack: `retain templates apply` has the
// notifier check every template of the file before it saves any. A file
// with refused templates saves none, new or updated, and the error names
// each refused template with its fields; once fixed, all are saved.
func TestTemplatesApplyWholeThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	cli := stackCLI(ctx, state)
	file := filepath.Join(t.TempDir(), "templates.yaml")
	apply := func(docs ...string) (string, error) {
		t.Helper()
		if err := os.WriteFile(file, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		return cli("templates", "apply", "-f", file)
	}
	const (
		first     = "key: first_ok\nchannel: email\nvariants:\n  - locale: \"\"\n    subject: Hi\n    text: Hello\n"
		firstEdit = "key: first_ok\nchannel: email\nvariants:\n  - locale: \"\"\n    subject: Hi again\n    text: Hello\n"
		// No default variant.
		noDefault = "key: no_default\nchannel: sms\nvariants:\n  - locale: fa\n    body: سلام\n"
		// A variable the template does not declare.
		undeclared = "key: undeclared\nchannel: email\nvariants:\n  - locale: \"\"\n    subject: Hi\n    text: \"{{.coupon}}\"\n"
		declared   = "key: undeclared\nchannel: email\nvariables:\n  - {name: coupon, type: coupon}\nvariants:\n  - locale: \"\"\n    subject: Hi\n    text: \"{{.coupon}}\"\n"
		fixed      = "key: no_default\nchannel: sms\nvariants:\n  - locale: \"\"\n    body: Hello\n"
	)

	got, err := apply(first, noDefault, undeclared)
	if err == nil {
		t.Fatalf("a file with two bad templates was applied:\n%s", got)
	}
	for _, want := range []string{"the notifier refused 2 of the 3 templates of " + file + "; none saved",
		"template no_default (sms): invalid request: template.variants: the default variant", "template undeclared (email): invalid request: template.variants[0].text: refers to {{.coupon}}"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "first_ok") || got != "" {
		t.Errorf("the good template is reported:\n%v\n%s", err, got)
	}
	if got, err := cli("templates", "show", "first_ok"); err == nil {
		t.Fatalf("the good template of a refused file was saved:\n%s", got)
	}

	// Once fixed, every template is saved.
	got, err = apply(first, fixed, declared)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, got)
	}
	for _, want := range []string{"template first_ok (email) created: version 1", "template no_default (sms) created: version 1", "template undeclared (email) created: version 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("apply output lacks %q:\n%s", want, got)
		}
	}

	// An update refused with a bad new template: the update is not saved.
	if got, err := apply(firstEdit, undeclared); err == nil || !strings.Contains(err.Error(), "refused 1 of the 2") {
		t.Fatalf("an update with a bad template: %v\n%s", err, got)
	}
	if got, err := cli("templates", "show", "first_ok"); err != nil || !strings.Contains(got, "version 1") || strings.Contains(got, "Hi again") {
		t.Fatalf("the update of a refused file was saved: %v\n%s", err, got)
	}
}

// TestNotifierHintsThroughDevStack: what the templates and preferences
// commands say when what was asked for is not quite there, on a real
// notifier. A key on other channels than --channel's names them and the
// flag; a key on several channels shown without --channel names the
// others; a missing version names the latest; a customer the notifier has
// nothing on is called unknown, its defaults what would apply; and a
// refused request reads "invalid request:" once.
func TestNotifierHintsThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	cli := stackCLI(ctx, state)
	file := filepath.Join(t.TempDir(), "templates.yaml")
	os.WriteFile(file, []byte("key: greet\nchannel: email\nvariants:\n  - locale: \"\"\n    subject: Hi\n    text: Hello\n---\n"+
		"key: greet\nchannel: sms\nvariants:\n  - locale: \"\"\n    body: Hello\n---\n"+
		"key: nudge\nchannel: sms\nvariants:\n  - locale: \"\"\n    body: Come back\n---\n"+
		"key: nudge\nchannel: webhook\nvariants:\n  - locale: \"\"\n    body: \"{}\"\n"), 0o644)
	if got, err := cli("templates", "apply", "-f", file); err != nil {
		t.Fatalf("apply: %v\n%s", err, got)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"templates", "show", "nudge"}, `no email template "nudge" (--channel defaults to email): "nudge" is on sms and webhook; pass --channel sms or --channel webhook`},
		{[]string{"templates", "show", "greet", "--channel", "webhook"}, `no webhook template "greet": "greet" is on email and sms; pass --channel email or --channel sms`},
		{[]string{"templates", "preview", "nudge"}, `no email template "nudge" (--channel defaults to email): "nudge" is on sms and webhook; pass --channel sms or --channel webhook`},
		{[]string{"templates", "show", "nope"}, `no template "nope" on any channel (retain templates list lists them)`},
		{[]string{"templates", "show", "greet", "--version", "7"}, `email template "greet" has no version 7: its latest is 1`},
		{[]string{"templates", "show", "greet", "--version", "-1"}, `invalid request: version: must not be negative (0: the latest)`},
	} {
		got, err := cli(tt.args...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%v: %v, want %q\n%s", tt.args, err, tt.want, got)
		}
	}
	got, err := cli("templates", "show", "greet")
	if err != nil || !strings.Contains(got, "# greet (email): version 1") || !strings.Contains(got, "# greet is on sms too: --channel sms\n") {
		t.Errorf("show of a key on two channels without --channel: %v\n%s", err, got)
	}
	if got, err := cli("templates", "show", "greet", "--channel", "sms"); err != nil || !strings.Contains(got, "# greet (sms)") || strings.Contains(got, "too:") {
		t.Errorf("show with --channel names no other channel: %v\n%s", err, got)
	}

	got, err = cli("preferences", "get", "c-nobody")
	if err != nil || !strings.Contains(got, "c-nobody: unknown to the notifier (no details or consent from customer.updated events, no preference set); these defaults would apply:") ||
		!regexp.MustCompile(`email\s+marketing\s+no\s+default`).MatchString(got) {
		t.Errorf("preferences of a customer the notifier never heard of: %v\n%s", err, got)
	}
	if _, err := cli("preferences", "set", "c-chose", "--sms-marketing=false"); err != nil {
		t.Fatal(err)
	}
	if got, err := cli("preferences", "get", "c-chose"); err != nil || strings.Contains(got, "unknown to the notifier") || !regexp.MustCompile(`sms\s+marketing\s+no\s+api`).MatchString(got) {
		t.Errorf("preferences of a customer with a choice on file: %v\n%s", err, got)
	}
}
