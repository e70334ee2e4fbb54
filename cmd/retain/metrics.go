package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/currency"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// metricsFigures are the `retain metrics` subcommands and what they show.
var metricsFigures = []struct{ name, summary string }{
	{"retention", "customer retention rate (CRR) with the counts behind it"},
	{"churn", "churn rate and customers lost per customer acquired"},
	{"repeat", "repeat purchase rate in the period and over the lifetime"},
	{"cohorts", "monthly cohorts as a heat table (share ordering in each later month)"},
	{"nps", "NPS and CSAT with the answer counts"},
	{"rfm", "RFM segments as of an instant, and the first customer scores"},
	{"top", "the top percent of customers by revenue and their share (the 80/20 check)"},
	{"sales", "orders, customers, revenue, refunds, AOV, orders per customer"},
	{"rebuild", "drop this tenant's metrics and replay them from the event stream (admin); --status: how far it is, --detach: start it and return"},
}

// metricsOptions are the flags of every `retain metrics` subcommand.
type metricsOptions struct {
	from, to, at string
	window       int
	percent      float64
	currency     string
	limit        int
	pageToken    string
	revenue      bool
	// status and detach are rebuild's: say where the tenant's rebuild
	// stands, or start one without waiting for its end.
	status, detach bool
	output         string
	now            time.Time
}

// The activity window's range and default, the service's: the command
// always sends the window, so a 0 never reaches the service, which would
// read it as "the default".
const (
	minWindowDays, maxWindowDays = 1, 3650
	defaultWindowDays            = 90
)

// runMetrics is `retain metrics FIGURE [flags]`: it asks the metrics service
// for one figure and prints it as a table, or as protojson.
func runMetrics(ctx context.Context, env *cliEnv, args []string) error {
	usageLine := "metrics FIGURE [flags]   (FIGURE: " + metricsFigureNames() + ")"
	fs := newFlags(env, "metrics", usageLine)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: retain %s\n\nFigures:\n", usageLine)
		for _, f := range metricsFigures {
			fmt.Fprintf(env.stderr, "  %-10s %s\n", f.name, f.summary)
		}
		fmt.Fprintln(env.stderr, `
Periods are [from, to) in UTC. --from and --to take a date (2011-04-01), an
instant (RFC 3339), a month (2011-04), a quarter (2011-Q2) or a year (2011);
when --to is left out, the period is the whole month, quarter or year named by
--from (a date or instant runs to now); when --from is left out, it starts at
this quarter's start. Without either: this quarter so far. A period that ends
after now is measured up to now and shown as "so far".

Flags:`)
		fs.PrintDefaults()
	}
	ep := addEndpointFlags(fs, env)
	o := metricsOptions{now: time.Now().UTC()}
	fs.StringVar(&o.from, "from", "", "start of the period (default: this quarter's start; cohorts: first cohort month, default 11 months before the last)")
	fs.StringVar(&o.to, "to", "", "end of the period, excluded (cohorts: last cohort month, included)")
	fs.StringVar(&o.at, "at", "", "rfm: the instant to score as of, not in the future (default now)")
	fs.IntVar(&o.window, "window", defaultWindowDays, fmt.Sprintf("activity window in days, %d-%d", minWindowDays, maxWindowDays))
	fs.Float64Var(&o.percent, "percent", 20, "top: the top share of customers, in percent, more than 0 and at most 100")
	fs.StringVar(&o.currency, "currency", "", "ISO 4217 currency of money figures (default: the tenant's only currency)")
	fs.IntVar(&o.limit, "limit", 10, "rfm, top: how many customers to list")
	fs.StringVar(&o.pageToken, "page-token", "", "rfm, top: continue after a previous listing (its \"more:\" line, or json output's nextPageToken)")
	fs.BoolVar(&o.revenue, "revenue", false, "cohorts: show revenue per member instead of the share ordering")
	fs.BoolVar(&o.status, "status", false, "rebuild: say where the tenant's rebuild stands (running where and how far, interrupted, failed) instead of starting one")
	fs.BoolVar(&o.detach, "detach", false, "rebuild: return once the rebuild has started instead of when it is done")
	fs.StringVar(&o.output, "output", "text", "text or json (the gRPC response as protojson)")
	pos, flagArgs := splitPositional(args)
	if err := parseFlags(fs, flagArgs); err != nil {
		return err
	}
	pos = append(pos, fs.Args()...)
	switch {
	case len(pos) == 0:
		fs.Usage()
		return usageError{fmt.Errorf("metrics needs one FIGURE: %s", metricsFigureNames())}
	case len(pos) > 1:
		return usageError{fmt.Errorf("unexpected argument %q: metrics takes one FIGURE (%s), then flags", pos[1], pos[0])}
	}
	if err := o.check(); err != nil {
		return usageError{err} // a flag's value
	}
	figure := pos[0]
	known := false
	for _, f := range metricsFigures {
		known = known || f.name == figure
	}
	if !known {
		fs.Usage()
		return usageError{fmt.Errorf("unknown figure %q (want one of %s)", figure, metricsFigureNames())}
	}
	switch {
	case (o.status || o.detach) && figure != "rebuild":
		return usageError{fmt.Errorf("--status and --detach are rebuild's flags, not %s's", figure)}
	case o.status && o.detach:
		return usageError{errors.New("--status and --detach do not go together: --status only reads, --detach starts a rebuild")}
	}
	if err := o.checkRange(figure); err != nil {
		return usageError{err}
	}
	conn, err := ep.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(ctx, time.Minute)
	if figure == "rebuild" && !o.status {
		cancel()
		// A rebuild replays the whole stream of the tenant: minutes for a
		// big shop.
		callCtx, cancel = context.WithTimeout(ctx, time.Hour)
	}
	defer cancel()
	resp, err := callMetrics(callCtx, metricsv1.NewMetricsServiceClient(conn), figure, o)
	// The server ends the call at the deadline it was sent, which can be
	// a moment before this side's context notices: its DeadlineExceeded
	// means the same.
	if err != nil && figure == "rebuild" && !o.status && (callCtx.Err() != nil || status.Code(err) == codes.DeadlineExceeded) {
		// The rebuild is the service's: it goes on without this call.
		return fmt.Errorf("stopped waiting (%w); the rebuild goes on in the metrics service, and queries say the figures are being rebuilt until it is done (`retain metrics rebuild --status` says how far it is, `retain metrics rebuild` again waits for it)", cmp.Or(callCtx.Err(), context.DeadlineExceeded))
	}
	if err != nil {
		return callError(err, "metrics", "read, or admin for rebuild")
	}
	if o.output == "json" {
		return printJSON(env.stdout, resp)
	}
	return printMetric(env.stdout, figure, resp, o)
}

