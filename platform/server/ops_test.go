package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestOpsEndpoints(t *testing.T) {
	tel, _ := newTelemetry(t)
	readiness := NewReadiness()
	var pgDown atomic.Bool
	readiness.AddCheck("postgres", func(context.Context) error {
		if pgDown.Load() {
			return errors.New("dial tcp 127.0.0.1:5432: connection refused")
		}
		return nil
	})
	readiness.AddCheck("panicky", func(context.Context) error {
		if pgDown.Load() {
			panic("check bug")
		}
		return nil
	})
	ops, err := NewOps(OpsConfig{Addr: ":0"}, OpsDeps{Telemetry: tel, Readiness: readiness})
	if err != nil {
		t.Fatal(err)
	}
	counter, err := tel.MeterProvider.Meter("retain/test").Int64Counter("retain_test_ops_requests")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(context.Background(), 5)

	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		ops.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}

	t.Run("healthz answers while the process runs", func(t *testing.T) {
		if code, body := get("/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
			t.Errorf("/healthz = %d %s", code, body)
		}
	})
	t.Run("readyz is 200 when every check passes", func(t *testing.T) {
		if code, body := get("/readyz"); code != http.StatusOK {
			t.Errorf("/readyz = %d %s", code, body)
		}
	})
	t.Run("readyz is 503 with every failing check named", func(t *testing.T) {
		pgDown.Store(true)
		defer pgDown.Store(false)
		code, body := get("/readyz")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d", code)
		}
		var got struct {
			Status  string
			Reasons []struct{ Check, Reason string }
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		if len(got.Reasons) != 2 || got.Reasons[0].Check != "panicky" || !strings.Contains(got.Reasons[0].Reason, "panicked") ||
			got.Reasons[1].Check != "postgres" || !strings.Contains(got.Reasons[1].Reason, "connection refused") {
			t.Errorf("reasons = %+v", got.Reasons)
		}
	})
	t.Run("metrics exposes MeterProvider instruments", func(t *testing.T) {
		code, body := get("/metrics")
		if code != http.StatusOK || !strings.Contains(body, "retain_test_ops_requests_total") {
			t.Errorf("/metrics = %d, lacks the counter:\n%.500s", code, body)
		}
	})
	t.Run("readyz is 503 once draining even if checks pass", func(t *testing.T) {
		readiness.SetDraining()
		code, body := get("/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
			t.Errorf("/readyz = %d %s", code, body)
		}
		if code, _ := get("/healthz"); code != http.StatusOK {
			t.Errorf("/healthz while draining = %d, want 200 (alive)", code)
		}
	})
}

func TestOpsServesOverTCPAndStops(t *testing.T) {
	tel, _ := newTelemetry(t)
	ops, err := NewOps(OpsConfig{Addr: "127.0.0.1:0"}, OpsDeps{Telemetry: tel, Readiness: NewReadiness()})
	if err != nil {
		t.Fatal(err)
	}
	if ops.Addr() != "" {
		t.Error("Addr before Listen")
	}
	if err := ops.Listen(); err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, ops)
	resp, err := http.Get("http://" + ops.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("/metrics over TCP = %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := http.Get("http://" + ops.Addr() + "/healthz"); err == nil {
		t.Error("still serving after stop")
	}
}

func TestOpsConfigValidate(t *testing.T) {
	if _, err := NewOps(OpsConfig{Addr: "nope"}, OpsDeps{Readiness: NewReadiness()}); err == nil || !strings.Contains(err.Error(), "RETAIN_OPS_ADDR") {
		t.Errorf("NewOps with a bad address = %v", err)
	}
	if _, err := NewOps(OpsConfig{Addr: ":0"}, OpsDeps{}); err == nil {
		t.Error("NewOps without readiness succeeded")
	}
}

// TestReadyzAnswersWhileACheckHangs: a check that does not heed its
// context (a NATS client's status behind a write blocked on a hung
// server) does not hold /readyz past the check bound; one that heeds it
// gives its own reason.
func TestReadyzAnswersWhileACheckHangs(t *testing.T) {
	tel, _ := newTelemetry(t)
	readiness := NewReadiness()
	readiness.timeout = 200 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	readiness.AddCheck("nats", func(context.Context) error {
		<-release
		return nil
	})
	readiness.AddCheck("postgres", func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("database db:5432/x did not answer")
	})
	ops, err := NewOps(OpsConfig{Addr: ":0"}, OpsDeps{Telemetry: tel, Readiness: readiness})
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		ops.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		answered <- rec
	}()
	select {
	case rec := <-answered:
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, `"check":"nats","reason":"no answer within 200ms"`) ||
			!strings.Contains(body, "did not answer") {
			t.Fatalf("/readyz = %d %s", rec.Code, body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("/readyz waited for a check that does not heed its context")
	}
}
