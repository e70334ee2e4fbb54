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

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/internal/app"
	"github.com/retainhq/retain/services/ingest/internal/commit"
	"github.com/retainhq/retain/services/ingest/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// storageFullEnv is ingest's HTTP and gRPC edges on real NATS and
// Postgres, with a clock of its own for the storage-full log.
type storageFullEnv struct {
	ns    *testenv.NATSServer
	logs  *testenv.SyncBuffer
	clock *testenv.Clock
	mux   *http.ServeMux
	grpc  *GRPC
	token string
	// occurred is every event's occurred_at: a retry repeats the event
	// unchanged, whichever edge it is sent to.
	occurred time.Time
}

func newStorageFullEnv(t *testing.T) *storageFullEnv {
	t.Helper()
	ctx := context.Background()
	ns := testenv.NATS(t)
	b := testenv.Bus(t, bus.Config{URL: ns.URL(), Name: "api-test"})
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
	in, err := app.New(c, func() int { return 1 << 20 }, noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	keys := authtest.Keys(t)
	token, _ := keys.Signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeEventsWrite}})
	e := &storageFullEnv{ns: ns, logs: logs, clock: testenv.NewClock(time.Now()), mux: http.NewServeMux(), token: token,
		occurred: time.Now().Add(-time.Hour).Truncate(time.Second)}
	sf := NewStorageFullLog(log)
	sf.now = e.clock.Now
	NewHTTP(in, log, sf).Register(e.mux, keys.Verifier)
	e.grpc = NewGRPC(in, sf)
	return e
}

// post sends an order with id over HTTP, failing t unless answered want.
func (e *storageFullEnv) post(t *testing.T, id string, want int) {
	t.Helper()
	body := fmt.Sprintf(`{"events":[{"id":%q,"occurred_at":%q,"order_placed":{"customer_id":"c","order_id":%[1]q,"total":{"amount_minor":1,"currency":"EUR"}}}]}`,
		id, e.occurred.UTC().Format(time.RFC3339))
	req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, req)
	if rec.Code != want {
		t.Fatalf("%s: HTTP %d %s, want %d", id, rec.Code, rec.Body, want)
	}
}

// publish sends an order with id over gRPC, failing t unless answered
// want.
func (e *storageFullEnv) publish(t *testing.T, id string, want codes.Code) {
	t.Helper()
	ctx := auth.ContextWithClaims(context.Background(), auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeEventsWrite}})
	ev := &eventsv1.Event{Id: id, OccurredAt: timestamppb.New(e.occurred), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
		CustomerId: "c", OrderId: id, Total: &eventsv1.Money{AmountMinor: 1, Currency: "EUR"}}}}
	if _, err := e.grpc.Publish(ctx, &ingestv1.PublishRequest{Event: ev}); status.Code(err) != want {
		t.Fatalf("%s: gRPC %v, want %v", id, err, want)
	}
}

// lines are the log lines whose message starts with msg.
func (e *storageFullEnv) lines(msg string) []string {
	var out []string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `msg="`+msg) {
			out = append(out, l)
		}
	}
	return out
}

// TestStorageFullLogPaced: while JetStream storage is full every request
// is refused, and the log tells it in a few lines: the first refusal at
// once with what to do, then at most a line a minute counting the
// refusals, then a line when events are stored again. A request of
// duplicates only stores nothing and does not end it.
func TestStorageFullLogPaced(t *testing.T) {
	e := newStorageFullEnv(t)
	ns, logs, clock, lines := e.ns, e.logs, e.clock, e.lines
	post := func(id string, want int) {
		t.Helper()
		e.post(t, id, want)
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

// TestStorageFullRunEndsOnAnyPath: the run is the service's, not an
// edge's: refusals over HTTP and gRPC count in it, and an event stored
// over gRPC alone ends it. Before, only an HTTP store ended it: with the
// HTTP clients gone, the log never said storage had room again.
func TestStorageFullRunEndsOnAnyPath(t *testing.T) {
	e := newStorageFullEnv(t)
	e.post(t, "o-stored", http.StatusOK)
	e.ns.LimitStore(t, 1)
	e.post(t, "o-http", http.StatusTooManyRequests)
	e.clock.Advance(time.Second)
	e.publish(t, "o-grpc", codes.Unavailable)
	if n := len(e.lines(msgStorageFull)); n != 1 {
		t.Fatalf("%d first lines for a refusal over each edge, want 1:\n%s", n, e.logs)
	}

	e.ns.LimitStore(t, -1)
	e.clock.Advance(time.Second)
	e.publish(t, "o-stored", codes.OK) // a duplicate: stores nothing
	if n := len(e.lines(msgStorageRoom)); n != 0 {
		t.Fatalf("a request of duplicates ended the run:\n%s", e.logs)
	}
	e.publish(t, "o-grpc", codes.OK)
	if room := e.lines(msgStorageRoom); len(room) != 1 || !strings.Contains(room[0], "refused_requests=2 full_for=2s") {
		t.Fatalf("want one line when an event is stored over gRPC, counting both refusals, got:\n%s", e.logs)
	}
	e.post(t, "o-http", http.StatusOK)
	if n := len(e.lines(msgStorageRoom)); n != 1 {
		t.Errorf("%d lines for the end of one run:\n%s", n, e.logs)
	}
}
