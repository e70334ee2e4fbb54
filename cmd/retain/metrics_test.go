package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// cannedMetrics is a MetricsService that answers fixed figures and records
// the requests, so the command's flags -> request mapping and its tables can
// be checked without the service (whose own tests run on NATS and Postgres).
type cannedMetrics struct {
	metricsv1.UnimplementedMetricsServiceServer
	mu       sync.Mutex
	requests []proto.Message
}

func (c *cannedMetrics) record(m proto.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, m)
}

func (c *cannedMetrics) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.requests)
}

func (c *cannedMetrics) last() proto.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[len(c.requests)-1]
}

func ratioOf(num, den int64) *metricsv1.Ratio {
	if den == 0 {
		return &metricsv1.Ratio{Numerator: num}
	}
	return &metricsv1.Ratio{Numerator: num, Denominator: den, Defined: true, Value: float64(num) / float64(den), Percent: float64(num) * 100 / float64(den)}
}

// measured is the period the service measures: up to now, as it does.
func measured(p *metricsv1.Period) *metricsv1.Period {
	if now := time.Now(); p.GetTo().AsTime().After(now) {
		return &metricsv1.Period{From: p.GetFrom(), To: timestamppb.New(now)}
	}
	return p
}

func (c *cannedMetrics) GetRetention(_ context.Context, req *metricsv1.GetRetentionRequest) (*metricsv1.GetRetentionResponse, error) {
	c.record(req)
	if req.GetPeriod().GetFrom().AsTime().After(time.Now()) {
		return nil, status.Error(codes.InvalidArgument, "invalid request: period.from: 2099-01-01T00:00:00Z is not in the past")
	}
	return &metricsv1.GetRetentionResponse{
		Period: measured(req.GetPeriod()), WindowDays: req.GetWindowDays(), ActiveAtStart: 1776, ActiveAtEnd: 1969, NewCustomers: 826,
		Retained: 1035, Churned: 741, Reactivated: 118, NewActiveAtEnd: 816,
		RetentionRate: ratioOf(1143, 1776), ChurnRate: ratioOf(741, 1776), LostPerAcquired: ratioOf(741, 826),
	}, nil
}

func (c *cannedMetrics) GetCohorts(_ context.Context, req *metricsv1.GetCohortsRequest) (*metricsv1.GetCohortsResponse, error) {
	c.record(req)
	if req.GetFromMonth() == "2010-12" {
		// A triangle of 14 cohorts: members, then shares falling with k.
		resp := &metricsv1.GetCohortsResponse{FromMonth: req.GetFromMonth(), ToMonth: req.GetToMonth(), Currency: "GBP"}
		first, _ := time.Parse("2006-01", req.GetFromMonth())
		for i := range 14 {
			row := &metricsv1.CohortRow{Cohort: first.AddDate(0, i, 0).Format("2006-01"), Members: int64(885 - 60*i)}
			for k := range 14 - i {
				row.Cells = append(row.Cells, &metricsv1.CohortCell{Offset: int32(k), Share: ratioOf(int64(100-7*k), 100), RevenuePerMemberMinor: int64(64713 - 4000*k)})
			}
			resp.Rows = append(resp.Rows, row)
		}
		return resp, nil
	}
	return &metricsv1.GetCohortsResponse{FromMonth: req.GetFromMonth(), ToMonth: req.GetToMonth(), Currency: "GBP", Rows: []*metricsv1.CohortRow{
		{Cohort: "2011-01", Members: 417, Cells: []*metricsv1.CohortCell{
			{Offset: 0, Month: "2011-01", Active: 417, Share: ratioOf(417, 417), RevenueMinor: 29320938, RevenuePerMemberMinor: 70314},
			{Offset: 1, Month: "2011-02", Active: 92, Share: ratioOf(92, 417), RevenueMinor: 5514825, RevenuePerMemberMinor: 13225},
		}},
		{Cohort: "2011-02", Members: 380, Cells: []*metricsv1.CohortCell{
			{Offset: 0, Month: "2011-02", Active: 380, Share: ratioOf(380, 380), RevenueMinor: 15814080, RevenuePerMemberMinor: 41616},
		}},
	}}, nil
}

func (c *cannedMetrics) GetRFM(_ context.Context, req *metricsv1.GetRFMRequest) (*metricsv1.GetRFMResponse, error) {
	c.record(req)
	at := req.GetAt()
	if at == nil {
		at = timestamppb.Now()
	}
	return &metricsv1.GetRFMResponse{At: at, Currency: "GBP", Customers: 0}, nil
}