// check refuses flag values the request cannot carry or the service would
// read differently: 0 is the proto's "default" for window_days and percent,
// so an explicit --window 0 or --percent 0 would silently become 90 or 20.
func (o *metricsOptions) check() error {
	if o.output == "table" { // what this command called text before the others had --output
		o.output = "text"
	}
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output %q: must be text or json", o.output)
	}
	if o.limit < 1 || o.limit > 1000 {
		return fmt.Errorf("--limit %d: must be 1-1000", o.limit)
	}
	if o.window < minWindowDays || o.window > maxWindowDays {
		return fmt.Errorf("--window %d: must be %d-%d days (default %d)", o.window, minWindowDays, maxWindowDays, defaultWindowDays)
	}
	if !(o.percent > 0 && o.percent <= 100) {
		return fmt.Errorf("--percent %v: must be more than 0 and at most 100 (default 20)", o.percent)
	}
	if o.currency != "" {
		// As `retain import --currency`: the code in any case, checked
		// against the ISO 4217 table ingest validates orders with.
		code := strings.ToUpper(strings.TrimSpace(o.currency))
		if err := currency.Check(code); err != nil {
			return fmt.Errorf("--currency %w", err)
		}
		o.currency = code
	}
	// Dates are checked here, before anything is dialled, so a typo is a
	// usage error (exit 2) like the other flags'.
	for _, f := range []struct{ name, value string }{{"--from", o.from}, {"--to", o.to}, {"--at", o.at}} {
		if f.value == "" {
			continue
		}
		if _, _, err := parseWhen(f.value, o.now); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// checkRange refuses a period or a cohort range whose flags contradict
// each other (--from not before --to), naming them. The service refuses it
// too (INVALID_ARGUMENT), but an answer of the service is a failed call
// (exit 1) while the fault is on the command line (exit 2). What depends
// on the clock, such as a --from after now, is left to the service, whose
// now is the one that counts.
func (o metricsOptions) checkRange(figure string) error {
	switch figure {
	case "rfm", "rebuild":
		return nil
	case "cohorts":
		if o.from == "" || o.to == "" {
			return nil
		}
		first, last, err := cohortRange(o)
		if err != nil || first <= last {
			return err
		}
		return fmt.Errorf("--from %s is after --to %s: the first cohort month (%s) comes after the last (%s)", o.from, o.to, first, last)
	}
	if o.to == "" {
		return nil
	}
	p, err := metricsPeriod(o)
	if err != nil {
		return err
	}
	from, to := p.GetFrom().AsTime(), p.GetTo().AsTime()
	switch {
	case from.Before(to):
		return nil
	case o.from == "":
		return fmt.Errorf("--to %s is not after this quarter's start %s, where the period starts without --from: give --from too",
			o.to, from.Format(time.DateOnly))
	}
	return fmt.Errorf("--from %s is not before --to %s: the period [%s, %s) is empty (--to is its end, excluded)",
		o.from, o.to, whenText(from), whenText(to))
}

// whenText is an instant as the flags could give it: a date when it is
// midnight UTC.
func whenText(t time.Time) string {
	if t.Equal(t.Truncate(24 * time.Hour)) {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339Nano)
}

func metricsFigureNames() string {
	names := make([]string, len(metricsFigures))
	for i, f := range metricsFigures {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// callMetrics makes the one call a figure needs.
func callMetrics(ctx context.Context, c metricsv1.MetricsServiceClient, figure string, o metricsOptions) (proto.Message, error) {
	switch figure {
	case "cohorts":
		first, last, err := cohortRange(o)
		if err != nil {
			return nil, err
		}
		return c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: first, ToMonth: last, Currency: o.currency})
	case "rfm":
		// Without --at the service scores as of its own now (this clock may
		// be ahead of it); a future --at is the service's to refuse.
		var at *timestamppb.Timestamp
		if o.at != "" {
			t, _, err := parseWhen(o.at, o.now)
			if err != nil {
				return nil, fmt.Errorf("--at: %w", err)
			}
			at = timestamppb.New(t)
		}
		return c.GetRFM(ctx, &metricsv1.GetRFMRequest{At: at, Currency: o.currency, PageSize: int32(o.limit), PageToken: o.pageToken})
	case "rebuild":
		if o.status {
			return c.GetRebuild(ctx, &metricsv1.GetRebuildRequest{})
		}
		return c.Rebuild(ctx, &metricsv1.RebuildRequest{Detach: o.detach})
	}
	p, err := metricsPeriod(o)
	if err != nil {
		return nil, err
	}
	switch figure {
	case "retention", "churn":
		return c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: p, WindowDays: int32(o.window)})
	case "repeat":
		return c.GetRepeatPurchase(ctx, &metricsv1.GetRepeatPurchaseRequest{Period: p})
	case "nps":
		return c.GetNPS(ctx, &metricsv1.GetNPSRequest{Period: p})
	case "top":
		return c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: p, Percent: o.percent, Currency: o.currency, PageSize: int32(o.limit), PageToken: o.pageToken})
	case "sales":
		return c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: p, Currency: o.currency})
	}
	return nil, fmt.Errorf("unknown figure %q", figure)
}

