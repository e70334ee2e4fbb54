package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
)

// notifierReporter is the notifier as the demo reads it.
type notifierReporter interface {
	caughtUpWaiter
	relayer
	Counts(ctx context.Context, tenant string) ([]notifier.Count, error)
	OutboxDir() string
}

// demoRequest is a NotificationRequested the demo publishes itself, to show
// a policy the simulated shop's campaigns may not hit in one run.
type demoRequest struct {
	req  *notifierv1.NotificationRequested
	what string
}

// nightZone is a time zone where it is now well inside the default quiet
// hours (21:00-09:00), Tehran when it is night there: a marketing message
// to a customer there is deferred, whatever the time the demo runs.
func nightZone(now time.Time) string {
	for _, z := range []string{"Asia/Tehran", "Pacific/Honolulu", "America/Los_Angeles", "America/New_York", "America/Sao_Paulo",
		"Europe/London", "Europe/Berlin", "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland"} {
		loc, err := time.LoadLocation(z)
		if err != nil {
			continue
		}
		t := now.In(loc)
		// Half an hour from either edge, so the decision a moment later
		// still falls inside.
		if m := t.Hour()*60 + t.Minute(); m >= 21*60+30 || m < 8*60+30 {
			return z
		}
	}
	return "Asia/Tehran"
}

// publishDemoRequests sends three customers through the public ingest API
// (customer.updated) and, once the notifier has them, publishes requests
// for them on RETAIN_NOTIFICATIONS as the campaign service would: an RTL
// Persian email, a quiet-hours deferral and a consent refusal. The
// requests' ids are fixed, so the notifier delivers each once however often
// the demo runs. The profiles depend on the time (the night zone), so each
// minute's are events of their own: an id names one event, and the same id
// with other content is rejected (decision 0020).
func publishDemoRequests(ctx context.Context, conn *grpc.ClientConn, natsURL string, n notifierReporter, now time.Time) ([]demoRequest, error) {
	night := nightZone(now)
	granted, revoked := eventsv1.ConsentState_CONSENT_STATE_GRANTED, eventsv1.ConsentState_CONSENT_STATE_REVOKED
	customers := []*eventsv1.CustomerUpdated{
		{CustomerId: "demo-shirin", Email: "shirin@example.com", FirstName: "شیرین", Locale: "fa-IR", TimeZone: "Asia/Tehran", Consent: &eventsv1.Consent{EmailMarketing: granted}},
		{CustomerId: "demo-night-owl", Email: "owl@example.com", FirstName: "Robin", Locale: "en", TimeZone: night, Consent: &eventsv1.Consent{EmailMarketing: granted}},
		{CustomerId: "demo-opted-out", Email: "no-thanks@example.com", FirstName: "Alex", Locale: "en", TimeZone: "Europe/Berlin", Consent: &eventsv1.Consent{EmailMarketing: revoked}},
	}
	minute := now.UTC().Truncate(time.Minute)
	var evs []*eventsv1.Event
	for _, c := range customers {
		evs = append(evs, &eventsv1.Event{Id: "demo-notifier-" + c.CustomerId + "-" + minute.Format("200601021504"), OccurredAt: timestamppb.New(minute.Add(-time.Minute)),
			Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: c}})
	}
	resp, err := ingestv1.NewIngestServiceClient(conn).PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: evs})
	if err != nil {
		return nil, fmt.Errorf("send the demo customers: %w", err)
	}
	if resp.GetRejected() > 0 {
		return nil, fmt.Errorf("demo customers rejected: %v", resp.GetResults())
	}
	if err := n.WaitCaughtUp(ctx); err != nil {
		return nil, err
	}
	email := func(id, customer, tpl string, cat notifierv1.Category) *notifierv1.NotificationRequested {
		return &notifierv1.NotificationRequested{RequestId: "policy-demo/" + id, TenantId: devTenant, CustomerId: customer,
			Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: cat, Priority: notifierv1.Priority_PRIORITY_NORMAL, TemplateKey: tpl,
			RequestedAt: timestamppb.New(now)}
	}
	marketing, transactional := notifierv1.Category_CATEGORY_MARKETING, notifierv1.Category_CATEGORY_TRANSACTIONAL
	coupon := email("quiet-hours", "demo-night-owl", "winback_90", marketing)
	coupon.Variables = map[string]*notifierv1.TemplateValue{"coupon": {Value: &notifierv1.TemplateValue_Coupon{Coupon: &notifierv1.Coupon{Code: "COMEBACK15", Discount: &notifierv1.Coupon_PercentOff{PercentOff: 15}}}}}
	reqs := []demoRequest{
		{email("rtl-thank-you", "demo-shirin", "thank_you_feedback", transactional), "transactional email to a customer in Tehran (fa-IR): the Persian variant, right to left"},
		{coupon, "marketing email to a customer in a zone where it is night now"},
		{email("no-consent", "demo-opted-out", "winback_90", marketing), "marketing email to a customer whose shop recorded email consent as revoked"},
	}
	b, err := bus.Connect(ctx, bus.Config{URL: natsURL, Name: "retain-demo"}, nil)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	for _, r := range reqs {
		data, err := proto.Marshal(r.req)
		if err != nil {
			return nil, err
		}
		if _, err := b.Publish(ctx, bus.Message{Subject: bus.NotificationSubject(devTenant, bus.TypeNotificationRequested),
			ID: devTenant + "/" + r.req.GetRequestId(), Type: bus.TypeNotificationRequested, Data: data}); err != nil {
			return nil, fmt.Errorf("publish %s: %w", r.req.GetRequestId(), err)
		}
	}
	return reqs, nil
}