func (c *cannedMetrics) GetSales(_ context.Context, req *metricsv1.GetSalesRequest) (*metricsv1.GetSalesResponse, error) {
	c.record(req)
	return &metricsv1.GetSalesResponse{Period: measured(req.GetPeriod()), Currency: req.GetCurrency(), Orders: 3, Customers: 2, GrossRevenueMinor: 300, NetRevenueMinor: 300, AverageOrderValueMinor: 100, OrdersPerCustomer: ratioOf(3, 2)}, nil
}

func (c *cannedMetrics) GetTopCustomers(_ context.Context, req *metricsv1.GetTopCustomersRequest) (*metricsv1.GetTopCustomersResponse, error) {
	c.record(req)
	return &metricsv1.GetTopCustomersResponse{
		Period: measured(req.GetPeriod()), Percent: req.GetPercent(), Currency: "GBP", TopCustomers: 844, Customers: 4219,
		TopRevenueMinor: 618860597, RevenueMinor: 833869401, RevenueShare: ratioOf(618860597, 833869401),
		Top: []*metricsv1.RankedCustomer{{Rank: 1, CustomerId: "14646", RevenueMinor: 27161414, Orders: 71}}, NextPageToken: "more",
	}, nil
}

// Rebuild waits until its caller stops waiting, as a long rebuild does.
func (c *cannedMetrics) Rebuild(ctx context.Context, req *metricsv1.RebuildRequest) (*metricsv1.RebuildResponse, error) {
	c.record(req)
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

// GetRebuild answers a rebuild half-way, in another replica's session.
func (c *cannedMetrics) GetRebuild(_ context.Context, req *metricsv1.GetRebuildRequest) (*metricsv1.GetRebuildResponse, error) {
	c.record(req)
	pending := int64(750)
	return &metricsv1.GetRebuildResponse{
		State: metricsv1.RebuildState_REBUILD_STATE_RUNNING, PartialSince: ts("2026-03-02T12:00:00Z"), StartedAt: ts("2026-03-02T12:05:00Z"),
		EventsReplayed: 250, EventsApplied: 240, EventsRejected: 1, EventsPending: &pending, ProgressAt: ts("2026-03-02T12:06:00Z"),
		Process:   &metricsv1.RebuildProcess{Pid: 4242, ClientAddress: "10.1.2.3", ConnectedAt: ts("2026-03-02T11:00:00Z")},
		LastError: "rebuild: fetch: nats: connection closed", FailedAt: ts("2026-03-02T12:04:30Z"),
	}, nil
}

func startCanned(t *testing.T) (*cannedMetrics, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	canned := &cannedMetrics{}
	metricsv1.RegisterMetricsServiceServer(srv, canned)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return canned, lis.Addr().String()
}

func TestMetricsCommand(t *testing.T) {
	canned, addr := startCanned(t)
	run := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		env, out, errOut := testEnv(map[string]string{"RETAIN_ADDR": addr, "RETAIN_TOKEN": "test-token"})
		err := runMetrics(context.Background(), env, args)
		return out.String() + errOut.String(), err
	}

	t.Run("retention of a quarter", func(t *testing.T) {
		out, err := run(t, "retention", "--from", "2011-Q2")
		if err != nil {
			t.Fatal(err)
		}
		want := &metricsv1.GetRetentionRequest{Period: &metricsv1.Period{From: ts("2011-04-01T00:00:00Z"), To: ts("2011-07-01T00:00:00Z")}, WindowDays: 90}
		if got := canned.last(); !proto.Equal(got, want) {
			t.Fatalf("request %v, want %v", got, want)
		}
		for _, line := range []string{"customer retention rate (E - N) / S", "64.4% (1143 / 1776)", "reactivated (in E, not in S, not new)  118", "2011-04-01 to 2011-07-01 (UTC, end excluded), window 90 days"} {
			if !strings.Contains(out, line) {
				t.Errorf("output lacks %q:\n%s", line, out)
			}
		}
	})
	t.Run("rebuild interrupted says it goes on", func(t *testing.T) {
		// Ctrl-C while waiting: the service's rebuild goes on, so the
		// command must not read as if it was cancelled.
		env, _, _ := testEnv(map[string]string{"RETAIN_ADDR": addr, "RETAIN_TOKEN": "test-token"})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := runMetrics(ctx, env, []string{"rebuild"})
		if err == nil || !strings.Contains(err.Error(), "the rebuild goes on in the metrics service") {
			t.Fatalf("rebuild stopped waiting: %v, want it to say the rebuild goes on", err)
		}
	})
	t.Run("rebuild --status says where it runs and how far", func(t *testing.T) {
		out, err := run(t, "rebuild", "--status")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := canned.last().(*metricsv1.GetRebuildRequest); !ok {
			t.Fatalf("request %v, want GetRebuild", canned.last())
		}
		for _, line := range []string{
			"Rebuild running, in the process with database session pid 4242 (no application name, from 10.1.2.3, connected 2026-03-02 11:00:00 UTC).",
			"figures partial since 2026-03-02 12:00:00 UTC",
			"this attempt: started 2026-03-02 12:05:00 UTC, 250 of about 1000 events replayed (25%), 240 applied, 1 rejected, as of 2026-03-02 12:06:00 UTC",
			"an earlier attempt failed 2026-03-02 12:04:30 UTC: rebuild: fetch: nats: connection closed",
		} {
			if !strings.Contains(out, line) {
				t.Errorf("output lacks %q:\n%s", line, out)
			}
		}
		js, err := run(t, "rebuild", "--status", "--output", "json")
		var resp metricsv1.GetRebuildResponse
		if err != nil || protojson.Unmarshal([]byte(js), &resp) != nil || resp.GetProcess().GetPid() != 4242 || resp.GetEventsPending() != 750 {
			t.Fatalf("--output json: %v\n%s", err, js)
		}
	})
	t.Run("rebuild --detach asks not to wait", func(t *testing.T) {
		env, _, _ := testEnv(map[string]string{"RETAIN_ADDR": addr, "RETAIN_TOKEN": "test-token"})
		// The canned Rebuild answers when the call ends: end it once the
		// request is in, not at a deadline that can pass before it is sent.
		before := canned.count()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		go func() {
			for canned.count() == before && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
		}()
		_ = runMetrics(ctx, env, []string{"rebuild", "--detach"})
		if got := canned.last().(*metricsv1.RebuildRequest); !got.GetDetach() {
			t.Fatalf("request %v, want detach", got)
		}
	})
	t.Run("churn with a window and explicit dates", func(t *testing.T) {
		out, err := run(t, "churn", "--from", "2011-04-01", "--to", "2011-07-01T00:00:00Z", "--window", "60")
		if err != nil {
			t.Fatal(err)
		}
		if got := canned.last().(*metricsv1.GetRetentionRequest); got.GetWindowDays() != 60 || got.GetPeriod().GetTo().AsTime() != time.Date(2011, 7, 1, 0, 0, 0, 0, time.UTC) {
			t.Fatalf("request %v", got)
		}
		if !strings.Contains(out, "lost per acquired churned / N  89.7% (741 / 826)") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("cohorts as a heat table", func(t *testing.T) {
		out, err := run(t, "cohorts", "--from", "2011-01", "--to", "2011-02")
		if err != nil {
			t.Fatal(err)
		}
		if got := canned.last().(*metricsv1.GetCohortsRequest); got.GetFromMonth() != "2011-01" || got.GetToMonth() != "2011-02" {
			t.Fatalf("request %v", got)
		}
		for _, line := range []string{"2011-01     417 #100% : 22%", "2011-02     380 #100%"} {
			if !strings.Contains(out, line) {
				t.Errorf("output lacks %q:\n%s", line, out)
			}
		}
	})
	t.Run("a year of cohorts by naming the year", func(t *testing.T) {
		if _, err := run(t, "cohorts", "--from", "2011", "--revenue"); err != nil {
			t.Fatal(err)
		}
		if got := canned.last().(*metricsv1.GetCohortsRequest); got.GetFromMonth() != "2011-01" || got.GetToMonth() != "2011-12" {
			t.Fatalf("request %v", got)
		}
	})
	t.Run("json output is the response as protojson", func(t *testing.T) {
		out, err := run(t, "top", "--from", "2011", "--percent", "10", "--output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var resp metricsv1.GetTopCustomersResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if resp.GetTopCustomers() != 844 || resp.GetPercent() != 10 {
			t.Fatalf("decoded %v", &resp)
		}
	})
	t.Run("the service's refusal is shown with its field", func(t *testing.T) {
		_, err := run(t, "retention", "--from", "2099")
		if err == nil || err.Error() != "invalid request: period.from: 2099-01-01T00:00:00Z is not in the past" {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("a period ending after now is shown as measured, so far", func(t *testing.T) {
		now := time.Now().UTC()
		out, err := run(t, "retention", "--from", fmt.Sprintf("%d-Q%d", now.Year(), (int(now.Month())+2)/3))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("Retention, %s to %s", quarterStart(now).Format(time.DateOnly), now.Format(time.DateOnly))
		if !strings.Contains(out, want) || !strings.Contains(out, "(UTC, so far), window 90 days") {
			t.Errorf("output lacks %q ... (UTC, so far):\n%s", want, out)
		}
		out, err = run(t, "sales")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Sales, "+quarterStart(now).Format(time.DateOnly)+" to ") || !strings.Contains(out, "(UTC, so far)") {
			t.Errorf("this quarter so far:\n%s", out)
		}
	})
	t.Run("--to alone starts at this quarter's start", func(t *testing.T) {
		to := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
		if _, err := run(t, "retention", "--to", to.Format(time.RFC3339)); err != nil {
			t.Fatal(err)
		}
		got := canned.last().(*metricsv1.GetRetentionRequest).GetPeriod()
		if !got.GetFrom().AsTime().Equal(quarterStart(time.Now().UTC())) || !got.GetTo().AsTime().Equal(to) {
			t.Fatalf("period %v", got)
		}
	})
	t.Run("cohorts with --to alone are the twelve months to it", func(t *testing.T) {
		if _, err := run(t, "cohorts", "--to", "2011-12"); err != nil {
			t.Fatal(err)
		}
		if got := canned.last().(*metricsv1.GetCohortsRequest); got.GetFromMonth() != "2011-01" || got.GetToMonth() != "2011-12" {
			t.Fatalf("request %v", got)
		}
	})
	t.Run("the cohort table lines up past +12 in any terminal", func(t *testing.T) {
		for _, args := range [][]string{{"cohorts", "--from", "2010-12", "--to", "2012-01"}, {"cohorts", "--from", "2010-12", "--to", "2012-01", "--revenue"}} {
			out, err := run(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			// Every character is one column wide whatever the terminal
			// (ASCII), and each row's cells end where the header's do.
			lines := strings.Split(out, "\n")
			header := cellEnds(lines[1])
			if len(header) != 16 || !strings.HasSuffix(lines[1], "+13") {
				t.Fatalf("header %q", lines[1])
			}
			for _, line := range lines[1:15] {
				for i, r := range line {
					if r > 127 {
						t.Fatalf("non-ASCII %q at %d in %q", r, i, line)
					}
				}
				ends := cellEnds(line)
				if len(ends) < 3 || !slices.Equal(ends, header[:len(ends)]) {
					t.Errorf("row %q ends cells at %v, header at %v\n%s", line, ends, header, out)
				}
			}
		}
	})
	t.Run("rfm without --at is the service's now; with --at, that instant", func(t *testing.T) {
		if _, err := run(t, "rfm"); err != nil {
			t.Fatal(err)
		}
		if got := canned.last().(*metricsv1.GetRFMRequest); got.GetAt() != nil {
			t.Fatalf("request %v: at should be left to the service", got)
		}
		if _, err := run(t, "rfm", "--at", "2011-06"); err != nil {
			t.Fatal(err)
		}
		if got := canned.last().(*metricsv1.GetRFMRequest); !got.GetAt().AsTime().Equal(time.Date(2011, 6, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("request %v", got)
		}
	})
	t.Run("a currency in lower case is sent in upper case", func(t *testing.T) {
		if _, err := run(t, "sales", "--from", "2011", "--currency", "gbp"); err != nil {
			t.Fatal(err)
		}
		if got := canned.last().(*metricsv1.GetSalesRequest); got.GetCurrency() != "GBP" {
			t.Fatalf("request %v", got)
		}
	})
	before := len(canned.requests)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{}, "needs one FIGURE"},
		{[]string{"vibes"}, `unknown figure "vibes"`},
		{[]string{"retention", "extra-arg"}, `unexpected argument "extra-arg": metrics takes one FIGURE (retention)`},
		{[]string{"retention", "--from", "2011", "extra-arg"}, `unexpected argument "extra-arg"`},
		{[]string{"sales", "--output", "yaml"}, "must be text or json"},
		{[]string{"sales", "--from", "last tuesday"}, "--from"},
		{[]string{"retention", "--window", "0"}, "--window 0: must be 1-3650 days (default 90)"},
		{[]string{"retention", "--window", "-5"}, "--window -5: must be 1-3650 days"},
		{[]string{"churn", "--window", "3651"}, "--window 3651: must be 1-3650 days"},
		{[]string{"top", "--percent", "0"}, "--percent 0: must be more than 0 and at most 100 (default 20)"},
		{[]string{"top", "--percent", "-1"}, "--percent -1: must be more than 0"},
		{[]string{"top", "--percent", "100.5"}, "--percent 100.5: must be more than 0 and at most 100"},
		{[]string{"sales", "--currency", "XYZ"}, `--currency "XYZ" is not an ISO 4217 currency code`},
		{[]string{"sales", "--currency", "EURO"}, `--currency "EURO" is not an ISO 4217 currency code`},
	} {
		t.Run("refuses "+strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one saying %q", err, tc.says)
			}
		})
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"vibes"}, `unknown figure "vibes"`},
		{[]string{"sales", "--status"}, "--status and --detach are rebuild's flags, not sales's"},
		{[]string{"retention", "--detach"}, "--status and --detach are rebuild's flags, not retention's"},
		{[]string{"rebuild", "--status", "--detach"}, "--status and --detach do not go together"},
		{[]string{"rebuild", "--status", "now"}, `unexpected argument "now"`},
		{[]string{"sales", "--to", "2011"}, "--to 2011 is not after this quarter's start"},
	} {
		t.Run("usage error "+strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.says) || exitCode(err) != 2 {
				t.Fatalf("error %v (exit %d), want one saying %q, exit 2", err, exitCode(err), tc.says)
			}
		})
	}
	if len(canned.requests) != before {
		t.Errorf("refused flags reached the service: %v", canned.requests[before:])
	}
}

