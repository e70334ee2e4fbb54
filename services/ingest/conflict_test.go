package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest"
)

func ticketOpened(id, ticket, at string) string {
	return fmt.Sprintf(`{"id":%q,"occurred_at":%q,"ticket_opened":{"customer_id":"qa-c-1","ticket_id":%q}}`, id, at, ticket)
}

func ticketResolved(id, ticket, at string) string {
	return fmt.Sprintf(`{"id":%q,"occurred_at":%q,"ticket_resolved":{"customer_id":"qa-c-1","ticket_id":%q}}`, id, at, ticket)
}

// wantStatuses fails t unless the answer has exactly these statuses, and
// every rejection among them that want names "id" is an id conflict.
func wantStatuses(t *testing.T, resp *http.Response, a httpAnswer, want ...string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if len(a.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(a.Results), len(want), a)
	}
	for i, r := range a.Results {
		st, field, _ := strings.Cut(want[i], ":")
		if r.Status != st {
			t.Errorf("event %d (%s): %s %+v, want %s", i, r.ID, r.Status, r.Errors, st)
			continue
		}
		if field != "" && (len(r.Errors) != 1 || r.Errors[0].Field != field) {
			t.Errorf("event %d (%s): errors %+v, want one on %s", i, r.ID, r.Errors, field)
		}
	}
}

