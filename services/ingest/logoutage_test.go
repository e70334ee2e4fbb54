package ingest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/ingest"
)

// readyz is the status and body of the service's /readyz.
func (s *stack) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(s.opsURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestHungIngestLogDatabase: an ingest database that stops answering
// without refusing (its server paused, a network black hole) makes every
// request fail its ingest log look-up, so ingest refuses them all for a
// retry (decision 0024). The answer says it is the ingest log, not the
// bus; the outage is logged once, not once a request; ingest is not ready
// meanwhile, naming the database to check; and once the database answers,
// ingest is ready again and says the outage ended within seconds, with no
// request needed (while it is not ready none may come).
func TestHungIngestLogDatabase(t *testing.T) {
	var logs testenv.SyncBuffer
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "ingest-test", LogFormat: "text", Output: &logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var link *testenv.HangingLink
	s := setupWith(t, tel, func(c *ingest.Config) {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		link = testenv.NewHangingLink(t, u.Host)
		u.Host = link.Addr()
		c.DatabaseURL = u.String()
	})
	t.Cleanup(link.Resume) // before the service stops, should the test fail hung
	if resp, a := s.post(t, s.token, batch(order("before", "c-1", 100))); resp.StatusCode != http.StatusOK || a.Accepted != 1 {
		t.Fatalf("before the outage: %d %+v", resp.StatusCode, a)
	}

	link.Hang()
	const requests = 4
	for i := range requests {
		resp, _ := s.post(t, s.token, batch(order(fmt.Sprintf("hung-%d", i), "c-1", 100)))
		code, msg := errorBody(t, resp)
		if resp.StatusCode != http.StatusTooManyRequests || code != "ingest_log_unavailable" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("request %d while the database hangs: %d %s %q; want 429 ingest_log_unavailable with Retry-After", i, resp.StatusCode, code, msg)
		}
		if !strings.Contains(msg, "ingest log") || strings.Contains(msg, "bus") || !strings.Contains(msg, "retry with the same event ids") {
			t.Errorf("message %q does not say the ingest log, not the bus, is unavailable and how to retry", msg)
		}
	}
	st, body := s.readyz(t)
	if st != http.StatusServiceUnavailable || !strings.Contains(body, "ingest log") || !strings.Contains(body, "RETAIN_INGEST_DATABASE_URL") {
		t.Errorf("readyz while every request is refused: %d %s; want 503 naming the ingest database", st, body)
	}
	out := logs.String()
	if n := strings.Count(out, "ingest log look-up failed"); n != 1 {
		t.Errorf("%d outage lines for %d refused requests, want 1:\n%s", n, requests, out)
	}
	if !strings.Contains(out, "RETAIN_INGEST_DATABASE_URL") {
		t.Errorf("the outage line does not name the database to check:\n%s", out)
	}
	if n := strings.Count(out, "ingest publish failed"); n != 0 {
		t.Errorf("%d lines per refused request, want none (the outage is logged once):\n%s", n, out)
	}

	link.Resume()
	resumed := time.Now()
	testenv.WaitForUpTo(t, 15*time.Second, "ingest to be ready again without a request", func() bool {
		st, _ := s.readyz(t)
		return st == http.StatusOK
	})
	logs.WaitFor(t, "ingest log look-up answers again", "failed_lookups=")
	if d := time.Since(resumed); d > 10*time.Second {
		t.Errorf("the end of the outage seen %s after the database answered", d)
	}
	if resp, a := s.post(t, s.token, batch(order("hung-0", "c-1", 100))); resp.StatusCode != http.StatusOK || a.Accepted != 1 {
		t.Fatalf("a retry after the outage: %d %+v", resp.StatusCode, a)
	}
}

// TestUnreachableIngestLogDatabase: an ingest database that refuses
// connections (stopped, restarting) leaves ingest ready and accepting
// events, published on the stream's duplicate window alone (decision
// 0024); the end of the outage is logged within seconds of the database
// taking connections again, with no request needed.
func TestUnreachableIngestLogDatabase(t *testing.T) {
	var logs testenv.SyncBuffer
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "ingest-test", LogFormat: "text", Output: &logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	s := setupWith(t, tel)
	pool, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	end := testenv.DatabaseOutage(t, pool)
	for i := range 3 {
		if resp, a := s.post(t, s.token, batch(order(fmt.Sprintf("away-%d", i), "c-1", 100))); resp.StatusCode != http.StatusOK || a.Accepted != 1 {
			t.Fatalf("request %d while the database refuses connections: %d %+v, want accepted", i, resp.StatusCode, a)
		}
	}
	if st, body := s.readyz(t); st != http.StatusOK {
		t.Errorf("readyz while events are accepted without the ingest log: %d %s, want ready", st, body)
	}
	logs.WaitFor(t, "ingest log look-up failed", "published relying on the stream's duplicate window")

	end()
	ended := time.Now()
	logs.WaitFor(t, "ingest log look-up answers again")
	if d := time.Since(ended); d > 10*time.Second {
		t.Errorf("the end of the outage logged %s after the database took connections again, want within seconds", d)
	}
}