// cellEnds is where each cell of a table line ends, in characters: the
// ends of its space-separated words, less the heat marks (a lone # * : .)
// that begin a share.
func cellEnds(line string) []int {
	var ends []int
	for i := range len(line) {
		if line[i] != ' ' && (i+1 == len(line) || line[i+1] == ' ') {
			if lone := i == 0 || line[i-1] == ' '; lone && strings.ContainsRune("#*:.", rune(line[i])) {
				continue
			}
			ends = append(ends, i+1)
		}
	}
	return ends
}

func ts(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t)
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 5, 17, 12, 0, 0, 0, time.UTC)
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		in         string
		start, end time.Time
	}{
		{"2011-Q2", day(2011, 4, 1), day(2011, 7, 1)},
		{"2011-q4", day(2011, 10, 1), day(2012, 1, 1)},
		{"2011-12", day(2011, 12, 1), day(2012, 1, 1)},
		{"2011", day(2011, 1, 1), day(2012, 1, 1)},
		{"2011-04-15", day(2011, 4, 15), now},
		{"2011-04-15T10:00:00+02:00", time.Date(2011, 4, 15, 8, 0, 0, 0, time.UTC), now},
	} {
		start, end, err := parseWhen(tc.in, now)
		if err != nil || !start.Equal(tc.start) || !end.Equal(tc.end) {
			t.Errorf("parseWhen(%q) = %v, %v, %v; want %v, %v", tc.in, start, end, err, tc.start, tc.end)
		}
	}
	for _, bad := range []string{"", "2011-13", "2011-Q5", "yesterday", "11-04-01"} {
		if _, _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q) accepted", bad)
		}
	}
	if got := quarterStart(now); !got.Equal(day(2026, 4, 1)) {
		t.Errorf("quarterStart = %v", got)
	}
}

