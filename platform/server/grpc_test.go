package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// ingestStub answers Publish with the caller's tenant as the event id,
// panics for the event id "panic", fails below the edge for "fail" and
// answers UNAVAILABLE for "down".
type ingestStub struct {
	ingestv1.UnimplementedIngestServiceServer
}

func (ingestStub) Publish(ctx context.Context, req *ingestv1.PublishRequest) (*ingestv1.PublishResponse, error) {
	if req.GetEvent().GetId() == "panic" {
		panic("stub exploded")
	}
	if req.GetEvent().GetId() == "fail" {
		return nil, Failure(errors.New(`relation "secret_table" does not exist`))
	}
	if req.GetEvent().GetId() == "down" {
		return nil, status.Error(codes.Unavailable, "event bus unavailable; retry with the same event ids")
	}
	c, ok := auth.ClaimsFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no claims in context")
	}
	return &ingestv1.PublishResponse{Result: &ingestv1.EventResult{Id: c.Tenant, Status: ingestv1.EventStatus_EVENT_STATUS_ACCEPTED}}, nil
}

type grpcBundle struct {
	server    *GRPC
	readiness *Readiness
	logs      *testenv.SyncBuffer
	signer    *auth.Signer
	conn      *grpc.ClientConn
	stop      func() error
}

func setupGRPC(t *testing.T) grpcBundle {
	t.Helper()
	tel, logs := newTelemetry(t)
	keys := authtest.Keys(t)
	signer, verifier := keys.Signer, keys.Verifier
	readiness := NewReadiness()
	g, err := NewGRPC(GRPCConfig{Addr: "127.0.0.1:0"}, Deps{
		Telemetry: tel,
		Verifier:  verifier,
		// PublishBatch is deliberately left out: unlisted methods are refused.
		MethodScopes: map[string]string{ingestv1.IngestService_Publish_FullMethodName: auth.ScopeEventsWrite},
		Readiness:    readiness,
	})
	if err != nil {
		t.Fatal(err)
	}
	ingestv1.RegisterIngestServiceServer(g.Server, ingestStub{})
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, g)

	conn, err := grpc.NewClient(g.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return grpcBundle{server: g, readiness: readiness, logs: logs, signer: signer, conn: conn, stop: stop}
}