var (
	quarterRE = regexp.MustCompile(`^([0-9]{4})-[Qq]([1-4])$`)
	monthRE   = regexp.MustCompile(`^([0-9]{4})-([0-9]{2})$`)
	yearRE    = regexp.MustCompile(`^([0-9]{4})$`)
)

// parseWhen reads a date, an instant, a month, a quarter or a year, and
// returns its start and the end of the unit it names (now for a date or an
// instant, which name no unit).
func parseWhen(s string, now time.Time) (start, end time.Time, err error) {
	if m := quarterRE.FindStringSubmatch(s); m != nil {
		y, _ := strconv.Atoi(m[1])
		q, _ := strconv.Atoi(m[2])
		start = time.Date(y, time.Month(3*(q-1)+1), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 3, 0), nil
	}
	if m := monthRE.FindStringSubmatch(s); m != nil {
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return start, end, fmt.Errorf("%q: not a month (YYYY-MM)", s)
		}
		return t, t.AddDate(0, 1, 0), nil
	}
	if yearRE.MatchString(s) {
		y, _ := strconv.Atoi(s)
		start = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(1, 0, 0), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), now, nil
	}
	return start, end, fmt.Errorf("%q: want a date (2011-04-01), an RFC 3339 instant, a month (2011-04), a quarter (2011-Q2) or a year (2011)", s)
}

// quarterStart is the first instant of t's calendar quarter.
func quarterStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month()-(t.Month()-1)%3, 1, 0, 0, 0, 0, time.UTC)
}

