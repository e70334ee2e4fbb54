package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/server"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// olderTopCustomers is GetTopCustomers of a MetricsService of an earlier
// release, whose request had only a period: played by
// GetRepeatPurchaseRequest, which has just that.
var olderTopCustomers = grpc.ServiceDesc{
	ServiceName: "retain.metrics.v1.MetricsService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "GetTopCustomers", Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := &metricsv1.GetRepeatPurchaseRequest{}
		if err := dec(req); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: metricsv1.MetricsService_GetTopCustomers_FullMethodName}
		return interceptor(ctx, req, info, func(context.Context, any) (any, error) {
			return &metricsv1.GetTopCustomersResponse{}, nil
		})
	}}},
}

// olderPublishBatch is PublishBatch of an IngestService of an earlier
// release whose request had no field this command sends: played by Empty.
var olderPublishBatch = grpc.ServiceDesc{
	ServiceName: "retain.ingest.v1.IngestService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "PublishBatch", Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := &emptypb.Empty{}
		if err := dec(req); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: ingestv1.IngestService_PublishBatch_FullMethodName}
		return interceptor(ctx, req, info, func(context.Context, any) (any, error) {
			return &ingestv1.PublishBatchResponse{}, nil
		})
	}}},
}

// olderService serves desc, a service of an earlier release, with
// method's scope, and returns its address and a token with the scope.
func olderService(t *testing.T, desc *grpc.ServiceDesc, method, scope string) (addr, token string) {
	t.Helper()
	keys := authtest.Keys(t)
	g, err := server.NewGRPC(server.GRPCConfig{Addr: "127.0.0.1:0"}, server.Deps{
		Verifier:     keys.Verifier,
		MethodScopes: map[string]string{method: scope},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.Server.RegisterService(desc, nil)
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	tok, err := keys.Signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{scope}})
	if err != nil {
		t.Fatal(err)
	}
	return g.Addr(), tok
}

// TestCommandNewerThanTheService: a field the command sends that the
// service does not have is refused by the service, and the command says
// the service is of an earlier release, naming the field.
func TestCommandNewerThanTheService(t *testing.T) {
	addr, tok := olderService(t, &olderTopCustomers, metricsv1.MetricsService_GetTopCustomers_FullMethodName, auth.ScopeRead)
	env, _, _ := testEnv(map[string]string{"RETAIN_ADDR": addr, "RETAIN_TOKEN": tok})
	err := runMetrics(context.Background(), env, []string{"top", "--from", "2011", "--percent", "10"})
	for _, want := range []string{
		"the metrics service there runs an earlier release than this command, which sent what it does not know: request has fields 2, 4 not in this server's schema",
		"whose retain.metrics.v1.GetRepeatPurchaseRequest has 1 period;",
		"upgrade the service or drop the field",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}

// TestPublishNewerThanTheService: the same for a batch of events, which
// the import and publish commands send.
func TestPublishNewerThanTheService(t *testing.T) {
	addr, tok := olderService(t, &olderPublishBatch, ingestv1.IngestService_PublishBatch_FullMethodName, auth.ScopeEventsWrite)
	env, _, _ := testEnv(nil)
	env.stdin = strings.NewReader(`{"id":"o-1","occurred_at":"2011-01-04T10:00:00Z","order_placed":{"customer_id":"c","order_id":"o-1","total":{"amount_minor":1,"currency":"EUR"}}}` + "\n")
	err := run(context.Background(), env, []string{"publish", "-", "--addr", addr, "--token", tok, "--quiet"})
	want := "publish batch: the ingest service there runs an earlier release than this command, which sent what it does not know: request has field 1 not in this server's schema"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to say %q", err, want)
	}
}