// logged waits for the ingest log to record msgID with its fingerprint.
func (s *stack) logged(t *testing.T, msgIDs ...string) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	testenv.WaitFor(t, fmt.Sprintf("the ingest log to record %v", msgIDs), func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM ingest_log WHERE msg_id = ANY($1) AND fingerprint IS NOT NULL`, msgIDs).Scan(&n)
		return n == len(msgIDs)
	})
}

// TestEventIDReuse: an id names one event. The same event again is a
// duplicate; another event under a used id is rejected naming `id`, and
// nothing of it reaches the stream.
func TestEventIDReuse(t *testing.T) {
	s := setup(t)

	t.Run("the QA case: a ticket's resolve under the id of its opening is rejected, not dropped", func(t *testing.T) {
		resp, a := s.post(t, s.token, batch(ticketOpened("qa-t-1", "qa-t-1", "2026-11-20T10:00:00Z")))
		wantStatuses(t, resp, a, "accepted")
		resp, a = s.post(t, s.token, batch(ticketResolved("qa-t-1", "qa-t-1", "2026-11-21T10:00:00Z")))
		wantStatuses(t, resp, a, "rejected:id")
		if a.Rejected != 1 || a.Duplicates != 0 {
			t.Errorf("counts %+v, want 1 rejected", a)
		}
		d := a.Results[0].Errors[0].Description
		for _, part := range []string{`"qa-t-1"`, "already used for a different event", "ticket.opened", "accepted at " + time.Now().UTC().Format("2006-01-02")} {
			if !strings.Contains(d, part) {
				t.Errorf("conflict %q does not say %q", d, part)
			}
		}
		ev := s.streamMsgs(t)["shop/qa-t-1"]
		if ev.GetType() != "ticket.opened" {
			t.Fatalf("stream holds %v under shop/qa-t-1, want the ticket.opened", ev)
		}
		// The fix the README gives: an id per event.
		resp, a = s.post(t, s.token, batch(ticketResolved("qa-t-1:resolved", "qa-t-1", "2026-11-21T10:00:00Z")))
		wantStatuses(t, resp, a, "accepted")
	})

	t.Run("the same event again is a duplicate, other content under its id a conflict", func(t *testing.T) {
		first := order("same-1", "c-1", 4200)
		resp, a := s.post(t, s.token, batch(first))
		wantStatuses(t, resp, a, "accepted")
		// At once: the log has not recorded the id yet, or just has.
		resp, a = s.post(t, s.token, batch(first, order("same-1", "c-1", 4300), strings.Replace(first, "2026-01-02T10:00:00Z", "2026-01-02T11:00:00Z", 1)))
		wantStatuses(t, resp, a, "duplicate", "rejected:id", "rejected:id")
		// Cosmetic differences normalization removes are the same event.
		resp, a = s.post(t, s.token, batch(strings.Replace(first, `"currency":"EUR"`, `"currency":" eur"`, 1)))
		wantStatuses(t, resp, a, "duplicate")
		s.logged(t, "shop/same-1")
		resp, a = s.post(t, s.token, batch(order("same-1", "c-1", 4300), first))
		wantStatuses(t, resp, a, "rejected:id", "duplicate")
		if ev := s.streamMsgs(t)["shop/same-1"]; ev.GetOrderPlaced().GetTotal().GetAmountMinor() != 4200 {
			t.Fatalf("stream holds %v, want the first event", ev)
		}
	})

	t.Run("a batch mixing new, duplicate and conflicting events answers each", func(t *testing.T) {
		resp, a := s.post(t, s.token, batch(order("mix-old", "c-1", 100)))
		wantStatuses(t, resp, a, "accepted")
		resp, a = s.post(t, s.token, batch(
			order("mix-new-1", "c-1", 100),
			order("mix-old", "c-1", 100), // a retry
			order("mix-old", "c-1", 999), // another event under a used id
			order("mix-new-2", "c-2", 200),
			order("mix-new-1", "c-1", 100), // the same event twice in the request
			order("mix-new-1", "c-1", 555), // and another under the id just used
			order("mix-new-3", "c-3", 300),
		))
		wantStatuses(t, resp, a, "accepted", "duplicate", "rejected:id", "accepted", "duplicate", "rejected:id", "accepted")
		if a.Accepted != 3 || a.Duplicates != 2 || a.Rejected != 2 {
			t.Errorf("counts %+v", a)
		}
		msgs := s.streamMsgs(t)
		for id, minor := range map[string]int64{"shop/mix-old": 100, "shop/mix-new-1": 100, "shop/mix-new-2": 200, "shop/mix-new-3": 300} {
			if got := msgs[id].GetOrderPlaced().GetTotal().GetAmountMinor(); got != minor {
				t.Errorf("%s on the stream with %d, want %d", id, got, minor)
			}
		}
	})

	t.Run("a conflict inside one request is answered against the event before it", func(t *testing.T) {
		resp, a := s.post(t, s.token, batch(ticketOpened("in-req-1", "t-9", "2026-11-20T10:00:00Z"), ticketResolved("in-req-1", "t-9", "2026-11-21T10:00:00Z")))
		wantStatuses(t, resp, a, "accepted", "rejected:id")
		if d := a.Results[1].Errors[0].Description; !strings.Contains(d, "ticket.opened") {
			t.Errorf("conflict %q does not name the first event's type", d)
		}
	})

	t.Run("an id logged before fingerprints is a duplicate whatever the content", func(t *testing.T) {
		pool, err := pgxpool.New(context.Background(), s.dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if _, err := pool.Exec(context.Background(), `INSERT INTO ingest_log (msg_id) VALUES ('shop/legacy-1')`); err != nil {
			t.Fatal(err)
		}
		resp, a := s.post(t, s.token, batch(order("legacy-1", "c-1", 1)))
		wantStatuses(t, resp, a, "duplicate")
		if _, ok := s.streamMsgs(t)["shop/legacy-1"]; ok {
			t.Fatal("a logged id was published again")
		}
	})

	t.Run("gRPC: Publish refuses a conflict with INVALID_ARGUMENT on id, PublishBatch rejects it", func(t *testing.T) {
		client := ingestv1.NewIngestServiceClient(s.grpc)
		creds := grpc.PerRPCCredentials(auth.BearerCredentials{Token: s.token})
		at := timestamppb.New(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
		opened := &eventsv1.Event{Id: "g-t-1", OccurredAt: at, Payload: &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{CustomerId: "c-1", TicketId: "g-t-1"}}}
		resolved := &eventsv1.Event{Id: "g-t-1", OccurredAt: at, Payload: &eventsv1.Event_TicketResolved{TicketResolved: &eventsv1.TicketResolved{CustomerId: "c-1", TicketId: "g-t-1"}}}
		if r, err := client.Publish(context.Background(), &ingestv1.PublishRequest{Event: opened}, creds); err != nil || r.GetResult().GetStatus() != ingestv1.EventStatus_EVENT_STATUS_ACCEPTED {
			t.Fatalf("publish: %v %v", r, err)
		}
		_, err := client.Publish(context.Background(), &ingestv1.PublishRequest{Event: resolved}, creds)
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Fatalf("conflict answered %v, want InvalidArgument", err)
		}
		var fields []string
		for _, v := range server.Violations(err) {
			fields = append(fields, v.Field)
		}
		if len(fields) != 1 || fields[0] != "id" {
			t.Fatalf("field violations %v, want id", fields)
		}
		r, err := client.PublishBatch(context.Background(), &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{opened, resolved}}, creds)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.GetResults(); got[0].GetStatus() != ingestv1.EventStatus_EVENT_STATUS_DUPLICATE ||
			got[1].GetStatus() != ingestv1.EventStatus_EVENT_STATUS_REJECTED || got[1].GetErrors()[0].GetField() != "id" {
			t.Fatalf("batch answered %v, want duplicate then rejected on id", r)
		}
	})
}

// TestEventIDReuseBeyondTheStreamWindow: once JetStream's duplicate window
// has passed, the ingest log alone tells a retry from another event.
func TestEventIDReuseBeyondTheStreamWindow(t *testing.T) {
	s := setup(t, func(c *ingest.Config) { c.Streams.Duplicates = time.Second })
	resp, a := s.post(t, s.token, batch(ticketOpened("late-t-1", "late-t-1", "2026-11-20T10:00:00Z")))
	wantStatuses(t, resp, a, "accepted")
	s.logged(t, "shop/late-t-1")
	time.Sleep(1500 * time.Millisecond) // let the stream's duplicate window pass
	resp, a = s.post(t, s.token, batch(
		ticketOpened("late-t-1", "late-t-1", "2026-11-20T10:00:00Z"),
		ticketResolved("late-t-1", "late-t-1", "2026-11-21T10:00:00Z"),
	))
	wantStatuses(t, resp, a, "duplicate", "rejected:id")
	if d := a.Results[1].Errors[0].Description; !strings.Contains(d, "ticket.opened") {
		t.Errorf("conflict %q does not name the first event's type", d)
	}
	msgs := s.streamMsgs(t)
	if len(msgs) != 1 || msgs["shop/late-t-1"].GetType() != "ticket.opened" {
		t.Fatalf("stream holds %v, want the ticket.opened alone", msgs)
	}
}