// metricsPeriod is the period the flags name (checkRange refuses one that
// ends before it starts); the service validates it too and measures one
// that ends after now up to now. A period the flags leave open ends with
// this quarter rather than at this run's now, so the next run asks for
// the same period, and a page token of the first page continues it.
func metricsPeriod(o metricsOptions) (*metricsv1.Period, error) {
	from, to := quarterStart(o.now), o.now
	var err error
	if o.from != "" {
		if from, to, err = parseWhen(o.from, o.now); err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
	}
	if o.to != "" {
		if to, _, err = parseWhen(o.to, o.now); err != nil {
			return nil, fmt.Errorf("--to: %w", err)
		}
	} else if to.Equal(o.now) {
		to = quarterStart(o.now).AddDate(0, 3, 0)
	}
	return &metricsv1.Period{From: timestamppb.New(from), To: timestamppb.New(to)}, nil
}

// soFar reports whether the period the flags name ends now or later: the
// service measures it up to now, so its figures are "so far".
func (o metricsOptions) soFar() bool {
	p, err := metricsPeriod(o)
	return err == nil && !p.GetTo().AsTime().Before(o.now)
}

// cohortRange is the cohort months the flags name: by default the twelve
// months up to this one. --from starts at the first month of what it
// names, --to ends at the last (`--to 2011-Q4` takes in December).
func cohortRange(o metricsOptions) (first, last string, err error) {
	month := func(flagName, s string, lastOf bool) (string, error) {
		start, end, err := parseWhen(s, o.now)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flagName, err)
		}
		if lastOf && (quarterRE.MatchString(s) || yearRE.MatchString(s)) {
			start = end.AddDate(0, -1, 0)
		}
		return start.Format("2006-01"), nil
	}
	thisMonth := time.Date(o.now.Year(), o.now.Month(), 1, 0, 0, 0, 0, time.UTC)
	switch {
	case o.from == "" && o.to == "":
		return thisMonth.AddDate(0, -11, 0).Format("2006-01"), thisMonth.Format("2006-01"), nil
	case o.from == "":
		// Twelve cohorts, as by default, ending at --to.
		if last, err = month("--to", o.to, true); err != nil {
			return "", "", err
		}
		end, _ := time.Parse("2006-01", last)
		return end.AddDate(0, -11, 0).Format("2006-01"), last, nil
	}
	if first, err = month("--from", o.from, false); err != nil {
		return "", "", err
	}
	if o.to == "" {
		// A year or quarter names its months; a single month runs to now.
		if last, _ = month("--from", o.from, true); last != first {
			return first, last, nil
		}
		return first, thisMonth.Format("2006-01"), nil
	}
	last, err = month("--to", o.to, true)
	return first, last, err
}

// printMetric writes a figure as a readable table.
func printMetric(w io.Writer, figure string, resp proto.Message, o metricsOptions) error {
	soFar := o.soFar()
	switch r := resp.(type) {
	case *metricsv1.GetRetentionResponse:
		if figure == "churn" {
			printChurn(w, r, soFar)
		} else {
			printRetention(w, r, soFar)
		}
	case *metricsv1.GetRepeatPurchaseResponse:
		fmt.Fprintf(w, "Repeat purchase, %s\n", periodText(r.GetPeriod(), soFar))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tbuyers\trepeat buyers\trepeat purchase rate\t")
		for _, row := range []struct {
			name string
			rp   *metricsv1.RepeatPurchase
		}{{"in the period", r.GetInPeriod()}, {"lifetime to its end", r.GetLifetime()}} {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t\n", row.name, row.rp.GetBuyers(), row.rp.GetRepeatBuyers(), percentText(row.rp.GetRate()))
		}
		return tw.Flush()
	case *metricsv1.GetCohortsResponse:
		printCohorts(w, r, o.revenue, o.now)
	case *metricsv1.GetNPSResponse:
		printNPS(w, r, soFar)
	case *metricsv1.GetRFMResponse:
		printRFM(w, r)
	case *metricsv1.GetTopCustomersResponse:
		printTop(w, r, soFar)
	case *metricsv1.GetSalesResponse:
		printSales(w, r, soFar)
	case *metricsv1.RebuildResponse:
		if r.GetFinishedAt() == nil {
			// Detached: it goes on in the service.
			fmt.Fprintf(w, "Rebuild started %s: the figures are being rebuilt, and queries say so until it is done\n"+
				"(`retain metrics rebuild --status` says how far it is)\n", instantText(r.GetStartedAt()))
			return nil
		}
		took := r.GetFinishedAt().AsTime().Sub(r.GetStartedAt().AsTime()).Round(time.Millisecond)
		fmt.Fprintf(w, "Rebuilt from the event stream in %s: %d events replayed, %d applied, %d rejected (dead-lettered)\n",
			took, r.GetEventsReplayed(), r.GetEventsApplied(), r.GetEventsRejected())
	case *metricsv1.GetRebuildResponse:
		printRebuildStatus(w, r, o.now)
	default:
		return fmt.Errorf("no table for %T", resp)
	}
	return nil
}

