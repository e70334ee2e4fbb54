package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
)

// cannedChurn answers ChurnService calls with fixed responses and records
// the requests, so the CLI's flags, paging and output can be checked
// without a running stack (the service itself is tested on real NATS and
// Postgres in services/churnsignal).
type cannedChurn struct {
	churnv1.UnimplementedChurnServiceServer
	mu    sync.Mutex
	reqs  []proto.Message
	auths []string
}

func (c *cannedChurn) record(ctx context.Context, m proto.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, m)
	md, _ := metadata.FromIncomingContext(ctx)
	c.auths = append(c.auths, strings.Join(md.Get("authorization"), ""))
}

var cannedReasons = []*churnv1.RiskReason{
	{Code: "support_tickets", Description: "3 tickets in 30 days, 1 still open", Contribution: 40},
	{Code: "sentiment", Description: "NPS 6 (detractor), 5 days ago", Contribution: 32},
}

func (c *cannedChurn) GetCustomerRisk(ctx context.Context, r *churnv1.GetCustomerRiskRequest) (*churnv1.GetCustomerRiskResponse, error) {
	c.record(ctx, r)
	if r.GetCustomerId() == "nobody" {
		return nil, status.Error(codes.NotFound, `not found: nothing is known about customer "nobody"`)
	}
	asOf := r.GetAsOf()
	if asOf == nil {
		asOf = timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	}
	return &churnv1.GetCustomerRiskResponse{
		Risk: &churnv1.CustomerRisk{CustomerId: r.GetCustomerId(), Score: 72, Band: churnv1.RiskBand_RISK_BAND_HIGH, Reasons: cannedReasons, AsOf: asOf, ComputedAt: asOf},
		Features: &churnv1.CustomerFeatures{Orders: 8, PurchaseDays: 8, DaysSinceLastOrder: 95, TypicalGapDays: 30,
			MeanOrderValue: &churnv1.Money{AmountMinor: 4250, Currency: "EUR"}, Tickets_30D: 3, Tickets_90D: 3, OpenTickets: 1,
			LatestNps: proto.Int32(6), MeanNps: proto.Float64(6), ExpectedPurchases: proto.Float64(0.4), PNoPurchase: proto.Float64(0.7), PAlive: proto.Float64(0.8), HorizonWeeks: 13},
	}, nil
}

func (c *cannedChurn) ListAtRisk(ctx context.Context, r *churnv1.ListAtRiskRequest) (*churnv1.ListAtRiskResponse, error) {
	c.record(ctx, r)
	// Three customers, served in pages of the requested size.
	all := []string{"c-1", "c-2", "c-3"}
	start := 0
	if r.GetPageToken() != "" {
		start = int(r.GetPageToken()[0] - '0')
	}
	end := min(start+int(r.GetPageSize()), len(all))
	resp := &churnv1.ListAtRiskResponse{}
	for i := start; i < end; i++ {
		resp.Customers = append(resp.Customers, &churnv1.CustomerRisk{CustomerId: all[i], Score: int32(80 - 10*i), Band: churnv1.RiskBand_RISK_BAND_HIGH, Reasons: cannedReasons})
	}
	if end < len(all) {
		resp.NextPageToken = string(rune('0' + end))
	}
	return resp, nil
}

var cannedModel = &churnv1.Model{R: 0.2426, Alpha: 4.4136, A: 0.7929, B: 2.4259, LogLikelihood: -9582.43, Customers: 2357, Converged: true,
	FittedAt: timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), AsOf: timestamppb.New(time.Date(1997, 9, 30, 23, 59, 59, 999999999, time.UTC)), Pinned: true, TypicalGapDays: 48.7}

func (c *cannedChurn) GetModel(ctx context.Context, r *churnv1.GetModelRequest) (*churnv1.GetModelResponse, error) {
	c.record(ctx, r)
	return &churnv1.GetModelResponse{Model: cannedModel}, nil
}

func (c *cannedChurn) Refit(ctx context.Context, r *churnv1.RefitRequest) (*churnv1.RefitResponse, error) {
	c.record(ctx, r)
	return &churnv1.RefitResponse{Model: cannedModel, CustomersRescored: 2357, BandChanges: 12}, nil
}