func (b grpcBundle) token(t *testing.T, scopes ...string) string {
	t.Helper()
	tok, err := b.signer.Issue(auth.Claims{Tenant: "shop-7", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestGRPCAuth(t *testing.T) {
	b := setupGRPC(t)
	writer := b.token(t, auth.ScopeEventsWrite)
	reader := b.token(t, auth.ScopeRead)
	admin := b.token(t, auth.ScopeAdmin)

	tests := []struct {
		name   string
		token  string
		call   func(ctx context.Context, c ingestv1.IngestServiceClient, opts ...grpc.CallOption) error
		want   codes.Code
		tenant string
	}{
		{"publish without token is unauthenticated", "", publish(""), codes.Unauthenticated, ""},
		{"publish with garbage token is unauthenticated", "not.a.token", publish(""), codes.Unauthenticated, ""},
		{"publish with read scope is denied", reader, publish(""), codes.PermissionDenied, ""},
		{"publish with events:write succeeds as the token's tenant", writer, publish(""), codes.OK, "shop-7"},
		{"publish with admin succeeds", admin, publish(""), codes.OK, "shop-7"},
		{"method missing from the scope map is denied even to admin", admin, publishBatch, codes.PermissionDenied, ""},
		{"handler panic becomes internal", writer, publish("panic"), codes.Internal, ""},
		{"a failure below the edge is internal, not unavailable", writer, publish("fail"), codes.Internal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var opts []grpc.CallOption
			if tt.token != "" {
				opts = append(opts, grpc.PerRPCCredentials(auth.BearerCredentials{Token: tt.token}))
			}
			err := tt.call(ctx, ingestv1.NewIngestServiceClient(b.conn), opts...)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if tt.want == codes.Internal && (strings.Contains(err.Error(), "exploded") || strings.Contains(err.Error(), "secret_table")) {
				t.Errorf("server-side detail leaked to the client: %v", err)
			}
		})
	}

	logs := b.logs.String()
	t.Run("panic is logged with its stack", func(t *testing.T) {
		if !strings.Contains(logs, "stub exploded") || !strings.Contains(logs, "goroutine") {
			t.Errorf("logs lack the panic and stack:\n%s", logs)
		}
	})
	t.Run("a failure's cause is logged", func(t *testing.T) {
		if !strings.Contains(logs, `relation \"secret_table\" does not exist`) {
			t.Errorf("logs lack the failure's cause:\n%s", logs)
		}
	})
	t.Run("calls are logged with method and code", func(t *testing.T) {
		for _, want := range []string{`"grpc.method":"/retain.ingest.v1.IngestService/Publish"`, `"grpc.code":"PermissionDenied"`, `"grpc.code":"OK"`, `"duration"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s", want)
			}
		}
	})
	t.Run("call logs carry the trace id", func(t *testing.T) {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, `"msg":"grpc call"`) && !strings.Contains(line, `"trace_id"`) {
				t.Errorf("call log without trace_id: %s", line)
			}
		}
	})
	t.Run("tokens never reach the logs", func(t *testing.T) {
		for _, tok := range []string{writer, reader, admin} {
			if strings.Contains(logs, tok) {
				t.Error("a token was logged")
			}
		}
		if strings.Contains(strings.ToLower(logs), "bearer") {
			t.Error("authorization metadata was logged")
		}
	})
}

func publish(id string) func(context.Context, ingestv1.IngestServiceClient, ...grpc.CallOption) error {
	return func(ctx context.Context, c ingestv1.IngestServiceClient, opts ...grpc.CallOption) error {
		resp, err := c.Publish(ctx, &ingestv1.PublishRequest{Event: &eventsv1.Event{Id: id}}, opts...)
		if err == nil && resp.GetResult().GetId() != "shop-7" {
			return status.Errorf(codes.DataLoss, "handler saw tenant %q", resp.GetResult().GetId())
		}
		return err
	}
}

// TestGRPCUnavailableAnswersArePaced: while a method keeps answering
// UNAVAILABLE (its bus or database down) its calls are not logged one by
// one; the first is, and the end of the run with how many there were.
func TestGRPCUnavailableAnswersArePaced(t *testing.T) {
	b := setupGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	writer := grpc.PerRPCCredentials(auth.BearerCredentials{Token: b.token(t, auth.ScopeEventsWrite)})
	c := ingestv1.NewIngestServiceClient(b.conn)
	for range 20 {
		if err := publish("down")(ctx, c, writer); status.Code(err) != codes.Unavailable {
			t.Fatalf("code %v, want Unavailable", status.Code(err))
		}
	}
	if err := publish("")(ctx, c, writer); err != nil {
		t.Fatal(err)
	}
	var unavailable, again []string
	for _, line := range strings.Split(b.logs.String(), "\n") {
		switch {
		case strings.Contains(line, `"grpc.code":"Unavailable"`):
			unavailable = append(unavailable, line)
		case strings.Contains(line, `"msg":"grpc method answers again"`):
			again = append(again, line)
		}
	}
	if len(unavailable) != 1 || !strings.Contains(unavailable[0], "event bus unavailable") {
		t.Errorf("%d lines for 20 UNAVAILABLE answers, want the first one:\n%s", len(unavailable), strings.Join(unavailable, "\n"))
	}
	if len(again) != 1 || !strings.Contains(again[0], `"unavailable_calls":20`) || !strings.Contains(again[0], `"not_logged":19`) ||
		!strings.Contains(again[0], `"grpc.method":"/retain.ingest.v1.IngestService/Publish"`) {
		t.Errorf("end of the run logged as %q, want one line counting 20 calls, 19 of them not logged", again)
	}

	// A method failing some calls and answering others (a dependency that
	// flaps) logs no more within the minute: the answers in between end
	// nothing new.
	before := len(strings.Split(b.logs.String(), "\n"))
	for range 20 {
		_ = publish("down")(ctx, c, writer)
		if err := publish("")(ctx, c, writer); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	for _, line := range strings.Split(b.logs.String(), "\n")[before-1:] {
		if strings.Contains(line, `"grpc.code":"Unavailable"`) || strings.Contains(line, "answers again") {
			lines = append(lines, line)
		}
	}
	if len(lines) > 0 {
		t.Errorf("20 UNAVAILABLE answers among 20 OK ones within the minute logged %d lines, want none:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

func publishBatch(ctx context.Context, c ingestv1.IngestServiceClient, opts ...grpc.CallOption) error {
	_, err := c.PublishBatch(ctx, &ingestv1.PublishBatchRequest{}, opts...)
	return err
}

func TestGRPCPublicServices(t *testing.T) {
	b := setupGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("health is reachable without a token", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check = %v, %v", resp, err)
		}
		resp, err = healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "retain.ingest.v1.IngestService"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(IngestService) = %v, %v", resp, err)
		}
	})
	t.Run("reflection is reachable without a token", func(t *testing.T) {
		stream, err := reflectionpb.NewServerReflectionClient(b.conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, ","), "retain.ingest.v1.IngestService") {
			t.Errorf("reflection lists %v", names)
		}
	})
	t.Run("unscoped methods are named in a warning at start", func(t *testing.T) {
		if !strings.Contains(b.logs.String(), "PublishBatch") {
			t.Errorf("no warning about PublishBatch:\n%s", b.logs)
		}
	})
}

func TestGRPCHealthFollowsReadiness(t *testing.T) {
	b := setupGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(b.conn)
	check := func(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp.GetStatus()
	}

	var failing atomic.Bool
	failing.Store(true)
	b.readiness.AddCheck("postgres", func(context.Context) error {
		if failing.Load() {
			return errors.New("connection refused")
		}
		return nil
	})
	if got := check(t); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("with a failing check: %v", got)
	}
	failing.Store(false)
	if got := check(t); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after the check recovered: %v", got)
	}
	b.readiness.SetDraining()
	if got := check(t); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("while draining: %v", got)
	}

	t.Run("stops cleanly with a health watch open", func(t *testing.T) {
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := b.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestNewGRPCRejectsBadWiring(t *testing.T) {
	v := authtest.Keys(t).Verifier
	tests := []struct {
		name string
		cfg  GRPCConfig
		deps Deps
		want string
	}{
		{"no verifier", GRPCConfig{Addr: ":0"}, Deps{}, "verifier is required"},
		{"unknown scope", GRPCConfig{Addr: ":0"}, Deps{Verifier: v, MethodScopes: map[string]string{"/a.B/C": "write"}}, "unknown scope"},
		{"missing addr", GRPCConfig{}, Deps{Verifier: v}, "RETAIN_GRPC_ADDR (-grpc-addr): must be set"},
		{"addr without port", GRPCConfig{Addr: "localhost"}, Deps{Verifier: v}, "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewGRPC(tt.cfg, tt.deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewGRPC error = %v, want %q", err, tt.want)
			}
		})
	}
}