// printRebuildStatus writes where the tenant's rebuild stands.
func printRebuildStatus(w io.Writer, r *metricsv1.GetRebuildResponse, now time.Time) {
	switch r.GetState() {
	case metricsv1.RebuildState_REBUILD_STATE_NONE:
		if r.GetFinishedAt() == nil {
			fmt.Fprintln(w, "No rebuild pending: the figures are whole (no rebuild on record).")
			return
		}
		fmt.Fprintln(w, "No rebuild pending: the figures are whole.")
		took := r.GetFinishedAt().AsTime().Sub(r.GetStartedAt().AsTime()).Round(time.Millisecond)
		fmt.Fprintf(w, "  last rebuild: finished %s in %s, %d events replayed, %d applied, %d rejected\n",
			instantText(r.GetFinishedAt()), took, r.GetEventsReplayed(), r.GetEventsApplied(), r.GetEventsRejected())
		return
	case metricsv1.RebuildState_REBUILD_STATE_RUNNING:
		p := r.GetProcess()
		from := cmp.Or(p.GetClientAddress(), "a local socket")
		app := cmp.Or(p.GetApplicationName(), "no application name")
		fmt.Fprintf(w, "Rebuild running, in the process with database session pid %d (%s, from %s, connected %s).\n",
			p.GetPid(), app, from, instantText(p.GetConnectedAt()))
	case metricsv1.RebuildState_REBUILD_STATE_INTERRUPTED:
		fmt.Fprintln(w, "Rebuild interrupted: the process running it stopped half-way. A replica of the service runs it again")
		fmt.Fprintln(w, "from the start when it starts or within 30 s; `retain metrics rebuild` runs it now.")
	case metricsv1.RebuildState_REBUILD_STATE_FAILED:
		fmt.Fprintf(w, "Rebuild failed %s: %s\n", instantText(r.GetFailedAt()), r.GetLastError())
		fmt.Fprintln(w, "It is run again from the start within 30 s; `retain metrics rebuild` runs it now.")
	default:
		fmt.Fprintf(w, "Rebuild state %s (unknown to this retain; --output json shows everything)\n", r.GetState())
		return
	}
	if r.GetPartialSince() != nil {
		fmt.Fprintf(w, "  figures partial since %s: queries answer UNAVAILABLE until the rebuild is done\n", instantText(r.GetPartialSince()))
	}
	if r.GetStartedAt() == nil {
		fmt.Fprintln(w, "  not started replaying yet")
	} else {
		done := fmt.Sprintf("%d events replayed", r.GetEventsReplayed())
		if r.EventsPending != nil {
			total := r.GetEventsReplayed() + r.GetEventsPending()
			share := 100.0
			if total > 0 {
				share = float64(r.GetEventsReplayed()) * 100 / float64(total)
			}
			done = fmt.Sprintf("%d of about %d events replayed (%.0f%%)", r.GetEventsReplayed(), total, share)
		}
		attempt := "the attempt cut short"
		if r.GetState() == metricsv1.RebuildState_REBUILD_STATE_RUNNING {
			attempt = "this attempt"
		}
		fmt.Fprintf(w, "  %s: started %s, %s, %d applied, %d rejected, as of %s (%s ago)\n",
			attempt, instantText(r.GetStartedAt()), done, r.GetEventsApplied(), r.GetEventsRejected(),
			instantText(r.GetProgressAt()), now.Sub(r.GetProgressAt().AsTime()).Round(time.Second))
	}
	if r.GetState() == metricsv1.RebuildState_REBUILD_STATE_RUNNING && r.GetLastError() != "" {
		fmt.Fprintf(w, "  an earlier attempt failed %s: %s\n", instantText(r.GetFailedAt()), r.GetLastError())
	}
}

// instantText shows an instant of a response, to the second, in UTC.
func instantText(t *timestamppb.Timestamp) string {
	if t == nil {
		return "(unknown)"
	}
	return t.AsTime().UTC().Format("2006-01-02 15:04:05 UTC")
}

