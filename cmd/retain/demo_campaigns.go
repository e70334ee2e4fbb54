package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
)

// installDemoPlaybooks installs every playbook before the demo shop is
// sent, so the shop's events run through them as a live shop's would. On a
// second demo run they are there already.
func installDemoPlaybooks(ctx context.Context, w io.Writer, conn *grpc.ClientConn) error {
	c := campaignv1.NewCampaignServiceClient(conn)
	list, err := c.ListPlaybooks(ctx, &campaignv1.ListPlaybooksRequest{})
	if err != nil {
		return fmt.Errorf("list playbooks: %w", campaignAPI.fail(err))
	}
	installed := 0
	for _, p := range list.GetPlaybooks() {
		_, err := c.InstallPlaybook(ctx, &campaignv1.InstallPlaybookRequest{Name: p.GetName()})
		switch status.Code(err) {
		case codes.OK:
			installed++
		case codes.AlreadyExists:
		default:
			return fmt.Errorf("install playbook %s: %w", p.GetName(), campaignAPI.fail(err))
		}
	}
	fmt.Fprintf(w, "installed %d of %d playbooks (`retain playbooks list`); events older than a week update facts but trigger nobody\n", installed, len(list.GetPlaybooks()))
	return nil
}

// campaignRunner is the campaign service as the demo drives it: evaluate
// the scheduled audiences and fire due timers now rather than at the next
// tick.
type campaignRunner interface {
	caughtUpWaiter
	relayer
	RunAudiences(ctx context.Context) (int, error)
	FireDue(ctx context.Context) (int, error)
}

// relayer is a service that publishes what it commits through its outbox.
type relayer interface {
	WaitRelayed(ctx context.Context) error
}

// printCampaignDemo shows what each playbook did and its lift so far.
func printCampaignDemo(ctx context.Context, w io.Writer, conn *grpc.ClientConn, projections []caughtUpWaiter) error {
	var n notifierReporter
	for _, p := range projections {
		if r, ok := p.(notifierReporter); ok {
			n = r
		}
	}
	for _, p := range projections {
		if r, ok := p.(campaignRunner); ok {
			if _, err := r.RunAudiences(ctx); err != nil {
				return err
			}
			if _, err := r.FireDue(ctx); err != nil {
				return err
			}
			if err := settleRequests(ctx, r, n); err != nil {
				return err
			}
		}
	}
	c := campaignv1.NewCampaignServiceClient(conn)
	list, err := c.ListCampaigns(ctx, &campaignv1.ListCampaignsRequest{})
	if err != nil {
		return fmt.Errorf("list campaigns: %w", campaignAPI.fail(err))
	}
	fmt.Fprintln(w, "\nCampaigns (`retain campaigns report ID`, `retain campaigns enrollments CUSTOMER`)")
	fmt.Fprintf(w, "  %-20s %8s %8s %9s %9s %13s  %s\n", "campaign", "enrolled", "holdout", "requested", "delivered", "converted T/H", "lift")
	for _, cp := range list.GetCampaigns() {
		resp, err := c.GetReport(ctx, &campaignv1.GetReportRequest{Id: cp.GetId()})
		if err != nil {
			return fmt.Errorf("report %s: %w", cp.GetId(), campaignAPI.fail(err))
		}
		printDemoCampaignRow(w, resp.GetReport())
	}
	return printRFMAudienceDemo(ctx, w, conn, c)
}

// printDemoCampaignRow is a campaign's line in the demo report: its lift
// in the words of `retain campaigns report` (liftText).
func printDemoCampaignRow(w io.Writer, r *campaignv1.Report) {
	// The note is set when a group is empty, and printReport prints no
	// lift then either.
	lift := "n/a: " + r.GetNote()
	if r.GetNote() == "" {
		lift = liftText(r)
	}
	fmt.Fprintf(w, "  %-20s %8d %8d %9d %9d %6d / %-4d  %s\n", r.GetCampaignId(), r.GetEnrolled(), r.GetHoldout(), r.GetMessagesRequested(),
		r.GetMessagesDelivered(), r.GetConversionsTreated(), r.GetConversionsHoldout(), lift)
}

// settleRequests waits until the notifier has decided the requests the
// playbooks made (the audience pass and the timers just fired make many)
// and the campaign service has applied their outcomes, so that the
// campaigns' delivered counts agree with the notifications section. Without
// a notifier in the stack there is nothing to wait for.
func settleRequests(ctx context.Context, c campaignRunner, n notifierReporter) error {
	if n == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := c.WaitRelayed(ctx); err != nil {
		return fmt.Errorf("campaign requests: %w", err)
	}
	if _, err := waitNotifierIdle(ctx, n); err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	if err := n.WaitRelayed(ctx); err != nil {
		return fmt.Errorf("delivery outcomes: %w", err)
	}
	if err := c.WaitCaughtUp(ctx); err != nil {
		return fmt.Errorf("campaign outcomes: %w", err)
	}
	return nil
}

// demoChampions is a campaign for the best customers by RFM, as a shop
// would write it.
const demoChampions = `
id: demo-champions
name: Thank the champions
trigger: {schedule: {every: 30d}}
conditions:
  - rfm_segment: {segments: [RFM_SEGMENT_CHAMPIONS]}
steps:
  - {id: thanks, send: {channel: CHANNEL_EMAIL, template_key: vip_care}}
`

// printRFMAudienceDemo dry-runs a champions audience next to the metrics
// service's count of champions: the rfm_segment condition uses the metrics
// service's RFM rules, so the two agree.
func printRFMAudienceDemo(ctx context.Context, w io.Writer, conn *grpc.ClientConn, c campaignv1.CampaignServiceClient) error {
	champions, err := campaignfile.Decode([]byte(demoChampions))
	if err != nil {
		return err
	}
	pv, err := c.PreviewAudience(ctx, &campaignv1.PreviewAudienceRequest{Campaign: champions, Limit: 1})
	if err != nil {
		return fmt.Errorf("preview the champions audience: %w", campaignAPI.fail(err))
	}
	rfm, err := metricsv1.NewMetricsServiceClient(conn).GetRFM(ctx, &metricsv1.GetRFMRequest{})
	if err != nil {
		return fmt.Errorf("rfm: %w", callError(err, "metrics", auth.ScopeRead))
	}
	var counted int64
	for _, s := range rfm.GetSegments() {
		if s.GetSegment() == metricsv1.RFMSegment_RFM_SEGMENT_CHAMPIONS {
			counted = s.GetCustomers()
		}
	}
	fmt.Fprintf(w, "  an audience of RFM champions (`rfm_segment` condition, `retain campaigns preview -f FILE`): %d customers would enter now;\n", pv.GetCount())
	fmt.Fprintf(w, "  `retain metrics rfm` counts %d champions: both use the metrics service's RFM rules\n", counted)
	return nil
}
