package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
)

const campaignsUsage = `usage: retain campaigns COMMAND [flags]

Commands:
  list                    the campaigns (--all includes archived ones)
  show ID                 a campaign in its file form (--version N for an older one)
  apply -f FILE           create the campaign in FILE (YAML, or JSON if named .json or starting
                          with {"), or update it to a new version; "state: CAMPAIGN_STATE_PAUSED"
                          in the file creates it paused (pause, resume and archive change it later)
  pause ID | resume ID | archive ID
  preview ID | -f FILE    who would enter now, sending nothing
  report ID               enrolled, messages, conversions and lift vs the holdout
  enrollments CUSTOMER    a customer's enrollments, newest first (--campaign ID for one
                          campaign's; --limit N, default 100; then the next page's
                          --page-token T, with the same command and flags)

Every command takes --output json (the gRPC response as protojson), --addr
and --token.`

const playbooksUsage = `usage: retain playbooks list | install NAME [--id ID] [--paused]`

// campaignAPI is the CampaignService the campaigns and playbooks commands
// call.
var campaignAPI = serviceAPI[campaignv1.CampaignServiceClient]{
	newClient: campaignv1.NewCampaignServiceClient,
	name:      "campaign",
	scopes:    auth.ScopeRead + " (" + auth.ScopeCampaignsWrite + " to change campaigns)",
}

// runCampaigns is `retain campaigns ...`.
func runCampaigns(ctx context.Context, env *cliEnv, args []string) error {
	state := func(cmd string) func([]string) error {
		return func(a []string) error { return campaignsState(ctx, env, cmd, a) }
	}
	return subcommands(env, "campaigns", campaignsUsage, args, map[string]func([]string) error{
		"list":        func(a []string) error { return campaignsList(ctx, env, a) },
		"show":        func(a []string) error { return campaignsShow(ctx, env, a) },
		"apply":       func(a []string) error { return campaignsApply(ctx, env, a) },
		"pause":       state("pause"),
		"resume":      state("resume"),
		"archive":     state("archive"),
		"preview":     func(a []string) error { return campaignsPreview(ctx, env, a) },
		"report":      func(a []string) error { return campaignsReport(ctx, env, a) },
		"enrollments": func(a []string) error { return campaignsEnrollments(ctx, env, a) },
	})
}

func campaignsList(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "campaigns list", "campaigns list [--all] [--output text|json]")
	all := f.fs.Bool("all", false, "include archived campaigns")
	if err := f.parseNone(args, "campaigns list", ""); err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.ListCampaignsResponse, error) {
		return c.ListCampaigns(ctx, &campaignv1.ListCampaignsRequest{IncludeArchived: *all})
	}, func(w io.Writer, resp *campaignv1.ListCampaignsResponse) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tVERSION\tTRIGGER\tHOLDOUT\tNAME")
		for _, cp := range resp.GetCampaigns() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d%%\t%s\n", cp.GetId(), stateWord(cp.GetState()), cp.GetVersion(), triggerText(cp.GetTrigger()), cp.GetHoldoutPercent(), cp.GetName())
		}
		return tw.Flush()
	})
}

func stateWord(s campaignv1.CampaignState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CAMPAIGN_STATE_"))
}

func triggerText(t *campaignv1.Trigger) string {
	switch {
	case t.GetEvent() != "":
		return t.GetEvent()
	case t.GetSchedule() != nil:
		return "every " + t.GetSchedule().GetEvery()
	case t.GetChurnBand() != 0:
		return "churn band -> " + strings.ToLower(strings.TrimPrefix(t.GetChurnBand().String(), "RISK_BAND_"))
	}
	return "-"
}

