package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/unknownfields/unknowntest"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// metricsStub counts the calls that reach it.
type metricsStub struct {
	metricsv1.UnimplementedMetricsServiceServer
	calls atomic.Int32
}

func (m *metricsStub) GetTopCustomers(context.Context, *metricsv1.GetTopCustomersRequest) (*metricsv1.GetTopCustomersResponse, error) {
	m.calls.Add(1)
	return &metricsv1.GetTopCustomersResponse{}, nil
}

// ingestCounter counts the Publish calls that reach it.
type ingestCounter struct {
	ingestv1.UnimplementedIngestServiceServer
	calls atomic.Int32
}

func (c *ingestCounter) Publish(context.Context, *ingestv1.PublishRequest) (*ingestv1.PublishResponse, error) {
	c.calls.Add(1)
	return &ingestv1.PublishResponse{}, nil
}

// collectDesc is a client-streaming method, as no Retain API has one: it
// receives Money messages until the client closes and answers how many.
var collectDesc = grpc.ServiceDesc{
	ServiceName: "retain.test.v1.Collector",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{StreamName: "Collect", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
		var n int64
		for {
			m := &eventsv1.Money{}
			err := ss.RecvMsg(m)
			if errors.Is(err, io.EOF) {
				return ss.SendMsg(&eventsv1.Money{AmountMinor: n})
			}
			if err != nil {
				return err
			}
			n++
		}
	}}},
}

type unknownBundle struct {
	metrics *metricsStub
	ingest  *ingestCounter
	conn    *grpc.ClientConn
	creds   grpc.CallOption
}

// setupUnknown serves a metrics stub, an ingest stub whose
// PublishRequest.event is left to the handler, and collectDesc, on a real
// listener.
func setupUnknown(t *testing.T) unknownBundle {
	t.Helper()
	b := unknownBundle{metrics: &metricsStub{}, ingest: &ingestCounter{}}
	b.conn, b.creds = serveStubs(t, []string{metricsv1.MetricsService_GetTopCustomers_FullMethodName}, func(s *grpc.Server) {
		metricsv1.RegisterMetricsServiceServer(s, b.metrics)
	}, b.ingest)
	return b
}

// serveStubs serves, on a real listener and behind the API's auth, the
// stubs register puts on the server, ingest (its PublishRequest.event left
// to the handler) and collectDesc; methods are the stubs' methods. It
// returns a connection and a token's credentials for them.
func serveStubs(t *testing.T, methods []string, register func(*grpc.Server), ingest *ingestCounter) (*grpc.ClientConn, grpc.CallOption) {
	t.Helper()
	keys := authtest.Keys(t)
	scopes := map[string]string{
		ingestv1.IngestService_Publish_FullMethodName: auth.ScopeRead,
		"/retain.test.v1.Collector/Collect":           auth.ScopeRead,
	}
	for _, m := range methods {
		scopes[m] = auth.ScopeRead
	}
	g, err := NewGRPC(GRPCConfig{Addr: "127.0.0.1:0"}, Deps{
		Verifier:         keys.Verifier,
		MethodScopes:     scopes,
		OwnUnknownFields: []protoreflect.FullName{"retain.ingest.v1.PublishRequest.event"},
	})
	if err != nil {
		t.Fatal(err)
	}
	register(g.Server)
	ingestv1.RegisterIngestServiceServer(g.Server, ingest)
	g.Server.RegisterService(&collectDesc, nil)
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	runInBackground(t, g)
	conn, err := grpc.NewClient(g.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tok, err := keys.Signer.Issue(auth.Claims{Tenant: "shop-7", Scopes: []string{auth.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}
	return conn, grpc.PerRPCCredentials(auth.BearerCredentials{Token: tok})
}

func topCustomers() *metricsv1.GetTopCustomersRequest {
	return &metricsv1.GetTopCustomersRequest{
		Period:   &metricsv1.Period{From: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))},
		Currency: "EUR",
	}
}

// TestUnknownRequestFieldsAreRefused: a request holding a field the
// server's schema lacks, anywhere in it, is INVALID_ARGUMENT naming where
// and which, and never reaches the handler, which would have answered as if
// the field had not been sent.
func TestUnknownRequestFieldsAreRefused(t *testing.T) {
	b := setupUnknown(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := metricsv1.NewMetricsServiceClient(b.conn)

	if _, err := metrics.GetTopCustomers(ctx, topCustomers(), b.creds); err != nil || b.metrics.calls.Load() != 1 {
		t.Fatalf("a request of the server's schema: %v (%d calls)", err, b.metrics.calls.Load())
	}

	nested := topCustomers()
	nested.Period = unknowntest.With(t, nested.GetPeriod(), 7)
	for _, tc := range []struct {
		name  string
		req   *metricsv1.GetTopCustomersRequest
		field string
		want  []string
	}{
		{"on the request", unknowntest.With(t, topCustomers(), 9), "request", []string{
			"invalid request: request has field 9 not in this server's schema, whose retain.metrics.v1.GetTopCustomersRequest has 1 period, ",
			"upgrade the service or drop the field"}},
		{"in a message of it", nested, "period", []string{
			"invalid request: period has field 7 not in this server's schema, whose retain.metrics.v1.Period has 1 from, 2 to;"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := metrics.GetTopCustomers(ctx, tc.req, b.creds)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%v, want InvalidArgument", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(status.Convert(err).Message(), w) {
					t.Errorf("message %q lacks %q", status.Convert(err).Message(), w)
				}
			}
			if vs := Violations(err); len(vs) != 1 || vs[0].Field != tc.field {
				t.Errorf("violations %v, want one on %s", vs, tc.field)
			}
			if !UnknownRequestFields(err) {
				t.Error("not told from other bad input")
			}
		})
	}
	if n := b.metrics.calls.Load(); n != 1 {
		t.Errorf("the handler was called %d times, want only for the known request", n)
	}
	if UnknownRequestFields(InvalidArgument(FieldViolation{Field: "period", Description: "is required"})) {
		t.Error("other bad input taken for unknown fields")
	}

	t.Run("a caller without a token learns nothing of the schema", func(t *testing.T) {
		_, err := metrics.GetTopCustomers(ctx, unknowntest.With(t, topCustomers(), 9))
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%v, want Unauthenticated", err)
		}
	})

	t.Run("health probes of a newer grpc.health.v1 are answered", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(b.conn).Check(ctx, unknowntest.With(t, &healthpb.HealthCheckRequest{}, 5))
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health check: %v, %v", resp, err)
		}
	})
}