// periodText is the period a response measured. soFar: the period asked
// for ended now or later, and the service measured it up to now (its end is
// then the service's now, shown to the minute).
func periodText(p *metricsv1.Period, soFar bool) string {
	from, to := p.GetFrom().AsTime(), p.GetTo().AsTime()
	if soFar {
		layout := time.DateOnly
		if from.Truncate(24*time.Hour) != from {
			layout = "2006-01-02 15:04"
		}
		return from.Format(layout) + " to " + to.Format("2006-01-02 15:04") + " (UTC, so far)"
	}
	layout := time.DateOnly
	if from.Truncate(24*time.Hour) != from || to.Truncate(24*time.Hour) != to {
		layout = "2006-01-02 15:04"
	}
	return from.Format(layout) + " to " + to.Format(layout) + " (UTC, end excluded)"
}

// percentText shows a rate with the counts behind it, or "no figure".
func percentText(r *metricsv1.Ratio) string {
	if !r.GetDefined() {
		return fmt.Sprintf("no figure (%d / 0)", r.GetNumerator())
	}
	return fmt.Sprintf("%.1f%% (%d / %d)", r.GetPercent(), r.GetNumerator(), r.GetDenominator())
}

func printRetention(w io.Writer, r *metricsv1.GetRetentionResponse, soFar bool) {
	fmt.Fprintf(w, "Retention, %s, window %d days\n", periodText(r.GetPeriod(), soFar), r.GetWindowDays())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  customer retention rate (E - N) / S\t%s\n", percentText(r.GetRetentionRate()))
	fmt.Fprintf(tw, "  active at start (S)\t%d\n", r.GetActiveAtStart())
	fmt.Fprintf(tw, "  active at end (E)\t%d\n", r.GetActiveAtEnd())
	fmt.Fprintf(tw, "  new in the period (N)\t%d\n", r.GetNewCustomers())
	fmt.Fprintf(tw, "  retained (in S and E)\t%d\n", r.GetRetained())
	fmt.Fprintf(tw, "  churned (in S, not in E)\t%d\n", r.GetChurned())
	fmt.Fprintf(tw, "  reactivated (in E, not in S, not new)\t%d\n", r.GetReactivated())
	fmt.Fprintf(tw, "  new and still active at end\t%d\n", r.GetNewActiveAtEnd())
	_ = tw.Flush()
}

func printChurn(w io.Writer, r *metricsv1.GetRetentionResponse, soFar bool) {
	fmt.Fprintf(w, "Churn, %s, window %d days\n", periodText(r.GetPeriod(), soFar), r.GetWindowDays())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  churn rate churned / S\t%s\n", percentText(r.GetChurnRate()))
	fmt.Fprintf(tw, "  lost per acquired churned / N\t%s\n", percentText(r.GetLostPerAcquired()))
	fmt.Fprintf(tw, "  active at start (S)\t%d\n", r.GetActiveAtStart())
	fmt.Fprintf(tw, "  churned (in S, not in E)\t%d\n", r.GetChurned())
	fmt.Fprintf(tw, "  new in the period (N)\t%d\n", r.GetNewCustomers())
	_ = tw.Flush()
	fmt.Fprintln(w, "  (lost per acquired is not a churn rate: it compares customers lost with customers won)")
}

// shade is a heat mark for a share of 0-100%. ASCII on purpose: the block
// glyphs used before (█ ▓ ▒, East Asian "ambiguous" width) are drawn two
// columns wide by many terminals and fonts while ░ and the header stay one,
// so each row drifted right of the header by one column per mark and ran
// out past the last offset; the table's alignment must not depend on the
// terminal.
func shade(pct float64) string {
	switch {
	case pct >= 60:
		return "#"
	case pct >= 30:
		return "*"
	case pct >= 15:
		return ":"
	case pct > 0:
		return "."
	}
	return " "
}

// cohortsLegend explains shade's marks.
const cohortsLegend = "(# 60%+  * 30%+  : 15%+  . under 15%; +0 is the month of the first order)"