func campaignsShow(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "campaigns show", "campaigns show ID [--version N] [--output text|json]")
	version := f.fs.Int("version", 0, "an older version (default: the current one)")
	id, err := f.parseOne(args, "campaign id")
	if err != nil {
		return err
	}
	// The state is the campaign's, not the version's: an older version
	// is shown with the current one's number beside it.
	var current int32
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.GetCampaignResponse, error) {
		resp, err := c.GetCampaign(ctx, &campaignv1.GetCampaignRequest{Id: id, Version: int32(*version)})
		if err == nil && *version != 0 && *f.output != "json" {
			if cur, err := c.GetCampaign(ctx, &campaignv1.GetCampaignRequest{Id: id}); err == nil {
				current = cur.GetCampaign().GetVersion()
			}
		}
		return resp, notFoundAs(err, fmt.Sprintf("campaign %q", id))
	}, func(w io.Writer, resp *campaignv1.GetCampaignResponse) error {
		cp := resp.GetCampaign()
		switch {
		case *version == 0 || current == cp.GetVersion():
			fmt.Fprintf(w, "# %s: version %d, %s", cp.GetId(), cp.GetVersion(), stateWord(cp.GetState()))
		case current > 0:
			fmt.Fprintf(w, "# %s: version %d, an earlier one: the campaign is at version %d, %s", cp.GetId(), cp.GetVersion(), current, stateWord(cp.GetState()))
		default:
			fmt.Fprintf(w, "# %s: version %d; the campaign is %s", cp.GetId(), cp.GetVersion(), stateWord(cp.GetState()))
		}
		if cp.GetPlaybook() != "" {
			fmt.Fprintf(w, ", from playbook %s", cp.GetPlaybook())
		}
		fmt.Fprintln(w, "\n# Edit and run: retain campaigns apply -f FILE")
		return writeCampaignFile(w, cp)
	})
}

// writeCampaignFile writes the editable part of a campaign as YAML (Encode
// leaves out what the service sets): not its state either, so that applying
// the file later keeps whatever state the campaign is in then.
func writeCampaignFile(w io.Writer, cp *campaignv1.Campaign) error {
	c := proto.Clone(cp).(*campaignv1.Campaign)
	c.State = 0
	b, err := campaignfile.Encode(c)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readCampaignFile(env *cliEnv, path string) (*campaignv1.Campaign, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(env.stdin, campaignfile.MaxBytes+1))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	c, err := campaignfile.DecodeFile(path, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func campaignsApply(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "campaigns apply", "campaigns apply -f FILE [--output text|json]")
	file := f.fs.String("f", "", "campaign file, YAML or JSON (- for stdin)")
	if err := f.parseNone(args, "campaigns apply", "the file goes after -f"); err != nil {
		return err
	}
	if *file == "" {
		f.fs.Usage()
		return usagef("campaigns apply needs -f FILE")
	}
	cp, err := readCampaignFile(env, *file)
	if err != nil {
		return err
	}
	verb := "updated"
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.Campaign, error) {
		up, err := c.UpdateCampaign(ctx, &campaignv1.UpdateCampaignRequest{Campaign: cp})
		if status.Code(err) != codes.NotFound {
			if up.GetUnchanged() {
				verb = "unchanged"
			}
			return up.GetCampaign(), err
		}
		verb = "created"
		cr, err := c.CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: cp})
		return cr.GetCampaign(), err
	}, func(w io.Writer, saved *campaignv1.Campaign) error {
		fmt.Fprintf(w, "campaign %s %s: version %d, %s\n", saved.GetId(), verb, saved.GetVersion(), stateWord(saved.GetState()))
		return nil
	})
}

func campaignsState(ctx context.Context, env *cliEnv, cmd string, args []string) error {
	f := newCommandFlags(env, "campaigns "+cmd, "campaigns "+cmd+" ID [--output text|json]")
	id, err := f.parseOne(args, "campaign id")
	if err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.Campaign, error) {
		switch cmd {
		case "pause":
			r, err := c.PauseCampaign(ctx, &campaignv1.PauseCampaignRequest{Id: id})
			return r.GetCampaign(), err
		case "resume":
			r, err := c.ResumeCampaign(ctx, &campaignv1.ResumeCampaignRequest{Id: id})
			return r.GetCampaign(), err
		}
		r, err := c.ArchiveCampaign(ctx, &campaignv1.ArchiveCampaignRequest{Id: id})
		return r.GetCampaign(), err
	}, func(w io.Writer, cp *campaignv1.Campaign) error {
		fmt.Fprintf(w, "campaign %s is %s\n", cp.GetId(), stateWord(cp.GetState()))
		return nil
	})
}

func campaignsPreview(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "campaigns preview", "campaigns preview ID | -f FILE [--limit N] [--output text|json]")
	file := f.fs.String("f", "", "preview an unsaved campaign file instead")
	// 1-1000 is the service's range (PreviewAudienceRequest.limit); 0 would
	// quietly mean its default of 20.
	limit := valueFlag(f.fs, "limit", "20", "customer ids to show, 1-1000", intIn(1, 1000))
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	req := &campaignv1.PreviewAudienceRequest{Limit: int32(*limit)}
	if *file != "" {
		if len(pos) != 0 {
			return usagef("campaigns preview takes a campaign id or -f FILE, not both")
		}
		if req.Campaign, err = readCampaignFile(env, *file); err != nil {
			return err
		}
	} else if req.Id, err = oneArg(pos, "campaign id"); err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.PreviewAudienceResponse, error) {
		return c.PreviewAudience(ctx, req)
	}, func(w io.Writer, resp *campaignv1.PreviewAudienceResponse) error {
		fmt.Fprintf(w, "%d customers would enter now (%s); nothing was sent\n", resp.GetCount(), resp.GetNote())
		for _, id := range resp.GetCustomerIds() {
			fmt.Fprintf(w, "  %s\n", id)
		}
		return nil
	})
}

