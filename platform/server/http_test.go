package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPRequestDurationByStatus: every answer of the public HTTP server
// is counted by method, route and status, so a rate of 429s (ingest
// shedding load) or 5xx alerts as the gRPC API's codes do; unrouted paths
// and unknown methods do not make series of their own.
func TestHTTPRequestDurationByStatus(t *testing.T) {
	tel, _ := newTelemetry(t)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("busy") {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv, err := NewHTTP(HTTPConfig{Addr: "127.0.0.1:0"}, jsonRouteErrors(mux), tel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	runInBackground(t, srv)
	base := "http://" + srv.Addr()
	for _, req := range []struct{ method, path string }{
		{"POST", "/v1/events"}, {"POST", "/v1/events?busy"}, {"POST", "/v1/events?busy"},
		{"GET", "/v1/customers/c-123"}, {"BREW", "/v1/events"},
	} {
		r, err := http.NewRequest(req.method, base+req.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	rec := httptest.NewRecorder()
	tel.MetricsHandler.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), "GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	var lines []string
	for l := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(l, "http_server_request_duration_seconds_count") {
			lines = append(lines, l)
		}
	}
	series := strings.Join(lines, "\n")
	for _, want := range []string{
		`http_request_method="POST",http_response_status_code="200",http_route="POST /v1/events"`,
		`http_request_method="POST",http_response_status_code="429",http_route="POST /v1/events"`,
		`http_request_method="GET",http_response_status_code="404"`,
		`http_request_method="_OTHER",http_response_status_code="405"`,
	} {
		if !strings.Contains(series, want) {
			t.Errorf("no series with %s in:\n%s", want, series)
		}
	}
	if !strings.Contains(series, `http_response_status_code="429",http_route="POST /v1/events"`) || strings.Contains(series, "c-123") {
		t.Errorf("series:\n%s", series)
	}
	for _, l := range lines {
		if strings.Contains(l, `status_code="429"`) && !strings.HasSuffix(l, " 2") {
			t.Errorf("429s counted %q, want 2", l)
		}
	}
}