// TestUnknownFieldsOwnedByTheHandler: a field named in OwnUnknownFields is
// left to its handler (ingest's events, rejected one by one); the rest of
// the request is checked.
func TestUnknownFieldsOwnedByTheHandler(t *testing.T) {
	b := setupUnknown(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ingest := ingestv1.NewIngestServiceClient(b.conn)

	ev := unknowntest.With(t, &eventsv1.Event{Id: "e1"}, 16)
	if _, err := ingest.Publish(ctx, &ingestv1.PublishRequest{Event: ev}, b.creds); err != nil || b.ingest.calls.Load() != 1 {
		t.Fatalf("an event with unknown fields did not reach its handler: %v", err)
	}
	_, err := ingest.Publish(ctx, unknowntest.With(t, &ingestv1.PublishRequest{Event: &eventsv1.Event{Id: "e2"}}, 2), b.creds)
	if status.Code(err) != codes.InvalidArgument || !UnknownRequestFields(err) {
		t.Errorf("a PublishRequest with unknown fields: %v, want them refused", err)
	}

	for _, name := range []protoreflect.FullName{"retain.ingest.v1.PublishRequest.evnt", "retain.ingest.v1.PublishRequest", "retain.events.v1.Event.id"} {
		_, err := NewGRPC(GRPCConfig{Addr: "127.0.0.1:0"}, Deps{Verifier: authtest.Keys(t).Verifier, OwnUnknownFields: []protoreflect.FullName{name}})
		if err == nil || !strings.Contains(err.Error(), string(name)+", whose unknown fields a handler is to check, is not a message field") {
			t.Errorf("%s left to a handler: %v", name, err)
		}
	}
}

// TestUnknownFieldsInAStream: each message a stream receives is checked,
// and the handler gets the refusal from RecvMsg.
func TestUnknownFieldsInAStream(t *testing.T) {
	b := setupUnknown(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	collect := func(msgs ...*eventsv1.Money) (*eventsv1.Money, error) {
		s, err := b.conn.NewStream(ctx, &collectDesc.Streams[0], "/retain.test.v1.Collector/Collect", b.creds)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if err := s.SendMsg(m); err != nil {
				break // the server answered: RecvMsg has it
			}
		}
		if err := s.CloseSend(); err != nil {
			return nil, err
		}
		out := &eventsv1.Money{}
		return out, s.RecvMsg(out)
	}
	if out, err := collect(&eventsv1.Money{}, &eventsv1.Money{}); err != nil || out.GetAmountMinor() != 2 {
		t.Fatalf("known messages: %v, %v", out, err)
	}
	_, err := collect(&eventsv1.Money{}, unknowntest.With(t, &eventsv1.Money{}, 3))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "request has field 3 not in this server's schema, whose retain.events.v1.Money") {
		t.Errorf("a message with unknown fields: %v", err)
	}
}