func TestMoneyText(t *testing.T) {
	for _, tc := range []struct {
		minor    int64
		currency string
		code     bool
		want     string
	}{
		{123456789, "GBP", true, "1,234,567.89 GBP"},
		{5, "EUR", false, "0.05"},
		{-250, "EUR", false, "-2.50"},
		{1234567, "JPY", true, "1,234,567 JPY"},
		{100, "", true, "1.00"},
	} {
		if got := moneyText(tc.minor, tc.currency, tc.code); got != tc.want {
			t.Errorf("moneyText(%d, %q) = %q, want %q", tc.minor, tc.currency, got, tc.want)
		}
	}
}

func TestPrintMetricsDemo(t *testing.T) {
	canned, addr := startCanned(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	now := time.Date(2026, 5, 17, 12, 0, 0, 0, time.UTC)
	if err := printMetricsDemo(context.Background(), &out, conn, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"customer retention rate", "Cohorts 2025-06 to 2026-05", "VIP share: the top 20% of customers over the last year (844 of 4219) bring 74.2% of revenue"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if got := canned.requests[0].(*metricsv1.GetRetentionRequest).GetPeriod().GetFrom().AsTime(); !got.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("demo retention starts %v, want this quarter", got)
	}
	// Measured to the end of the shop's history, which is not now: not
	// "so far".
	if strings.Contains(out.String(), "(UTC, so far), window") {
		t.Errorf("the demo's retention, measured to %s, says so far:\n%s", now, out.String())
	}
	// A refusal reads as every command's do.
	err = printMetricsDemo(context.Background(), &out, conn, time.Date(2099, 5, 17, 12, 0, 0, 0, time.UTC))
	if want := "metrics: retention: invalid request: period.from: 2099-01-01T00:00:00Z is not in the past"; err == nil || err.Error() != want {
		t.Errorf("a refused demo call: %v, want %q", err, want)
	}
}

// TestMetricsThroughDevStack runs the command against the real services
// (`retain dev`: NATS, Postgres, ingest, metrics): a period ending after now
// is measured up to now and shown so, a future --at or --from is refused by
// the service naming its field, and each flag the service would misread is
// refused (or mended) before a call.
func TestMetricsThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	now := time.Now().UTC()
	var events strings.Builder
	for i, o := range []struct {
		customer string
		ago      time.Duration
	}{
		{"regular", 100 * 24 * time.Hour}, {"regular", 10 * 24 * time.Hour},
		{"quiet", 60 * 24 * time.Hour},
		{"new", 24 * time.Hour},
	} {
		fmt.Fprintf(&events, `{"id":"m-%d","occurred_at":%q,"order_placed":{"customer_id":%q,"order_id":"m-%d","total":{"amount_minor":1000,"currency":"EUR"}}}`+"\n",
			i, now.Add(-o.ago).Format(time.RFC3339), o.customer, i)
	}
	env, out, errOut := testEnv(nil)
	env.stdin = strings.NewReader(events.String())
	if err := run(ctx, env, []string{"publish", "-", "--addr", state.GRPCAddr, "--token", state.Token, "--quiet"}); err != nil || !strings.Contains(out.String(), "4 accepted") {
		t.Fatalf("publish: %v\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out.String(), "applied by the services in the background, within seconds") {
		t.Errorf("publish does not say the figures follow later:\n%s", out)
	}
	metrics := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		env, out, errOut := testEnv(map[string]string{"RETAIN_ADDR": state.GRPCAddr, "RETAIN_TOKEN": state.Token})
		err := runMetrics(ctx, env, args)
		return out.String() + errOut.String(), err
	}
	// The consumer applies the orders asynchronously.
	yearAgo := now.AddDate(-1, 0, 0).Format(time.DateOnly)
	for deadline := time.Now().Add(60 * time.Second); ; {
		out, err := metrics(t, "sales", "--from", yearAgo, "--output", "json")
		var resp metricsv1.GetSalesResponse
		if err == nil && protojson.Unmarshal([]byte(out), &resp) == nil && resp.GetOrders() == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metrics service did not apply the orders: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	quarter := fmt.Sprintf("%d-Q%d", now.Year(), (int(now.Month())+2)/3)
	figureLines := func(out string) string { _, rest, _ := strings.Cut(out, "\n"); return rest }

	t.Run("this quarter asked for whole is this quarter so far", func(t *testing.T) {
		whole, err := metrics(t, "retention", "--from", quarter)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("Retention, %s to %s ", quarterStart(now).Format(time.DateOnly), time.Now().UTC().Format(time.DateOnly))
		if !strings.HasPrefix(whole, want) || !strings.Contains(whole, "(UTC, so far), window 90 days") {
			t.Fatalf("want %q ... (UTC, so far):\n%s", want, whole)
		}
		soFar, err := metrics(t, "retention", "--from", quarterStart(now).Format(time.DateOnly), "--to", time.Now().UTC().Format(time.RFC3339Nano))
		if err != nil {
			t.Fatal(err)
		}
		if figureLines(whole) != figureLines(soFar) {
			t.Errorf("the whole quarter:\n%s\nthe quarter to now:\n%s", whole, soFar)
		}
		js, err := metrics(t, "churn", "--from", quarter, "--output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var resp metricsv1.GetRetentionResponse
		if err := protojson.Unmarshal([]byte(js), &resp); err != nil {
			t.Fatal(err)
		}
		if to := resp.GetPeriod().GetTo().AsTime(); to.After(time.Now()) || to.Before(now) {
			t.Errorf("the response's period ends %v, want now", to)
		}
		out, err := metrics(t, "cohorts", "--from", strconv.Itoa(now.Year()))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("Cohorts %d-01 to %s (so far) by month", now.Year(), time.Now().UTC().Format("2006-01")); !strings.HasPrefix(out, want) {
			t.Errorf("want %q:\n%s", want, out)
		}
	})
	t.Run("the service refuses a future --at and a future --from, naming the field", func(t *testing.T) {
		next := strconv.Itoa(now.Year() + 1)
		if _, err := metrics(t, "rfm", "--at", next+"-01-01"); err == nil || !strings.Contains(err.Error(), "at: "+next+"-01-01T00:00:00Z is in the future") {
			t.Errorf("rfm --at next year: %v", err)
		}
		if out, err := metrics(t, "rfm"); err != nil || !strings.Contains(out, ": 3 customers") {
			t.Errorf("rfm now: %v\n%s", err, out)
		}
		if _, err := metrics(t, "retention", "--from", next); err == nil || !strings.Contains(err.Error(), "period.from: "+next+"-01-01T00:00:00Z is not in the past") {
			t.Errorf("retention --from next year: %v", err)
		}
		if _, err := metrics(t, "cohorts", "--from", next+"-01"); err == nil || !strings.Contains(err.Error(), "from_month: "+next+"-01 is after this month") {
			t.Errorf("cohorts --from next year: %v", err)
		}
	})
	t.Run("rfm and top page on with the more line's flags", func(t *testing.T) {
		// follow runs args, then the flags each "more:" line names, and
		// returns the customers listed on every page, in order.
		follow := func(t *testing.T, lineOf func(string) (string, bool), more string, args ...string) []string {
			t.Helper()
			var listed []string
			for pages := 0; ; pages++ {
				out, err := metrics(t, args...)
				if err != nil || pages > 3 {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
				next := ""
				for _, line := range strings.Split(out, "\n") {
					if c, ok := lineOf(line); ok {
						listed = append(listed, c)
					}
					if _, flags, ok := strings.Cut(line, more); ok {
						next = flags
					}
				}
				if next == "" {
					return listed
				}
				args = append(args[:len(args):len(args)], strings.Fields(next)...)
			}
		}
		// customer reads a listing's line: its customer in field i of at
		// least n fields (the segment table has a segment called new).
		customer := func(i, n int) func(string) (string, bool) {
			return func(line string) (string, bool) {
				f := strings.Fields(line)
				if len(f) >= n && slices.Contains([]string{"regular", "quiet", "new"}, f[i]) {
					return f[i], true
				}
				return "", false
			}
		}
		if got := follow(t, customer(0, 7), moreOfTheSame, "rfm", "--limit", "2"); !slices.Equal(got, []string{"new", "quiet", "regular"}) {
			t.Errorf("rfm by id over pages of 2: %v", got)
		}
		if got := follow(t, customer(1, 4), moreOfTheSame, "top", "--from", yearAgo, "--percent", "100", "--limit", "2"); len(got) != 3 || got[0] != "regular" {
			t.Errorf("top 100%% over pages of 2: %v", got)
		}
	})
	t.Run("rebuild detached, then its status", func(t *testing.T) {
		out, err := metrics(t, "rebuild", "--status")
		if err != nil || !strings.Contains(out, "No rebuild pending: the figures are whole (no rebuild on record).") {
			t.Fatalf("status before any rebuild: %v\n%s", err, out)
		}
		out, err = metrics(t, "rebuild", "--detach", "--output", "json")
		var started metricsv1.RebuildResponse
		if err != nil || protojson.Unmarshal([]byte(out), &started) != nil || started.GetStartedAt() == nil {
			t.Fatalf("rebuild --detach: %v\n%s", err, out)
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, err = metrics(t, "rebuild", "--status")
			if err != nil || strings.HasPrefix(out, "No rebuild pending") || time.Now().After(deadline) {
				break
			}
			if !strings.HasPrefix(out, "Rebuild running, in the process with database session pid ") {
				t.Fatalf("status of a detached rebuild:\n%s", out)
			}
		}
		if err != nil || !strings.Contains(out, "No rebuild pending: the figures are whole.\n") || !strings.Contains(out, "4 events replayed, 4 applied, 0 rejected") {
			t.Fatalf("status after the detached rebuild: %v\n%s", err, out)
		}
	})
	t.Run("flags", func(t *testing.T) {
		to := time.Now().UTC().Truncate(time.Second)
		out, err := metrics(t, "retention", "--to", to.Format(time.RFC3339))
		if want := "Retention, " + quarterStart(now).Format(time.DateOnly); err != nil || !strings.HasPrefix(out, want) {
			t.Errorf("--to alone: want %q: %v\n%s", want, err, out)
		}
		out, err = metrics(t, "sales", "--from", yearAgo, "--currency", "eur")
		if err != nil || !strings.Contains(out, "net revenue          40.00 EUR") {
			t.Errorf("--currency eur: %v\n%s", err, out)
		}
		for _, tc := range []struct {
			args []string
			says string
		}{
			{[]string{"retention", "--window", "0"}, "--window 0: must be 1-3650 days"},
			{[]string{"top", "--percent", "0"}, "--percent 0: must be more than 0 and at most 100"},
			{[]string{"sales", "--currency", "XYZ"}, `--currency "XYZ" is not an ISO 4217 currency code`},
			{[]string{"retention", "extra-arg"}, `unexpected argument "extra-arg"`},
		} {
			if _, err := metrics(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.says)
			}
		}
	})
}

// TestCohortMarksFollowTheShownFigure: a cell's heat mark is chosen from
// the percentage as printed, so two cells showing 15% carry one mark.
func TestCohortMarksFollowTheShownFigure(t *testing.T) {
	cell := func(p float64) *metricsv1.CohortCell {
		return &metricsv1.CohortCell{Share: &metricsv1.Ratio{Percent: p}}
	}
	r := &metricsv1.GetCohortsResponse{FromMonth: "2026-01", ToMonth: "2026-01", Rows: []*metricsv1.CohortRow{
		{Cohort: "2026-01", Members: 40, Cells: []*metricsv1.CohortCell{cell(100), cell(14.6), cell(15), cell(14.4)}},
	}}
	var out bytes.Buffer
	printCohorts(&out, r, false, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	row := strings.Split(out.String(), "\n")[2]
	if !strings.HasSuffix(strings.TrimRight(row, " "), "#100% : 15% : 15% . 14%") {
		t.Errorf("marks do not follow the printed figures:\n%s", out.String())
	}
}

// TestMetricsRangeThroughDevStack: a period or cohort range that ends
// before it starts is a usage error naming the flags (exit 2), found before
// the metrics service is asked; a range in order is answered. (What
// depends on the clock is the service's: TestMetricsThroughDevStack.)
func TestMetricsRangeThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	cli := stackCLI(ctx, state, "metrics")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"sales", "--from", "2026", "--to", "2025"}, "--from 2026 is not before --to 2025: the period [2026-01-01, 2025-01-01) is empty"},
		{[]string{"retention", "--from", "2011-06-01", "--to", "2011-06-01"}, "--from 2011-06-01 is not before --to 2011-06-01"},
		{[]string{"nps", "--from", "2011-06-02T10:00:00Z", "--to", "2011-06-02T09:00:00Z"}, "[2011-06-02T10:00:00Z, 2011-06-02T09:00:00Z) is empty"},
		{[]string{"cohorts", "--from", "2011-06", "--to", "2011-01"}, "--from 2011-06 is after --to 2011-01: the first cohort month (2011-06) comes after the last (2011-01)"},
	} {
		got, err := cli(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.says) || exitCode(err) != 2 {
			t.Errorf("%v: %v (exit %d), want exit 2 and %q\n%s", tc.args, err, exitCode(err), tc.says, got)
		}
	}
	for _, args := range [][]string{{"sales", "--from", "2025", "--to", "2026"}, {"cohorts", "--from", "2011-01", "--to", "2011-01"}} {
		if got, err := cli(args...); err != nil {
			t.Errorf("%v: %v\n%s", args, err, got)
		}
	}
}

// TestCohortRange: --from starts at the first month of what it names and
// --to ends at the last, so a quarter or year takes in all its months.
func TestCohortRange(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ from, to, first, last string }{
		{"", "", "2025-12", "2026-11"},
		{"2011-01", "2011-Q4", "2011-01", "2011-12"},
		{"2011-01", "2011", "2011-01", "2011-12"},
		{"2011-01", "2011-05", "2011-01", "2011-05"},
		{"2011-01", "2011-05-17", "2011-01", "2011-05"},
		{"", "2011-Q4", "2011-01", "2011-12"},
		{"2011-Q2", "", "2011-04", "2011-06"},
		{"2011", "", "2011-01", "2011-12"},
		{"2026-03", "", "2026-03", "2026-11"},
	} {
		first, last, err := cohortRange(metricsOptions{from: tc.from, to: tc.to, now: now})
		if err != nil || first != tc.first || last != tc.last {
			t.Errorf("--from %q --to %q: %s to %s (%v), want %s to %s", tc.from, tc.to, first, last, err, tc.first, tc.last)
		}
	}
}