// printCohorts writes the cohort table; now marks the current month, whose
// cells are the month so far.
func printCohorts(w io.Writer, r *metricsv1.GetCohortsResponse, revenue bool, now time.Time) {
	what := "share of each cohort ordering in month +k"
	if revenue {
		what = "net revenue per cohort member in month +k, " + orNone(r.GetCurrency())
	}
	soFar := ""
	if r.GetToMonth() >= now.UTC().Format("2006-01") {
		soFar = " (so far)"
	}
	fmt.Fprintf(w, "Cohorts %s to %s%s by month of first order: %s\n", r.GetFromMonth(), r.GetToMonth(), soFar, what)
	width := 0
	for _, row := range r.GetRows() {
		width = max(width, len(row.GetCells()))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "cohort\tmembers\t")
	for k := range width {
		fmt.Fprintf(tw, "+%d\t", k)
	}
	fmt.Fprintln(tw)
	for _, row := range r.GetRows() {
		fmt.Fprintf(tw, "%s\t%d\t", row.GetCohort(), row.GetMembers())
		for _, c := range row.GetCells() {
			switch {
			case row.GetMembers() == 0:
				fmt.Fprint(tw, "-\t")
			case revenue:
				fmt.Fprintf(tw, "%s\t", moneyText(c.GetRevenuePerMemberMinor(), r.GetCurrency(), false))
			default:
				// The mark follows the shown (rounded) figure, or 14.6%
				// would read ": 15%" next to a "." 15%.
				p := math.Round(c.GetShare().GetPercent())
				fmt.Fprintf(tw, "%s%3.0f%%\t", shade(p), p)
			}
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	if !revenue {
		fmt.Fprintln(w, cohortsLegend)
	}
}

func printNPS(w io.Writer, r *metricsv1.GetNPSResponse, soFar bool) {
	fmt.Fprintf(w, "Surveys, %s\n", periodText(r.GetPeriod(), soFar))
	n, c := r.GetNps(), r.GetCsat()
	if n.GetScore().GetDefined() {
		fmt.Fprintf(w, "  NPS   %+.1f   promoters %d, passives %d, detractors %d of %d answers\n",
			n.GetScore().GetPercent(), n.GetPromoters(), n.GetPassives(), n.GetDetractors(), n.GetAnswers())
	} else {
		fmt.Fprintln(w, "  NPS   no figure (no NPS answers in the period)")
	}
	if c.GetScore().GetDefined() {
		fmt.Fprintf(w, "  CSAT  %.1f%%   %d of %d answers scored 4 or 5\n", c.GetScore().GetPercent(), c.GetSatisfied(), c.GetAnswers())
	} else {
		fmt.Fprintln(w, "  CSAT  no figure (no CSAT answers in the period)")
	}
	if r.GetIgnoredAnswers() > 0 {
		fmt.Fprintf(w, "  %d answers ignored (unknown kind or score out of range)\n", r.GetIgnoredAnswers())
	}
}

func printRFM(w io.Writer, r *metricsv1.GetRFMResponse) {
	fmt.Fprintf(w, "RFM as of %s: %d customers\n", r.GetAt().AsTime().Format("2006-01-02 15:04 UTC"), r.GetCustomers())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "segment\tcustomers\tshare\trevenue (%s)\t\n", orNone(r.GetCurrency()))
	for _, s := range r.GetSegments() {
		share := 0.0
		if r.GetCustomers() > 0 {
			share = float64(s.GetCustomers()) * 100 / float64(r.GetCustomers())
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%s\t\n", s.GetName(), s.GetCustomers(), share, moneyText(s.GetRevenueMinor(), r.GetCurrency(), false))
	}
	_ = tw.Flush()
	if len(r.GetScores()) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%d customers by id (R F M: quintile scores, 5 best)\n", len(r.GetScores()))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "customer\tlast order\tdays ago\torders\trevenue\tR F M\tsegment\t")
	for _, s := range r.GetScores() {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d %d %d\t%s\t\n", s.GetCustomerId(), s.GetLastOrderAt().AsTime().Format(time.DateOnly),
			s.GetRecencyDays(), s.GetFrequency(), moneyText(s.GetMonetaryMinor(), r.GetCurrency(), false),
			s.GetRecencyScore(), s.GetFrequencyScore(), s.GetMonetaryScore(), segmentName(s.GetSegment()))
	}
	_ = tw.Flush()
	if r.GetNextPageToken() != "" {
		fmt.Fprintf(w, "%s --page-token %s\n", moreOfTheSame, r.GetNextPageToken())
	}
}

func segmentName(s metricsv1.RFMSegment) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RFM_SEGMENT_"))
}

