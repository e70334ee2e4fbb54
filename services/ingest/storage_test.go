package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// loggedIDs is every msg id of the ingest log that starts with prefix.
func (s *stack) loggedIDs(t *testing.T, prefix string) []string {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var ids []string
	if err := pool.QueryRow(context.Background(),
		`SELECT coalesce(array_agg(msg_id ORDER BY msg_id), '{}') FROM ingest_log WHERE starts_with(msg_id, $1)`, prefix).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

// streamIDs is every msg id on RETAIN_EVENTS that starts with prefix,
// sorted; streamMsgs fails the test on an id stored twice.
func (s *stack) streamIDs(t *testing.T, prefix string) []string {
	t.Helper()
	var ids []string
	for id := range s.streamMsgs(t) {
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// logAgrees waits for the ingest log to hold exactly the events of prefix
// the stream holds.
func (s *stack) logAgrees(t *testing.T, prefix string) []string {
	t.Helper()
	onStream := s.streamIDs(t, prefix)
	var logged []string
	testenv.WaitFor(t, fmt.Sprintf("the ingest log to hold the %d %s* events of the stream", len(onStream), prefix), func() bool {
		logged = s.loggedIDs(t, prefix)
		return slices.Equal(logged, onStream)
	})
	return onStream
}

// TestStorageFull: JetStream refusing to store part of a request for lack of
// room. The request is answered 429 storage_full (retry later, same ids),
// never accepted in part nor answered 500; what was stored is logged by the
// ingest log like any event; the client's retries of the whole request store
// nothing twice and, once there is room, answer the events stored before as
// duplicates and store the rest.
func TestStorageFull(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	events := func(prefix string, n int) []byte {
		evs := make([]string, n)
		for i := range evs {
			evs[i] = order(fmt.Sprintf("%s-%d", prefix, i), "c-1", int64(100+i))
		}
		return batch(evs...)
	}
	if resp, a := s.post(t, s.token, events("warm", 4)); resp.StatusCode != http.StatusOK || a.Accepted != 4 {
		t.Fatalf("warm-up: %d %+v", resp.StatusCode, a)
	}
	info, err := s.js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Room for about three more events: a request of ten is stored in part
	// (a single server commits an atomic batch up to the limit).
	perEvent := int64(info.Store) / 4
	s.nats.LimitStore(t, int64(info.Store)+3*perEvent+perEvent/2)
	body := events("full", 10)

	refused := func(what string) {
		t.Helper()
		resp, _ := s.post(t, s.token, body)
		code, msg := errorBody(t, resp)
		if resp.StatusCode != http.StatusTooManyRequests || code != "storage_full" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %d %s (Retry-After %q) %s; want 429 storage_full with Retry-After", what, resp.StatusCode, code, resp.Header.Get("Retry-After"), msg)
		}
		if !strings.Contains(msg, "no storage left") || !strings.Contains(msg, "retry with the same event ids") {
			t.Errorf("%s: message %q does not say storage is full and how to retry", what, msg)
		}
	}
	refused("the request crossing the limit")
	stored := s.logAgrees(t, "shop/full-")
	if len(stored) == 0 || len(stored) == 10 {
		t.Fatalf("%d of 10 events on the stream: want part of the request", len(stored))
	}

	start := time.Now()
	refused("its retry while storage is full")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("retry refused after %s: want the server's refusal, not a timeout", d)
	}
	// An event larger than the room left: refused whole, however small the
	// room.
	gr, err := ingestv1.NewIngestServiceClient(s.grpc).PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{{
		Id: "grpc-1", OccurredAt: timestamppb.New(time.Now().Add(-time.Hour)), Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
			CustomerId: strings.Repeat("c", 256), SurveyId: strings.Repeat("s", 256), Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: 9}}}}},
		grpc.PerRPCCredentials(auth.BearerCredentials{Token: s.token}))
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "no storage left") {
		t.Errorf("gRPC while storage is full: %v %v, want UNAVAILABLE saying storage is full", gr, err)
	}
	if ids := s.streamIDs(t, "shop/grpc-"); len(ids) != 0 {
		t.Errorf("refused gRPC event stored: %v", ids)
	}
	if again := s.logAgrees(t, "shop/full-"); !slices.Equal(again, stored) {
		t.Fatalf("refused retries stored %v, want only %v", again, stored)
	}

	s.nats.LimitStore(t, -1)
	resp, a := s.post(t, s.token, body)
	if resp.StatusCode != http.StatusOK || a.Accepted+a.Duplicates != 10 || a.Duplicates != len(stored) {
		t.Fatalf("retry with room: %d %+v; want the %d stored before duplicate, the rest accepted", resp.StatusCode, a, len(stored))
	}
	for _, r := range a.Results {
		if want := slices.Contains(stored, "shop/"+r.ID); want != (r.Status == "duplicate") {
			t.Errorf("%s: %s, stored before: %t", r.ID, r.Status, want)
		}
	}
	if all := s.logAgrees(t, "shop/full-"); len(all) != 10 {
		t.Fatalf("stream and log hold %d of the request's 10 events, want each once", len(all))
	}
}
