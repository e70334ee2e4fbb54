package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/ingest/internal/app"
	"github.com/retainhq/retain/services/ingest/internal/commit"
	"github.com/retainhq/retain/services/ingest/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStorageFullLogPaced: while JetStream storage is full every request
// is refused, and the log tells it in a few lines: the first refusal at
// once with what to do, then at most a line a minute counting the
// refusals, then a line when events are stored again. A request of
// duplicates only stores nothing and does not end it.
func TestStorageFullLogPaced(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NATS(t)
	b, err := bus.Connect(ctx, bus.Config{URL: ns.URL(), Name: "api-test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(ctx, bus.DefaultStreams(bus.StreamOptions{})...); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	c, err := commit.New(commit.DefaultConfig(), b, store.NewLog(testenv.MigratedPool(t, store.Migrations)),
		&commit.StreamOriginals{Bus: b, Stream: bus.EventsStream}, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	in, err := app.New(c, noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := auth.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := auth.NewVerifierFromString(pub)
	signer, _ := auth.NewSignerFromString(priv)
	token, _ := signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeEventsWrite}})
	h := NewHTTP(in, log)
	clock := testenv.NewClock(time.Now())
	h.now = clock.Now
	mux := http.NewServeMux()
	h.Register(mux, verifier)

	post := func(id string, want int) {
		t.Helper()
		body := fmt.Sprintf(`{"events":[{"id":%q,"occurred_at":%q,"order_placed":{"customer_id":"c","order_id":%[1]q,"total":{"amount_minor":1,"currency":"EUR"}}}]}`,
			id, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
		req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("%s: HTTP %d %s, want %d", id, rec.Code, rec.Body, want)
		}
	}
	lines := func(msg string) []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="`+msg) {
				out = append(out, l)
			}
		}
		return out
	}

	post("o-stored", http.StatusOK)
	ns.LimitStore(t, 1) // less than the stream holds: nothing more is stored
	// 40 refusals in 40 s, as QA saw.
	for i := range 40 {
		post(fmt.Sprintf("o-%d", i), http.StatusTooManyRequests)
		clock.Advance(time.Second)
	}
	first := lines(msgStorageFull)
	if len(first) != 1 || !strings.Contains(first[0], "level=WARN") || !strings.Contains(first[0], "raise the JetStream storage limit or lower RETAIN_EVENTS_MAX_AGE") ||
		!strings.Contains(first[0], "err=") {
		t.Fatalf("after 40 refusals in 40 s, want one line saying what to do, got:\n%s", logs)
	}
	if n := len(lines("ingest publish")); n != 1 {
		t.Fatalf("%d lines for 40 refusals in 40 s, want 1:\n%s", n, logs)
	}
	clock.Advance(21 * time.Second) // a minute after the first
	post("o-40", http.StatusTooManyRequests)
	if still := lines(msgStorageStillFull); len(still) != 1 || !regexp.MustCompile(`level=WARN .* refused_requests=40 full_for=1m1s err=`).MatchString(still[0]) {
		t.Fatalf("a minute on, want one line counting the 40 refusals since the first, got:\n%s", logs)
	}

	ns.LimitStore(t, -1)
	clock.Advance(9 * time.Second)
	post("o-stored", http.StatusOK) // a duplicate: stores nothing
	if n := len(lines(msgStorageRoom)); n != 0 {
		t.Fatalf("a request of duplicates ended the run:\n%s", logs)
	}
	post("o-0", http.StatusOK)
	post("o-1", http.StatusOK)
	if room := lines(msgStorageRoom); len(room) != 1 || !strings.Contains(room[0], "level=INFO") || !strings.Contains(room[0], "refused_requests=41 full_for=1m10s") {
		t.Errorf("want one line when events are stored again, counting all 41 refusals, got:\n%s", logs)
	}
	if n := len(lines("ingest publish")); n != 3 {
		t.Errorf("%d lines for 41 refusals, want 3:\n%s", n, logs)
	}
}
