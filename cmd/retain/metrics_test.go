package main

import (
	"bytes"
	"context"
	"net"
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

func (c *cannedMetrics) GetRetention(_ context.Context, req *metricsv1.GetRetentionRequest) (*metricsv1.GetRetentionResponse, error) {
	c.record(req)
	if req.GetWindowDays() > 3650 {
		return nil, status.Error(codes.InvalidArgument, "window_days: 5000 days: must be between 1 and 3650")
	}
	return &metricsv1.GetRetentionResponse{
		Period: req.GetPeriod(), WindowDays: 90, ActiveAtStart: 1776, ActiveAtEnd: 1969, NewCustomers: 826,
		Retained: 1035, Churned: 741, Reactivated: 118, NewActiveAtEnd: 816,
		RetentionRate: ratioOf(1143, 1776), ChurnRate: ratioOf(741, 1776), LostPerAcquired: ratioOf(741, 826),
	}, nil
}

func (c *cannedMetrics) GetCohorts(_ context.Context, req *metricsv1.GetCohortsRequest) (*metricsv1.GetCohortsResponse, error) {
	c.record(req)
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

func (c *cannedMetrics) GetTopCustomers(_ context.Context, req *metricsv1.GetTopCustomersRequest) (*metricsv1.GetTopCustomersResponse, error) {
	c.record(req)
	return &metricsv1.GetTopCustomersResponse{
		Period: req.GetPeriod(), Percent: req.GetPercent(), Currency: "GBP", TopCustomers: 844, Customers: 4219,
		TopRevenueMinor: 618860597, RevenueMinor: 833869401, RevenueShare: ratioOf(618860597, 833869401),
		Top: []*metricsv1.RankedCustomer{{Rank: 1, CustomerId: "14646", RevenueMinor: 27161414, Orders: 71}}, NextPageToken: "more",
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
		want := &metricsv1.GetRetentionRequest{Period: &metricsv1.Period{From: ts("2011-04-01T00:00:00Z"), To: ts("2011-07-01T00:00:00Z")}}
		if got := canned.last(); !proto.Equal(got, want) {
			t.Fatalf("request %v, want %v", got, want)
		}
		for _, line := range []string{"customer retention rate (E - N) / S", "64.4% (1143 / 1776)", "reactivated (in E, not in S, not new)  118", "2011-04-01 to 2011-07-01"} {
			if !strings.Contains(out, line) {
				t.Errorf("output lacks %q:\n%s", line, out)
			}
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
		for _, line := range []string{"2011-01     417 █100% ▒ 22%", "2011-02     380 █100%"} {
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
		_, err := run(t, "retention", "--from", "2011-Q2", "--window", "5000")
		if err == nil || err.Error() != "invalid argument: window_days: 5000 days: must be between 1 and 3650" {
			t.Fatalf("error %v", err)
		}
	})
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{}, "needs one FIGURE"},
		{[]string{"vibes"}, `unknown figure "vibes"`},
		{[]string{"sales", "--output", "yaml"}, "must be table or json"},
		{[]string{"sales", "--from", "last tuesday"}, "--from"},
		{[]string{"sales", "--to", "2011"}, "--to needs --from"},
	} {
		t.Run("refuses "+strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one saying %q", err, tc.says)
			}
		})
	}
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
}