func campaignsReport(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "campaigns report", "campaigns report ID [--output text|json]")
	id, err := f.parseOne(args, "campaign id")
	if err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.GetReportResponse, error) {
		resp, err := c.GetReport(ctx, &campaignv1.GetReportRequest{Id: id})
		return resp, notFoundAs(err, fmt.Sprintf("campaign %q", id))
	}, func(w io.Writer, resp *campaignv1.GetReportResponse) error {
		printReport(w, resp.GetReport())
		return nil
	})
}

// printReport writes a campaign report for people.
func printReport(w io.Writer, r *campaignv1.Report) {
	fmt.Fprintf(w, "Campaign %s: %d enrolled (%d treated, %d in the %d%% holdout), %d still running\n",
		r.GetCampaignId(), r.GetEnrolled(), r.GetTreated(), r.GetHoldout(), r.GetHoldoutPercent(), r.GetActive())
	fmt.Fprintf(w, "  messages   %d requested, %d delivered, %d failed, %d suppressed",
		r.GetMessagesRequested(), r.GetMessagesDelivered(), r.GetMessagesFailed(), r.GetMessagesSuppressed())
	// The report has no count of its own for requests the notifier has
	// not decided yet (deferred by quiet hours or a frequency cap, or in
	// flight): they are the rest, so that the figures add up.
	if pending := r.GetMessagesRequested() - r.GetMessagesDelivered() - r.GetMessagesFailed() - r.GetMessagesSuppressed(); pending > 0 {
		fmt.Fprintf(w, ", %d pending (deferred or in flight)", pending)
	}
	fmt.Fprintln(w)
	if r.GetCouponsIssued() > 0 {
		fmt.Fprintf(w, "  coupons    %d issued, %d redeemed\n", r.GetCouponsIssued(), r.GetCouponsRedeemed())
	}
	fmt.Fprintf(w, "  converted  treated %d (%.1f%%), holdout %d (%.1f%%)\n",
		r.GetConversionsTreated(), 100*r.GetConversionRateTreated(), r.GetConversionsHoldout(), 100*r.GetConversionRateHoldout())
	if r.GetTreated() > 0 && r.GetHoldout() > 0 {
		fmt.Fprintf(w, "  lift       %s", liftText(r))
		if r.RelativeLift != nil {
			fmt.Fprintf(w, ", relative %+.0f%% (%+.0f%% to %+.0f%%)", 100*r.GetRelativeLift(), 100*r.GetRelativeLiftLow(), 100*r.GetRelativeLiftHigh())
		}
		fmt.Fprintln(w)
	}
	for _, rv := range r.GetRevenue() {
		fmt.Fprintf(w, "  revenue    treated %s, holdout %s, incremental %s\n",
			moneyText(rv.GetTreatedMinor(), rv.GetCurrency(), true), moneyText(rv.GetHoldoutMinor(), rv.GetCurrency(), true), moneyText(rv.GetIncrementalMinor(), rv.GetCurrency(), true))
	}
	if r.GetNote() != "" {
		fmt.Fprintf(w, "  note       %s\n", r.GetNote())
	}
}

// liftText is a report's absolute lift as `campaigns report` and the demo
// print it. The interval is there even before any conversion: it still
// bounds the lift, and is narrower the more members the groups have. With
// no conversion in either group, it says so, since +0.0 alone reads as a
// measured lack of effect.
func liftText(r *campaignv1.Report) string {
	s := fmt.Sprintf("%+.1f points (95%% CI %+.1f to %+.1f)", 100*r.GetAbsoluteLift(), 100*r.GetAbsoluteLiftLow(), 100*r.GetAbsoluteLiftHigh())
	if r.GetConversionsTreated()+r.GetConversionsHoldout() == 0 {
		s += ": no conversion in either group yet"
	}
	return s
}