// waitNotifierIdle waits until the notifier has applied every request on
// its stream and sent each it decided to send (requests are decided in the
// consumer's transaction and sent right after), for at most a minute, and
// returns the tenant's deliveries by status then.
func waitNotifierIdle(ctx context.Context, n notifierReporter) ([]notifier.Count, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		if err := n.WaitCaughtUp(ctx); err != nil {
			return nil, err
		}
		counts, err := n.Counts(ctx, devTenant)
		if err != nil {
			return nil, err
		}
		busy := false
		for _, c := range counts {
			busy = busy || c.Status == "queued" || c.Status == "sending"
		}
		if !busy || time.Now().After(deadline) {
			return counts, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// printNotifierDemo reports what the notifier sent, deferred and
// suppressed, and why, and where to open the messages.
func printNotifierDemo(ctx context.Context, w io.Writer, conn *grpc.ClientConn, natsURL string, projections []caughtUpWaiter) error {
	var n notifierReporter
	for _, p := range projections {
		if r, ok := p.(notifierReporter); ok {
			n = r
		}
	}
	if n == nil {
		return nil
	}
	now := time.Now().UTC()
	reqs, err := publishDemoRequests(ctx, conn, natsURL, n, now)
	if err != nil {
		return fmt.Errorf("demo notifications: %w", err)
	}
	client := notifierv1.NewNotifierServiceClient(conn)
	counts, err := waitNotifierIdle(ctx, n)
	if err != nil {
		return err
	}
	byStatus := map[string]int{}
	total := 0
	for _, c := range counts {
		byStatus[c.Status] += c.N
		total += c.N
	}
	fmt.Fprintln(w, "\nNotifications (`retain deliveries list --customer C`, `retain deliveries show ID` for the decision trail)")
	fmt.Fprintf(w, "  %d requests from the playbooks and the demo: %d sent, %d deferred, %d suppressed, %d failed\n",
		total, byStatus["sent"], byStatus["deferred"], byStatus["suppressed"], byStatus["failed"])
	for _, c := range counts {
		if c.Status == "sent" {
			continue
		}
		fmt.Fprintf(w, "    %-10s %-26s %6d\n", c.Status, cmp.Or(c.ReasonCode, "-"), c.N)
	}
	if slices.ContainsFunc(counts, func(c notifier.Count) bool { return c.ReasonCode == "expired" }) {
		fmt.Fprintln(w, "    (expired: deferred by the frequency cap or quiet hours to a time past the request's expiry)")
	}
	fmt.Fprintln(w, "  Published by the demo itself to RETAIN_NOTIFICATIONS (not by a campaign), one per policy:")
	outbox := filepath.Join(n.OutboxDir(), devTenant)
	var files []string
	for _, r := range reqs {
		resp, err := client.GetDelivery(ctx, &notifierv1.GetDeliveryRequest{RequestId: r.req.GetRequestId()})
		if err != nil {
			return fmt.Errorf("delivery %s: %w", r.req.GetRequestId(), notifierAPI.fail(err))
		}
		d := resp.GetDelivery()
		// The request ids are fixed, so a demo run in a directory an
		// earlier one used shows that run's decision, taken in the zone
		// the customer had then (the night zone moves with the clock):
		// shown in UTC. Otherwise in the customer's zone as the notifier
		// has it now, as the customer sees the times.
		earlier := d.GetRequestedAt().AsTime().Before(now.Add(-time.Minute))
		loc := time.UTC
		if !earlier {
			prefs, err := client.GetPreferences(ctx, &notifierv1.GetPreferencesRequest{CustomerId: d.GetCustomerId()})
			if err != nil {
				return fmt.Errorf("preferences of %s: %w", d.GetCustomerId(), notifierAPI.fail(err))
			}
			if z, err := time.LoadLocation(prefs.GetTimeZone()); err == nil {
				loc = z
			}
		}
		fmt.Fprintf(w, "    %-28s %s\n", d.GetRequestId(), r.what)
		fmt.Fprintf(w, "    %-28s requested %s in %s\n", "", d.GetRequestedAt().AsTime().In(loc).Format("15:04 MST"), loc)
		line := strings.ToUpper(d.GetStatus())
		if d.GetReason() != "" {
			line += ": " + d.GetReason()
		}
		if d.GetDueAt() != nil && d.GetStatus() == "deferred" {
			line += fmt.Sprintf(" (%s local time)", d.GetDueAt().AsTime().In(loc).Format("2006-01-02 15:04 MST"))
		}
		fmt.Fprintf(w, "    %-28s -> %s\n", "", line)
		if earlier {
			fmt.Fprintf(w, "    %-28s (decided by the first demo run in this directory: the demo's request ids are fixed, so each is delivered once; `--dir` elsewhere for a fresh run)\n", "")
		}
		if d.GetStatus() == "sent" {
			if m, _ := filepath.Glob(filepath.Join(outbox, "*"+strings.ReplaceAll(d.GetRequestId(), "/", "_")+".eml")); len(m) > 0 {
				files = append(files, m[0])
			}
		}
	}
	var kinds []string
	for _, k := range []struct{ ext, what string }{{".eml", "emails"}, {".sms.txt", "SMS"}, {".webhook.json", "webhooks"}} {
		if m, _ := filepath.Glob(filepath.Join(outbox, "*"+k.ext)); len(m) > 0 || k.ext == ".eml" {
			kinds = append(kinds, fmt.Sprintf("%d %s", len(m), k.what))
		}
	}
	fmt.Fprintf(w, "  Messages are files (`retain dev` sends nothing): %s in %s%c\n  Open the .eml files in a mail client, e.g.\n",
		strings.Join(kinds, ", "), outbox, os.PathSeparator)
	for _, f := range files {
		fmt.Fprintf(w, "    %s\n", f)
	}
	return nil
}
