package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// hostedStub is a minimal Service: the ingest stub over gRPC, one HTTP route
// and a background loop.
type hostedStub struct {
	verifier     *auth.Verifier
	unready      atomic.Bool
	sawDraining  atomic.Bool
	readiness    func() *Readiness
	runReturned  chan struct{}
	runCancelled atomic.Bool
}

func (s *hostedStub) Name() string { return "stub" }

func (s *hostedStub) MethodScopes() map[string]string {
	return map[string]string{
		ingestv1.IngestService_Publish_FullMethodName:      auth.ScopeEventsWrite,
		ingestv1.IngestService_PublishBatch_FullMethodName: auth.ScopeEventsWrite,
	}
}

func (s *hostedStub) RegisterGRPC(srv *grpc.Server) {
	ingestv1.RegisterIngestServiceServer(srv, ingestStub{})
}

func (s *hostedStub) RegisterHTTP(mux *http.ServeMux) {
	mux.Handle("POST /v1/echo", auth.RequireScope(s.verifier, auth.ScopeEventsWrite)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := auth.ClaimsFromContext(r.Context())
		io.WriteString(w, c.Tenant)
	})))
	mux.HandleFunc("GET /v1/panic", func(http.ResponseWriter, *http.Request) { panic("handler bug") })
}

func (s *hostedStub) Run(ctx context.Context) error {
	defer close(s.runReturned)
	<-ctx.Done()
	s.sawDraining.Store(s.readiness != nil && s.readiness().IsDraining())
	return ctx.Err()
}

func (s *hostedStub) Ready(context.Context) error {
	if s.unready.Load() {
		return errors.New("not connected to NATS")
	}
	return nil
}

func TestHost(t *testing.T) {
	tel, logs := newTelemetry(t)
	keys := authtest.Keys(t)
	signer, verifier := keys.Signer, keys.Verifier
	token, err := signer.Issue(auth.Claims{Tenant: "shop-7", Scopes: []string{auth.ScopeEventsWrite}})
	if err != nil {
		t.Fatal(err)
	}

	stub := &hostedStub{verifier: verifier, runReturned: make(chan struct{})}
	host, err := NewHost(HostConfig{
		Addrs:     Addrs{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0", Ops: "127.0.0.1:0"},
		Telemetry: tel,
		Verifier:  verifier,
	}, stub)
	if err != nil {
		t.Fatal(err)
	}
	stub.readiness = host.Readiness
	addrs := host.Addrs()
	for name, a := range map[string]string{"grpc": addrs.GRPC, "http": addrs.HTTP, "ops": addrs.Ops} {
		if a == "" || strings.HasSuffix(a, ":0") {
			t.Fatalf("%s address not bound: %q", name, a)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := host.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	t.Run("grpc serves the hosted service with auth", func(t *testing.T) {
		conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Token: token}))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		resp, err := ingestv1.NewIngestServiceClient(conn).Publish(ctx, &ingestv1.PublishRequest{Event: &eventsv1.Event{}})
		if err != nil || resp.GetResult().GetId() != "shop-7" {
			t.Fatalf("Publish = %v, %v", resp, err)
		}
	})

	httpDo := func(t *testing.T, method, path, token string, header http.Header) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+addrs.HTTP+path, strings.NewReader("{}"))
		for k, v := range header {
			req.Header[k] = v
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("public http routes apply their scopes", func(t *testing.T) {
		if code, _ := httpDo(t, "POST", "/v1/echo", "", nil); code != http.StatusUnauthorized {
			t.Errorf("without token = %d", code)
		}
		if code, body := httpDo(t, "POST", "/v1/echo", token, nil); code != http.StatusOK || body != "shop-7" {
			t.Errorf("with token = %d %q", code, body)
		}
	})
	t.Run("http continues the caller's trace and logs its id", func(t *testing.T) {
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		h := http.Header{"Traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}}
		if code, _ := httpDo(t, "POST", "/v1/echo", token, h); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		var line string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"msg":"http request"`) && strings.Contains(l, traceID) {
				line = l
			}
		}
		if line == "" || !strings.Contains(line, `"http.status":200`) {
			t.Errorf("no request log with the caller's trace id:\n%s", logs)
		}
		if strings.Contains(logs.String(), token) {
			t.Error("token logged")
		}
	})
	t.Run("http handler panic answers 500", func(t *testing.T) {
		code, body := httpDo(t, "GET", "/v1/panic", "", nil)
		if code != http.StatusInternalServerError || !strings.Contains(body, `"internal"`) {
			t.Errorf("panic = %d %s", code, body)
		}
	})
	t.Run("unrouted requests answer the JSON error shape", func(t *testing.T) {
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, c := range []struct {
			method, path string
			status       int
			code, allow  string
		}{
			{"GET", "/v1/echo", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
			{"DELETE", "/v1/echo", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
			{"POST", "/v1/nothing", http.StatusNotFound, "not_found", ""},
			{"GET", "/", http.StatusNotFound, "not_found", ""},
			{"GET", "/v1//panic", http.StatusTemporaryRedirect, "", ""}, // the mux's own redirect is kept
		} {
			req, _ := http.NewRequestWithContext(ctx, c.method, "http://"+addrs.HTTP+c.path, nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("%s %s = %d %s, want %d", c.method, c.path, resp.StatusCode, b, c.status)
				continue
			}
			if c.code == "" {
				continue
			}
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != c.code || e.Error.Message == "" ||
				resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: %s %q, want JSON error code %q", c.method, c.path, resp.Header.Get("Content-Type"), b, c.code)
			}
			if got := resp.Header.Get("Allow"); got != c.allow {
				t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
			}
		}
	})
	t.Run("readyz names an unready service", func(t *testing.T) {
		stub.unready.Store(true)
		defer stub.unready.Store(false)
		resp, err := http.Get("http://" + addrs.Ops + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"check":"stub"`) {
			t.Errorf("/readyz = %d %s", resp.StatusCode, b)
		}
		wctx, wcancel := context.WithCancel(ctx)
		wcancel()
		if err := host.WaitReady(wctx, time.Second); err == nil || !strings.Contains(err.Error(), "stub: not connected to NATS") {
			t.Errorf("WaitReady = %v", err)
		}
	})
	t.Run("shutdown drains before stopping the service", func(t *testing.T) {
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		done <- nil // for the cleanup
		<-stub.runReturned
		if !stub.sawDraining.Load() {
			t.Error("service stopped before readiness went false")
		}
		if _, err := net.DialTimeout("tcp", addrs.GRPC, time.Second); err == nil {
			t.Error("grpc still listening after shutdown")
		}
	})
}

func TestNewHostReleasesPortsOnFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	verifier := authtest.Keys(t).Verifier

	// Find a free port for gRPC, then make ops collide with the busy one.
	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	grpcAddr := probe.Addr().String()
	probe.Close()

	_, err = NewHost(HostConfig{Addrs: Addrs{GRPC: grpcAddr, Ops: busy.Addr().String()}, Verifier: verifier},
		&hostedStub{verifier: verifier, runReturned: make(chan struct{})})
	if err == nil || !strings.Contains(err.Error(), "ops listen") {
		t.Fatalf("NewHost = %v, want an ops listen error", err)
	}
	l, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Fatalf("grpc port still held after the failed start: %v", err)
	}
	l.Close()

	t.Run("no services", func(t *testing.T) {
		if _, err := NewHost(HostConfig{Addrs: Addrs{GRPC: ":0"}, Verifier: verifier}); err == nil {
			t.Error("NewHost without services succeeded")
		}
	})
}