func startCannedChurn(t *testing.T) (*cannedChurn, map[string]string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	c := &cannedChurn{}
	churnv1.RegisterChurnServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return c, map[string]string{"RETAIN_ADDR": lis.Addr().String(), "RETAIN_TOKEN": "tok"}
}

// TestChurnCommands calls runChurn directly: main.go registers it as
// "churn" (the lead wires the command table).
func TestChurnCommands(t *testing.T) {
	svc, vars := startCannedChurn(t)
	ctx := context.Background()
	last := func() proto.Message {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		return svc.reqs[len(svc.reqs)-1]
	}

	t.Run("risk as of a date means the end of that day", func(t *testing.T) {
		env, out, _ := testEnv(vars)
		if err := runChurn(ctx, env, []string{"risk", "c-42", "--as-of", "1997-09-30"}); err != nil {
			t.Fatal(err)
		}
		req := last().(*churnv1.GetCustomerRiskRequest)
		if req.GetCustomerId() != "c-42" || !req.GetAsOf().AsTime().Equal(time.Date(1997, 9, 30, 23, 59, 59, 999999999, time.UTC)) {
			t.Fatalf("request %v", req)
		}
		for _, want := range []string{"c-42: HIGH risk, score 72/100", "+40  support_tickets", "NPS 6 (detractor)", "8 on 8 days, the last 95 days ago", "mean order 42.50 EUR", "0.40 orders expected in the next 13 weeks"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		svc.mu.Lock()
		auth := svc.auths[len(svc.auths)-1]
		svc.mu.Unlock()
		if auth != "Bearer tok" {
			t.Errorf("authorization %q", auth)
		}
	})
	t.Run("risk --output json is the response as protojson", func(t *testing.T) {
		env, out, _ := testEnv(vars)
		if err := runChurn(ctx, env, []string{"risk", "--output", "json", "c-42"}); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Risk struct {
				Score int    `json:"score"`
				Band  string `json:"band"`
			} `json:"risk"`
		}
		if err := json.Unmarshal([]byte(out.String()), &got); err != nil || got.Risk.Score != 72 || got.Risk.Band != "RISK_BAND_HIGH" {
			t.Fatalf("json %s: %v", out, err)
		}
	})
	t.Run("list pages until the limit", func(t *testing.T) {
		env, out, _ := testEnv(vars)
		if err := runChurn(ctx, env, []string{"list", "--band", "high", "--limit", "2"}); err != nil {
			t.Fatal(err)
		}
		req := last().(*churnv1.ListAtRiskRequest)
		if req.GetBand() != churnv1.RiskBand_RISK_BAND_HIGH || req.GetPageSize() != 2 {
			t.Fatalf("request %v", req)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[1], "c-1") || !strings.Contains(lines[1], "80  high") || !strings.HasPrefix(lines[3], moreOfTheSame+" --page-token 2") {
			t.Fatalf("output:\n%s", out)
		}
		env, out, _ = testEnv(vars)
		if err := runChurn(ctx, env, []string{"list", "--output", "json", "--limit", "10"}); err != nil {
			t.Fatal(err)
		}
		if strings.Count(out.String(), `"customerId"`) != 3 {
			t.Fatalf("json of all pages:\n%s", out)
		}
	})
	t.Run("model and refit", func(t *testing.T) {
		env, out, _ := testEnv(vars)
		if err := runChurn(ctx, env, []string{"model"}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "0.2426") || !strings.Contains(out.String(), "-9582.43 over 2357 customers (converged)") || !strings.Contains(out.String(), "pinned") {
			t.Fatalf("model output:\n%s", out)
		}
		env, out, _ = testEnv(vars)
		if err := runChurn(ctx, env, []string{"refit", "--as-of", "1997-09-30T12:00:00Z"}); err != nil {
			t.Fatal(err)
		}
		if req := last().(*churnv1.RefitRequest); !req.GetAsOf().AsTime().Equal(time.Date(1997, 9, 30, 12, 0, 0, 0, time.UTC)) {
			t.Fatalf("refit request %v", req)
		}
		if !strings.Contains(out.String(), "rescored 2357 customers as of now: 12 changed band") {
			t.Fatalf("refit output:\n%s", out)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{}, "churn needs a command"},
			{[]string{"nope"}, `unknown churn command "nope"`},
			{[]string{"risk"}, "one CUSTOMER"},
			{[]string{"risk", "c", "--as-of", "yesterday"}, `invalid value "yesterday" for flag -as-of: want a date`},
			{[]string{"list", "--band", "red"}, `invalid value "red" for flag -band: want high, medium, low or all`},
			{[]string{"model", "--output", "yaml"}, `--output "yaml"`},
			{[]string{"risk", "nobody"}, `nothing is known about customer "nobody"`},
		} {
			env, _, _ := testEnv(vars)
			err := runChurn(ctx, env, tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "not found") > 1 {
				t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
			}
		}
	})
	t.Run("demo report", func(t *testing.T) {
		conn, err := grpc.NewClient(vars["RETAIN_ADDR"], grpc.WithTransportCredentials(insecureCreds()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var b strings.Builder
		if err := printChurnDemo(ctx, &b, conn); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"BG/NBD model over 2357 customers", "3 customers at high risk", "c-1: score 80 (high)", "+40  support_tickets"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("demo lacks %q:\n%s", want, b.String())
			}
		}
	})
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }

