package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/server"
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

// TestCommandNewerThanTheService: a field the command sends that the
// service does not have is refused by the service, and the command says
// the service is of an earlier release, naming the field.
func TestCommandNewerThanTheService(t *testing.T) {
	keys := authtest.Keys(t)
	g, err := server.NewGRPC(server.GRPCConfig{Addr: "127.0.0.1:0"}, server.Deps{
		Verifier:     keys.Verifier,
		MethodScopes: map[string]string{metricsv1.MetricsService_GetTopCustomers_FullMethodName: auth.ScopeRead},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.Server.RegisterService(&olderTopCustomers, nil)
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
	tok, err := keys.Signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}

	env, _, _ := testEnv(map[string]string{"RETAIN_ADDR": g.Addr(), "RETAIN_TOKEN": tok})
	err = runMetrics(context.Background(), env, []string{"top", "--from", "2011", "--percent", "10"})
	for _, want := range []string{
		"the metrics service there runs an earlier release than this command, which sent what it does not know: invalid request: request has fields 2, 4 not in this server's schema",
		"whose retain.metrics.v1.GetRepeatPurchaseRequest has 1 period;",
		"upgrade the service or drop the field",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}