func printTop(w io.Writer, r *metricsv1.GetTopCustomersResponse, soFar bool) {
	fmt.Fprintf(w, "Top customers, %s\n", periodText(r.GetPeriod(), soFar))
	share := "no figure (no revenue)"
	if r.GetRevenueShare().GetDefined() {
		share = fmt.Sprintf("%.1f%%", r.GetRevenueShare().GetPercent())
	}
	fmt.Fprintf(w, "  the top %v%% (%d of %d customers) bring %s of revenue: %s of %s\n",
		r.GetPercent(), r.GetTopCustomers(), r.GetCustomers(), share,
		moneyText(r.GetTopRevenueMinor(), r.GetCurrency(), true), moneyText(r.GetRevenueMinor(), r.GetCurrency(), true))
	if len(r.GetTop()) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rank\tcustomer\trevenue (%s)\torders\t\n", orNone(r.GetCurrency()))
	for _, c := range r.GetTop() {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t\n", c.GetRank(), c.GetCustomerId(), moneyText(c.GetRevenueMinor(), r.GetCurrency(), false), c.GetOrders())
	}
	_ = tw.Flush()
	if r.GetNextPageToken() != "" {
		fmt.Fprintf(w, "%s --page-token %s\n", moreOfTheSame, r.GetNextPageToken())
	}
}

func printSales(w io.Writer, r *metricsv1.GetSalesResponse, soFar bool) {
	fmt.Fprintf(w, "Sales, %s\n", periodText(r.GetPeriod(), soFar))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cur := r.GetCurrency()
	fmt.Fprintf(tw, "  orders\t%d\n", r.GetOrders())
	fmt.Fprintf(tw, "  customers\t%d\n", r.GetCustomers())
	fmt.Fprintf(tw, "  gross revenue\t%s\n", moneyText(r.GetGrossRevenueMinor(), cur, true))
	fmt.Fprintf(tw, "  refunded\t%s\n", moneyText(r.GetRefundedMinor(), cur, true))
	fmt.Fprintf(tw, "  net revenue\t%s\n", moneyText(r.GetNetRevenueMinor(), cur, true))
	if r.GetOrders() > 0 {
		fmt.Fprintf(tw, "  average order value\t%s\n", moneyText(r.GetAverageOrderValueMinor(), cur, true))
	} else {
		fmt.Fprintln(tw, "  average order value\tno figure (no orders)")
	}
	if opc := r.GetOrdersPerCustomer(); opc.GetDefined() {
		fmt.Fprintf(tw, "  orders per customer\t%.2f\n", opc.GetValue())
	} else {
		fmt.Fprintln(tw, "  orders per customer\tno figure")
	}
	_ = tw.Flush()
}

func orNone(currency string) string {
	if currency == "" {
		return "no currency yet"
	}
	return currency
}

// printMetricsDemo is the metrics part of the `retain dev --demo` report:
// this quarter's retention, the cohort table of the last twelve months and
// the VIP share (the top 20% of customers' share of revenue over the last
// year). The caller waits for the metrics consumer to catch up first.
func printMetricsDemo(ctx context.Context, w io.Writer, conn grpc.ClientConnInterface, now time.Time) error {
	c := metricsv1.NewMetricsServiceClient(conn)
	now = now.UTC()
	quarter := &metricsv1.Period{From: timestamppb.New(quarterStart(now)), To: timestamppb.New(now)}
	ret, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: quarter})
	if err != nil {
		return fmt.Errorf("metrics: retention: %w", callError(err, "metrics", auth.ScopeRead))
	}
	fmt.Fprintln(w, "\nMetrics (`retain metrics ...` shows more)")
	// The demo measures up to the end of its shop's history (midnight),
	// not up to now: "so far" only if that is now.
	printRetention(w, ret, !now.Before(time.Now().Add(-time.Minute)))

	o := metricsOptions{now: now}
	first, last, _ := cohortRange(o)
	cohorts, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: first, ToMonth: last})
	if err != nil {
		return fmt.Errorf("metrics: cohorts: %w", callError(err, "metrics", auth.ScopeRead))
	}
	fmt.Fprintln(w)
	printCohorts(w, cohorts, false, now)

	year := &metricsv1.Period{From: timestamppb.New(now.AddDate(-1, 0, 0)), To: timestamppb.New(now)}
	top, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: year, Percent: 20, PageSize: 1})
	if err != nil {
		return fmt.Errorf("metrics: top customers: %w", callError(err, "metrics", auth.ScopeRead))
	}
	share := "no figure (no revenue yet)"
	if top.GetRevenueShare().GetDefined() {
		share = fmt.Sprintf("%.1f%% of revenue", top.GetRevenueShare().GetPercent())
	}
	fmt.Fprintf(w, "\nVIP share: the top 20%% of customers over the last year (%d of %d) bring %s (%s of %s)\n",
		top.GetTopCustomers(), top.GetCustomers(), share,
		moneyText(top.GetTopRevenueMinor(), top.GetCurrency(), true), moneyText(top.GetRevenueMinor(), top.GetCurrency(), true))
	return nil
}