// TestChurnListEmptyBandThroughDevStack: a band without customers is
// reported as such when other customers are scored; "no customers scored
// yet" is kept for a tenant with no score at all.
func TestChurnListEmptyBandThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	cli := stackCLI(ctx, state, "churn")
	for _, args := range [][]string{{"list"}, {"list", "--band", "high"}} {
		if got, err := cli(args...); err != nil || strings.TrimSpace(got) != "no customers scored yet" {
			t.Fatalf("%v before any event: %v\n%s", args, err, got)
		}
	}

	// Customers who order every month, the last time yesterday: low risk.
	var ndjson strings.Builder
	now := time.Now().UTC()
	for c := range 5 {
		for i, daysAgo := range []int{61, 31, 1} {
			id := fmt.Sprintf("o-%d-%d", c, i)
			fmt.Fprintf(&ndjson, `{"id":%q,"occurred_at":%q,"order_placed":{"customer_id":"c-%d","order_id":%q,"total":{"amount_minor":4250,"currency":"EUR"}}}`+"\n",
				id, now.AddDate(0, 0, -daysAgo).Format(time.RFC3339), c, id)
		}
	}
	env, out, errOut := testEnv(nil)
	env.stdin = strings.NewReader(ndjson.String())
	if err := run(ctx, env, []string{"publish", "-", "--addr", state.GRPCAddr, "--token", state.Token, "--quiet"}); err != nil {
		t.Fatalf("publish: %v\n%s%s", err, out, errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := cli("list", "--output", "json")
		if err != nil {
			t.Fatalf("list: %v\n%s", err, got)
		}
		if strings.Count(got, `"customerId"`) == 5 {
			if strings.Contains(got, "RISK_BAND_HIGH") {
				t.Fatalf("a customer who ordered yesterday is at high risk:\n%s", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 5 customers were not scored:\n%s", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, err := cli("list", "--band", "high")
	if err != nil || !strings.HasPrefix(got, "no customers at high risk (customers are scored") {
		t.Fatalf("list --band high with 5 customers scored, none high: %v\n%s", err, got)
	}

	// --order customer pages by customer id: the more line's flag, added to
	// the same command, lists the rest.
	var listed []string
	args := []string{"list", "--order", "customer", "--limit", "2"}
	for page := 0; page < 5; page++ {
		got, err := cli(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, got)
		}
		next := ""
		for _, line := range strings.Split(got, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "c-") {
				listed = append(listed, f[0])
			}
			if _, flags, ok := strings.Cut(line, moreOfTheSame); ok {
				next = flags
			}
		}
		if next == "" {
			break
		}
		args = append([]string{"list", "--order", "customer", "--limit", "2"}, strings.Fields(next)...)
	}
	if want := []string{"c-0", "c-1", "c-2", "c-3", "c-4"}; !slices.Equal(listed, want) {
		t.Fatalf("--order customer over pages of 2: %v, want %v", listed, want)
	}
	if _, err := cli("list", "--order", "name"); err == nil || !strings.Contains(err.Error(), "want score or customer") {
		t.Fatalf("--order name: %v", err)
	}
}
