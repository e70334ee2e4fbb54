package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
)

// TestCampaignCommandsThroughDevStack drives `retain playbooks` and
// `retain campaigns` against a running dev stack: install, list, show the
// file form, edit and apply it as a new version, reject a bad file naming
// the field, preview, pause, resume and report.
func TestCampaignCommandsThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	cli := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		env, out, errOut := testEnv(nil)
		err := run(ctx, env, append(args, "--addr", state.GRPCAddr, "--token", state.Token))
		return out.String() + errOut.String(), err
	}
	must := func(t *testing.T, want string, args ...string) string {
		t.Helper()
		got, err := cli(t, args...)
		if err != nil || !strings.Contains(got, want) {
			t.Fatalf("retain %s: %v\nwant %q in:\n%s", strings.Join(args, " "), err, want, got)
		}
		return got
	}

	must(t, "detractor-recovery", "playbooks", "list")
	must(t, "installed playbook win-back as campaign win-back (active)", "playbooks", "install", "win-back")
	if _, err := cli(t, "playbooks", "install", "win-back"); err == nil || !strings.Contains(err.Error(), "already exists") || strings.Count(err.Error(), "already exists") != 1 {
		t.Fatalf("second install: %v", err)
	}
	must(t, "win-back", "campaigns", "list")
	file := must(t, "template_key: winback_90", "campaigns", "show", "win-back")

	path := filepath.Join(t.TempDir(), "win-back.yaml")
	edited := strings.Replace(file, "holdout_percent: 10", "holdout_percent: 20", 1)
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "campaign win-back updated: version 2, active", "campaigns", "apply", "-f", path)
	must(t, "holdout_percent: 20", "campaigns", "show", "win-back")
	must(t, "holdout_percent: 10", "campaigns", "show", "win-back", "--version", "1")

	bad := strings.Replace(edited, "holdout_percent: 20", "holdout_percent: 95", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := cli(t, "campaigns", "apply", "-f", path); err == nil || !strings.Contains(err.Error(), "campaign.holdout_percent: 95 is outside 0-90") {
		t.Fatalf("bad apply: %v\n%s", err, got)
	}
	newFile := filepath.Join(t.TempDir(), "new.yaml")
	if err := os.WriteFile(newFile, []byte(strings.Replace(edited, "id: win-back", "id: win-back-copy", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "campaign win-back-copy created: version 1", "campaigns", "apply", "-f", newFile)
	must(t, "0 customers would enter now", "campaigns", "preview", "win-back")

	// A file's state creates the campaign in it; output-only fields are
	// refused by name, and an update does not change the state.
	qa := strings.Replace(edited, "id: win-back", "id: qa-state", 1)
	if err := os.WriteFile(newFile, []byte(qa+"state: CAMPAIGN_STATE_PAUSED\nversion: 7\nplaybook: win-back\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := cli(t, "campaigns", "apply", "-f", newFile); err == nil || !strings.Contains(err.Error(), "version: is output only") ||
		!strings.Contains(err.Error(), "playbook: is output only") || strings.Contains(got, "created") {
		t.Fatalf("apply with output-only fields: %v\n%s", err, got)
	}
	if err := os.WriteFile(newFile, []byte(qa+"state: CAMPAIGN_STATE_PAUSED\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "campaign qa-state created: version 1, paused", "campaigns", "apply", "-f", newFile)
	must(t, "the campaign is paused and enrolls nobody until it is resumed", "campaigns", "preview", "qa-state")
	if err := os.WriteFile(newFile, []byte(strings.Replace(qa, "holdout_percent: 20", "holdout_percent: 30", 1)+"state: CAMPAIGN_STATE_ACTIVE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := cli(t, "campaigns", "apply", "-f", newFile); err == nil || !strings.Contains(err.Error(), "campaign.state: is CAMPAIGN_STATE_ACTIVE, but the campaign is paused") ||
		!strings.Contains(err.Error(), "retain campaigns resume qa-state") {
		t.Fatalf("apply changing the state: %v\n%s", err, got)
	}
	// What show prints applies again, edited, whatever the state.
	shown := must(t, "# qa-state: version 1, paused", "campaigns", "show", "qa-state")
	if err := os.WriteFile(newFile, []byte(strings.Replace(shown, "holdout_percent: 20", "holdout_percent: 30", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "campaign qa-state updated: version 2, paused", "campaigns", "apply", "-f", newFile)
	must(t, "# qa-state: version 1, an earlier one: the campaign is at version 2, paused", "campaigns", "show", "qa-state", "--version", "1")
	must(t, "# qa-state: version 2, paused", "campaigns", "show", "qa-state", "--version", "2")
	// JSON is read strictly, with the line and column of a problem.
	jsonFile := filepath.Join(t.TempDir(), "qa.json")
	if err := os.WriteFile(jsonFile, []byte("{\n  \"id\": \"qa-json\",\n  \"name\": \"QA\",\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "campaigns", "apply", "-f", jsonFile); err == nil || !strings.Contains(err.Error(), "qa.json: campaign file: line 4, column 1: invalid character '}'") {
		t.Fatalf("JSON with a trailing comma: %v", err)
	}
	if _, err := cli(t, "playbooks", "install", "nope"); err == nil || !strings.Contains(err.Error(), `playbook "nope": not found; the playbooks are `) ||
		!strings.Contains(err.Error(), "win-back") {
		t.Fatalf("install nope: %v", err)
	}
	must(t, "win-back is paused", "campaigns", "pause", "win-back")
	must(t, "win-back is active", "campaigns", "resume", "win-back")
	must(t, "nobody has entered yet", "campaigns", "report", "win-back")
	must(t, `"nobody has entered yet"`, "campaigns", "report", "win-back", "--output", "json")
	must(t, "win-back-copy is archived", "campaigns", "archive", "win-back-copy")

	// Not found is said once; a bad token still gets the scope hint.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"campaigns", "report", "nope"}, `campaign "nope": not found`},
		{[]string{"campaigns", "show", "nope"}, `campaign "nope": not found`},
		{[]string{"deliveries", "show", "nope"}, `delivery "nope" not found`},
		{[]string{"churn", "risk", "nobody"}, `not found: nothing is known about customer "nobody"`},
	} {
		if _, err := cli(t, tt.args...); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("retain %s: %v, want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	env, _, _ := testEnv(nil)
	if err := run(ctx, env, []string{"campaigns", "list", "--addr", state.GRPCAddr, "--token", "bad"}); err == nil ||
		!strings.HasPrefix(err.Error(), "unauthenticated: ") || !strings.Contains(err.Error(), "(check --token / RETAIN_TOKEN: this command needs the scope read (campaigns:write to change campaigns))") {
		t.Errorf("a bad token: %v", err)
	}
}

// cannedCampaigns answers the CampaignService calls whose output needs
// figures a fresh dev stack does not have: a report with requests still
// undecided, and a customer's enrollments.
type cannedCampaigns struct {
	campaignv1.UnimplementedCampaignServiceServer
}

func (cannedCampaigns) GetReport(_ context.Context, r *campaignv1.GetReportRequest) (*campaignv1.GetReportResponse, error) {
	rep := &campaignv1.Report{CampaignId: r.GetId(), HoldoutPercent: 10, Enrolled: 1300, Treated: 1170, Holdout: 130, Active: 40,
		MessagesRequested: 1221, MessagesDelivered: 823, MessagesSuppressed: 224}
	if r.GetId() == "settled" {
		rep.MessagesRequested = 1047
	}
	return &campaignv1.GetReportResponse{Report: rep}, nil
}

func (cannedCampaigns) ListCustomerEnrollments(_ context.Context, r *campaignv1.ListCustomerEnrollmentsRequest) (*campaignv1.ListCustomerEnrollmentsResponse, error) {
	at := func(h int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 6, 10, h, 39, 0, 0, time.UTC))
	}
	all := []*campaignv1.Enrollment{
		{CampaignId: "win-back", CampaignVersion: 2, CustomerId: r.GetCustomerId(), Status: "ACTIVE", CurrentStep: "reminder",
			EnteredAt: at(14), NextAt: timestamppb.New(time.Date(2026, 6, 10, 18, 39, 27, 0, time.UTC)), StepsDone: []string{"first"}},
		{CampaignId: "thank-you", CampaignVersion: 1, CustomerId: r.GetCustomerId(), Status: "COMPLETED",
			EnteredAt: at(9), ConvertedAt: at(16), StepsDone: []string{"thanks"}},
		{CampaignId: "loyalty-reward", CampaignVersion: 1, CustomerId: r.GetCustomerId(), Status: "CONVERTED",
			EnteredAt: at(8), ConvertedAt: at(11), StepsDone: []string{"coupon", "reward"}},
	}
	if r.GetCampaignId() != "" {
		all = slices.DeleteFunc(all, func(e *campaignv1.Enrollment) bool { return e.GetCampaignId() != r.GetCampaignId() })
	}
	// Pages as the service does, of at most 2 here so that the command
	// follows them; the token is the next index.
	from := 0
	if r.GetPageToken() != "" {
		from, _ = strconv.Atoi(r.GetPageToken())
	}
	to := min(from+int(r.GetPageSize()), from+2, len(all))
	resp := &campaignv1.ListCustomerEnrollmentsResponse{Enrollments: all[from:to]}
	if to < len(all) {
		resp.NextPageToken = strconv.Itoa(to)
	}
	return resp, nil
}

// TestCampaignReportAndEnrollments checks that the report's message
// figures add up (the undecided rest is shown when there is one), that
// enrollment times are marked UTC like the other commands' times, and
// that a converted enrollment shows its conversion.
func TestCampaignReportAndEnrollments(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	campaignv1.RegisterCampaignServiceServer(srv, cannedCampaigns{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	vars := map[string]string{"RETAIN_ADDR": lis.Addr().String(), "RETAIN_TOKEN": "tok"}
	cli := func(args ...string) string {
		t.Helper()
		env, out, errOut := testEnv(vars)
		if err := run(context.Background(), env, args); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out.String()
	}
	if out := cli("campaigns", "report", "win-back"); !strings.Contains(out, "  messages   1221 requested, 823 delivered, 0 failed, 224 suppressed, 174 pending (deferred or in flight)\n") {
		t.Errorf("report with undecided requests:\n%s", out)
	}
	if out := cli("campaigns", "report", "settled"); !strings.Contains(out, "  messages   1047 requested, 823 delivered, 0 failed, 224 suppressed\n") {
		t.Errorf("report with every request decided:\n%s", out)
	}
	out := cli("campaigns", "enrollments", "c-42")
	if !strings.Contains(out, "2026-06-10 14:39Z") || !strings.Contains(out, "reminder at 2026-06-10 18:39:27Z") {
		t.Errorf("enrollments without the UTC marker:\n%s", out)
	}
	// A conversion shows in the table, not only in --output json.
	if !strings.Contains(out, "completed, converted 2026-06-10 16:39Z") || !strings.Contains(out, "  converted 2026-06-10 11:39Z  ") {
		t.Errorf("enrollments without their conversion:\n%s", out)
	}
	if strings.Contains(out, "more:") {
		t.Errorf("a listing within the limit offers more:\n%s", out)
	}
	// Past the limit the listing says how to go on, and going on lists
	// the rest, each once.
	out = cli("campaigns", "enrollments", "c-42", "--limit", "2")
	if !strings.Contains(out, "win-back") || !strings.Contains(out, "thank-you") || strings.Contains(out, "loyalty-reward") || !strings.HasSuffix(out, moreOfTheSame+" --page-token 2\n") {
		t.Errorf("the first 2 enrollments:\n%s", out)
	}
	out = cli("campaigns", "enrollments", "c-42", "--limit", "2", "--page-token", "2")
	if strings.Contains(out, "win-back") || !strings.Contains(out, "loyalty-reward") || strings.Contains(out, "more:") {
		t.Errorf("the enrollments after the first 2:\n%s", out)
	}
	// Small pages are followed up to the limit.
	var all campaignv1.ListCustomerEnrollmentsResponse
	if err := protojson.Unmarshal([]byte(cli("campaigns", "enrollments", "c-42", "--output", "json")), &all); err != nil ||
		len(all.GetEnrollments()) != 3 || all.GetNextPageToken() != "" {
		t.Errorf("json of every enrollment: %v (%v)", &all, err)
	}
	if out := cli("campaigns", "enrollments", "c-42", "--campaign", "thank-you"); strings.Contains(out, "win-back") || !strings.Contains(out, "thank-you") {
		t.Errorf("one campaign's enrollments:\n%s", out)
	}
	if out := cli("campaigns", "enrollments", "c-42", "--campaign", "none"); out != "no enrollments\n" {
		t.Errorf("no enrollments:\n%s", out)
	}
	env, _, _ := testEnv(vars)
	if err := run(context.Background(), env, []string{"campaigns", "enrollments", "c-42", "--limit", "0"}); err == nil || !strings.Contains(err.Error(), `invalid value "0" for flag -limit: must be 1-10000`) {
		t.Errorf("--limit 0: %v", err)
	}
}

// TestLiftInReportAndDemo: `campaigns report` and the demo's campaign
// table say the same of a lift: the interval, and that no conversion was
// seen in either group when none was (not +0.0 alone, nor only "no goal
// reached yet"). With an empty group there is no lift to give.
func TestLiftInReportAndDemo(t *testing.T) {
	for _, tt := range []struct {
		name   string
		r      *campaignv1.Report
		lift   string // in both outputs
		report string // printReport's line for it
	}{
		{
			name:   "no conversion yet",
			r:      &campaignv1.Report{CampaignId: "churn-outreach", Enrolled: 552, Treated: 491, Holdout: 61, HoldoutPercent: 10, AbsoluteLiftLow: -0.059, AbsoluteLiftHigh: 0.008},
			lift:   "+0.0 points (95% CI -5.9 to +0.8): no conversion in either group yet",
			report: "  lift       +0.0 points (95% CI -5.9 to +0.8): no conversion in either group yet\n",
		},
		{
			name: "conversions",
			r: &campaignv1.Report{CampaignId: "thank-you", Enrolled: 80, Treated: 75, Holdout: 5, HoldoutPercent: 5, ConversionsTreated: 6,
				ConversionRateTreated: 0.08, AbsoluteLift: 0.08, AbsoluteLiftLow: -0.357, AbsoluteLiftHigh: 0.164},
			lift:   "+8.0 points (95% CI -35.7 to +16.4)",
			report: "  lift       +8.0 points (95% CI -35.7 to +16.4)\n",
		},
		{
			name: "no holdout",
			r:    &campaignv1.Report{CampaignId: "vip", Enrolled: 3, Treated: 3, Note: "no holdout members yet: lift cannot be measured"},
			lift: "n/a: no holdout members yet: lift cannot be measured",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var report, demo strings.Builder
			printReport(&report, tt.r)
			printDemoCampaignRow(&demo, tt.r)
			if !strings.HasSuffix(demo.String(), "  "+tt.lift+"\n") {
				t.Errorf("demo row %q, want the lift %q", demo.String(), tt.lift)
			}
			if tt.report == "" {
				if strings.Contains(report.String(), "lift   ") {
					t.Errorf("report gives a lift:\n%s", report.String())
				}
				return
			}
			if !strings.Contains(report.String(), tt.report) {
				t.Errorf("report lacks %q:\n%s", tt.report, report.String())
			}
		})
	}
}
