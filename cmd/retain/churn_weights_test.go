package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
)

// cannedWeights answers GetWeights and SetWeights as the service would,
// without its validation beyond one rule, and records the requests.
type cannedWeights struct {
	churnv1.UnimplementedChurnServiceServer
	mu      sync.Mutex
	weights *churnv1.Weights
	set     []*churnv1.SetWeightsRequest
}

var cannedDefaults = &churnv1.Weights{PurchaseOutlook: 70, Overdue: 20, SupportTickets: 35, PriceComplaints: 30, Sentiment: 40, MediumAt: 40, HighAt: 70, Hysteresis: 5}

func (c *cannedWeights) GetWeights(context.Context, *churnv1.GetWeightsRequest) (*churnv1.GetWeightsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.weights == nil {
		return &churnv1.GetWeightsResponse{Weights: cannedDefaults, Default: true, Defaults: cannedDefaults}, nil
	}
	return &churnv1.GetWeightsResponse{Weights: c.weights, Defaults: cannedDefaults, UpdatedAt: timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}, nil
}

func (c *cannedWeights) SetWeights(_ context.Context, r *churnv1.SetWeightsRequest) (*churnv1.SetWeightsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set = append(c.set, r)
	if r.GetPurchaseOutlook() > 95 {
		return nil, status.Error(codes.InvalidArgument, "invalid request: purchase_outlook: 120: must be 0-95 points")
	}
	w := proto.Clone(cannedDefaults).(*churnv1.Weights)
	if r.PurchaseOutlook != nil {
		w.PurchaseOutlook = r.GetPurchaseOutlook()
	}
	if r.SupportTickets != nil {
		w.SupportTickets = r.GetSupportTickets()
	}
	if r.HighAt != nil {
		w.HighAt = r.GetHighAt()
	}
	c.weights = w
	resp := &churnv1.SetWeightsResponse{Weights: w, UpdatedAt: timestamppb.Now()}
	if r.GetRescore() {
		resp.CustomersRescored, resp.BandChanges = 2357, 41
	}
	return resp, nil
}

func TestChurnWeightsCommands(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	svc := &cannedWeights{}
	churnv1.RegisterChurnServiceServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	vars := map[string]string{"RETAIN_ADDR": lis.Addr().String(), "RETAIN_TOKEN": "tok"}
	ctx := context.Background()

	t.Run("show the defaults", func(t *testing.T) {
		env, out, _ := testEnv(vars)
		if err := runChurn(ctx, env, []string{"weights"}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"the defaults (never set)", "purchase_outlook     70   (default 70)", "hysteresis            5   (default 5)", "MEDIUM from 40, HIGH from 70; a band is left 5 points"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("set sends only the flags given and rescores", func(t *testing.T) {
		env, out, _ := testEnv(vars)
		if err := runChurn(ctx, env, []string{"weights", "set", "--outlook", "60", "--tickets", "45.5", "--high-at", "75"}); err != nil {
			t.Fatal(err)
		}
		req := svc.set[len(svc.set)-1]
		if req.GetPurchaseOutlook() != 60 || req.GetSupportTickets() != 45.5 || req.GetHighAt() != 75 || !req.GetRescore() ||
			req.Overdue != nil || req.PriceComplaints != nil || req.Sentiment != nil || req.MediumAt != nil || req.Hysteresis != nil {
			t.Fatalf("request %v", req)
		}
		for _, want := range []string{"support_tickets    45.5", "HIGH from 75", "rescored 2357 customers as of now: 41 changed band"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		env, out, _ = testEnv(vars)
		if err := runChurn(ctx, env, []string{"weights", "set", "--outlook", "0", "--rescore=false", "--output", "json"}); err != nil {
			t.Fatal(err)
		}
		if req := svc.set[len(svc.set)-1]; req.PurchaseOutlook == nil || req.GetPurchaseOutlook() != 0 || req.GetRescore() {
			t.Fatalf("an explicit 0 without rescoring: %v", req)
		}
		var got struct {
			Weights struct {
				PurchaseOutlook *float64 `json:"purchaseOutlook"`
			} `json:"weights"`
			CustomersRescored *int `json:"customersRescored"`
		}
		if err := json.Unmarshal([]byte(out.String()), &got); err != nil || got.Weights.PurchaseOutlook == nil || *got.Weights.PurchaseOutlook != 0 ||
			got.CustomersRescored == nil || *got.CustomersRescored != 0 {
			t.Fatalf("json %s: %v", out, err)
		}
	})
	t.Run("show what was set, as json too", func(t *testing.T) {
		env, out, _ := testEnv(vars)
		if err := runChurn(ctx, env, []string{"weights", "--output", "json"}); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Default  bool                       `json:"default"`
			Weights  map[string]json.RawMessage `json:"weights"`
			Defaults map[string]json.RawMessage `json:"defaults"`
		}
		if err := json.Unmarshal([]byte(out.String()), &got); err != nil || got.Default || string(got.Weights["purchaseOutlook"]) != "0" || string(got.Defaults["purchaseOutlook"]) != "70" {
			t.Fatalf("json %s: %v", out, err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"weights", "set"}, "needs at least one of --outlook"},
			{[]string{"weights", "set", "--tickets", "lots"}, `invalid value "lots"`},
			{[]string{"weights", "set", "--outlook", "120"}, "purchase_outlook: 120: must be 0-95 points"},
			{[]string{"weights", "extra"}, "did you mean `churn weights set`"},
		} {
			env, _, _ := testEnv(vars)
			err := runChurn(ctx, env, tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
			}
		}
	})
}