func campaignsEnrollments(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "campaigns enrollments", "campaigns enrollments CUSTOMER [--campaign ID] [--limit N] [--output text|json]")
	campaign := f.fs.String("campaign", "", "only the enrollments in this campaign")
	limit := valueFlag(f.fs, "limit", "100", "how many enrollments to list, newest first, 1-10000", intIn(1, 10000))
	pageToken := f.fs.String("page-token", "", "continue after a previous listing (json output's next_page_token)")
	customer, err := f.parseOne(args, "customer id")
	if err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.ListCustomerEnrollmentsResponse, error) {
		es, next, err := pagesUpTo(*limit, 1000, *pageToken, func(size int32, tok string) ([]*campaignv1.Enrollment, string, error) {
			resp, err := c.ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: customer, CampaignId: *campaign,
				PageSize: size, PageToken: tok})
			return resp.GetEnrollments(), resp.GetNextPageToken(), err
		})
		if err != nil {
			return nil, err
		}
		return &campaignv1.ListCustomerEnrollmentsResponse{Enrollments: es, NextPageToken: next}, nil
	}, func(w io.Writer, resp *campaignv1.ListCustomerEnrollmentsResponse) error {
		if len(resp.GetEnrollments()) == 0 {
			fmt.Fprintln(w, "no enrollments")
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CAMPAIGN\tVERSION\tSTATUS\tGROUP\tENTERED\tSTEPS DONE\tNEXT")
		for _, e := range resp.GetEnrollments() {
			group := "treated"
			if e.GetHoldout() {
				group = "holdout"
			}
			next := "-"
			if e.GetCurrentStep() != "" {
				next = e.GetCurrentStep() + " at " + timeText(e.GetNextAt())
			}
			// The conversion shows whatever the status: an enrollment that
			// goes on after its goal, or whose last step ran before the
			// goal came within its window, is converted too.
			status := strings.ToLower(e.GetStatus())
			if c := e.GetConvertedAt(); c != nil {
				at := "converted " + c.AsTime().UTC().Format("2006-01-02 15:04Z")
				if status == "converted" {
					status = at
				} else {
					status += ", " + at
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", e.GetCampaignId(), e.GetCampaignVersion(), status, group,
				e.GetEnteredAt().AsTime().UTC().Format("2006-01-02 15:04Z"), strings.Join(e.GetStepsDone(), ","), next)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if resp.GetNextPageToken() != "" {
			fmt.Fprintf(w, "%s --page-token %s\n", moreOfTheSame, resp.GetNextPageToken())
		}
		return nil
	})
}

// runPlaybooks is `retain playbooks list|install NAME`.
func runPlaybooks(ctx context.Context, env *cliEnv, args []string) error {
	return subcommands(env, "playbooks", playbooksUsage, args, map[string]func([]string) error{
		"list":    func(a []string) error { return playbooksList(ctx, env, a) },
		"install": func(a []string) error { return playbooksInstall(ctx, env, a) },
	})
}

func playbooksList(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "playbooks list", "playbooks list [--output text|json]")
	if err := f.parseNone(args, "playbooks list", ""); err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.ListPlaybooksResponse, error) {
		return c.ListPlaybooks(ctx, &campaignv1.ListPlaybooksRequest{})
	}, func(w io.Writer, resp *campaignv1.ListPlaybooksResponse) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTRIGGER\tSUMMARY")
		for _, p := range resp.GetPlaybooks() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.GetName(), triggerText(p.GetCampaign().GetTrigger()), p.GetSummary())
		}
		return tw.Flush()
	})
}

func playbooksInstall(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "playbooks install", "playbooks install NAME [--id ID] [--paused] [--output text|json]")
	id := f.fs.String("id", "", "campaign id (default: the playbook name)")
	paused := f.fs.Bool("paused", false, "install paused, to review it first")
	name, err := f.parseOne(args, "playbook name")
	if err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, campaignAPI, func(c campaignv1.CampaignServiceClient) (*campaignv1.InstallPlaybookResponse, error) {
		return c.InstallPlaybook(ctx, &campaignv1.InstallPlaybookRequest{Name: name, Id: *id, Paused: *paused})
	}, func(w io.Writer, resp *campaignv1.InstallPlaybookResponse) error {
		cp := resp.GetCampaign()
		fmt.Fprintf(w, "installed playbook %s as campaign %s (%s); edit it with: retain campaigns show %s > %s.yaml, then apply -f\n",
			name, cp.GetId(), stateWord(cp.GetState()), cp.GetId(), cp.GetId())
		return nil
	})
}
