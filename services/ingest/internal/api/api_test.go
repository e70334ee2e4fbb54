package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/internal/api"
	"github.com/retainhq/retain/services/ingest/internal/app"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

// failing is a committer whose every Submit fails with err.
type failing struct{ err error }

func (f failing) Submit(context.Context, []bus.Message) ([]commit.Outcome, error) { return nil, f.err }

// TestPublishFailures: a failure a retry can get past asks for the retry
// (429 / UNAVAILABLE, saying what failed); any other is a 500 / INTERNAL that
// tells the client nothing of the server's internals.
func TestPublishFailures(t *testing.T) {
	keys := authtest.Keys(t)
	verifier := keys.Verifier
	token, _ := keys.Signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeEventsWrite}})
	const secret = "RETAIN_EVENTS sequence 42"
	cases := []struct {
		name     string
		err      error
		status   int
		code     string
		grpcCode codes.Code
	}{
		{"NATS connection down", bus.ErrNotConnected, http.StatusTooManyRequests, "bus_unavailable", codes.Unavailable},
		{"timeout", fmt.Errorf("bus: atomic publish, waiting for batch ack (%s): %w", secret, nats.ErrTimeout), http.StatusTooManyRequests, "bus_unavailable", codes.Unavailable},
		{"no responders", fmt.Errorf("bus: publish (%s): %w", secret, nats.ErrNoResponders), http.StatusTooManyRequests, "bus_unavailable", codes.Unavailable},
		{"first use unreadable", fmt.Errorf("%w shop/o-1: %s", commit.ErrUnresolved, secret), http.StatusTooManyRequests, "bus_unavailable", codes.Unavailable},
		{"ingest log unavailable", fmt.Errorf("%w: %w (look up 1 ids in the ingest log: %s)", commit.ErrLogUnavailable, commit.ErrUnresolved, secret), http.StatusTooManyRequests, "ingest_log_unavailable", codes.Unavailable},
		{"storage full", fmt.Errorf("bus: atomic publish (%s): %w", secret, bus.ErrStorageFull), http.StatusTooManyRequests, "storage_full", codes.Unavailable},
		{"overloaded", commit.ErrOverloaded, http.StatusTooManyRequests, "overloaded", codes.ResourceExhausted},
		{"broken invariant", fmt.Errorf("publish returned 3 outcomes for 2 messages (%s)", secret), http.StatusInternalServerError, "internal", codes.Internal},
		{"permanent JetStream refusal", fmt.Errorf("bus: atomic publish (%s): %w", secret, errors.New("nats: API error: code=400 err_code=10054 description=maximum messages exceeded")), http.StatusInternalServerError, "internal", codes.Internal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := app.New(failing{c.err}, func() int { return 1 << 20 }, noop.NewMeterProvider().Meter("test"))
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			discard := slog.New(slog.NewTextHandler(io.Discard, nil))
			api.NewHTTP(in, discard, api.NewStorageFullLog(discard)).Register(mux, verifier)
			req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(`{"events":[{"id":"o-1","occurred_at":"2026-01-02T10:00:00Z","order_placed":{"customer_id":"c","order_id":"o-1","total":{"amount_minor":1,"currency":"EUR"}}}]}`))
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != c.status || body.Error.Code != c.code {
				t.Errorf("HTTP %d %s, want %d %s", rec.Code, rec.Body, c.status, c.code)
			}
			if retry := rec.Header().Get("Retry-After") != ""; retry != (c.status == http.StatusTooManyRequests) {
				t.Errorf("HTTP %d with Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
			}
			internal := c.status == http.StatusInternalServerError
			if internal && strings.Contains(rec.Body.String(), secret) {
				t.Errorf("HTTP answer %s tells the client the server's internals", rec.Body)
			}

			ctx := auth.ContextWithClaims(context.Background(), auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeEventsWrite}})
			ev := &eventsv1.Event{Id: "o-1", OccurredAt: timestamppb.Now(), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
				CustomerId: "c", OrderId: "o-1", Total: &eventsv1.Money{AmountMinor: 1, Currency: "EUR"}}}}
			_, err = api.NewGRPC(in, api.NewStorageFullLog(discard)).Publish(ctx, &ingestv1.PublishRequest{Event: ev})
			st := status.Convert(err)
			if st.Code() != c.grpcCode {
				t.Errorf("gRPC %v, want %v", err, c.grpcCode)
			}
			if internal && strings.Contains(st.Message(), secret) {
				t.Errorf("gRPC message %q tells the client the server's internals", st.Message())
			}
			if err != nil && strings.Contains(c.err.Error(), secret) && !strings.Contains(err.Error(), secret) {
				t.Errorf("gRPC error %q lost its cause: the call's log line would not have it", err)
			}
		})
	}
}
