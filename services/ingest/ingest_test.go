package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is a running ingest service on real NATS and Postgres.
type stack struct {
	nats    *testenv.NATSServer
	dbURL   string
	httpURL string
	opsURL  string
	grpc    *grpc.ClientConn
	signer  *auth.Signer
	token   string // tenant "shop", events:write
	js      jetstream.JetStream
}

type option func(*ingest.Config)

func setup(t *testing.T, opts ...option) *stack {
	t.Helper()
	return setupWith(t, servertest.Telemetry(t, "ingest-test"), opts...)
}

// setupWith is setup with the service's telemetry (its log) given.
func setupWith(t *testing.T, tel *telemetry.Telemetry, opts ...option) *stack {
	t.Helper()
	ns := testenv.NATS(t)
	dbURL := testenv.Postgres(t)
	keys := authtest.Keys(t)
	pub, signer := keys.Public, keys.Signer
	cfg := ingest.DefaultConfig()
	cfg.NATS.URL = ns.URL()
	cfg.DatabaseURL = dbURL
	cfg.AuthPublicKey = pub
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := ingest.New(context.Background(), cfg, tel)
	if err != nil {
		t.Fatal(err)
	}
	r := servertest.Start(t, svc, tel, svc.Verifier(), servertest.Loopback)
	r.StopAtEnd(t)
	s := &stack{nats: ns, dbURL: dbURL, httpURL: "http://" + r.Host.Addrs().HTTP, opsURL: "http://" + r.Host.Addrs().Ops, signer: signer, grpc: r.Conn}
	s.token = s.issue(t, "shop", auth.ScopeEventsWrite)
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) issue(t *testing.T, tenant string, scopes ...string) string {
	t.Helper()
	tok, err := s.signer.Issue(auth.Claims{Tenant: tenant, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type httpAnswer struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Rejected   int `json:"rejected"`
	Results    []struct {
		Index  int    `json:"index"`
		ID     string `json:"id"`
		Status string `json:"status"`
		Errors []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"errors"`
	} `json:"results"`
}

func (s *stack) post(t *testing.T, token string, body []byte, header ...string) (*http.Response, httpAnswer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.httpURL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a httpAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("decode answer %s: %v", raw, err)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp, a
}

// errorBody is the code and message of an error answer, failing t unless
// the answer is the API's JSON error shape {"error":{"code","message"}}.
func errorBody(t *testing.T, resp *http.Response) (code, message string) {
	t.Helper()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("status %d: content type %q, want application/json (%s)", resp.StatusCode, ct, raw)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Errorf("status %d: error body %q is not JSON: %v", resp.StatusCode, raw, err)
	}
	return e.Error.Code, e.Error.Message
}

func order(id, customer string, minor int64) string {
	return fmt.Sprintf(`{"id":%q,"occurred_at":"2026-01-02T10:00:00Z","order_placed":{"customer_id":%q,"order_id":%q,"total":{"amount_minor":%d,"currency":"EUR"}}}`, id, customer, id, minor)
}

func batch(events ...string) []byte {
	return []byte(`{"events":[` + strings.Join(events, ",") + `]}`)
}

// streamMsgs returns every message on RETAIN_EVENTS keyed by Nats-Msg-Id,
// failing on a msg id seen twice.
func (s *stack) streamMsgs(t *testing.T) map[string]*eventsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*eventsv1.Event{}
	if info.State.Msgs == 0 {
		return out
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < info.State.Msgs {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read stream after %d of %d: %v", len(out), info.State.Msgs, err)
		}
		id := msg.Headers().Get("Nats-Msg-Id")
		if _, dup := out[id]; dup {
			t.Fatalf("event %s is on the stream twice", id)
		}
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(msg.Data(), ev); err != nil {
			t.Fatal(err)
		}
		if want := "retain.events." + ev.GetTenantId() + "." + ev.GetType(); msg.Subject() != want {
			t.Errorf("subject %s, want %s", msg.Subject(), want)
		}
		out[id] = ev
	}
	return out
}

func TestHTTPPublish(t *testing.T) {
	s := setup(t)

	t.Run("each event is accepted, duplicate or rejected naming the field", func(t *testing.T) {
		resp, a := s.post(t, s.token, batch(
			order("o-1", "c-1", 4200),
			`{"id":"bad-1","occurred_at":"2026-01-02T10:00:00Z","order_placed":{"customer_id":"c-1","order_id":"x","total":{"amount_minor":-5,"currency":"EUR"}}}`,
			order("o-1", "c-1", 4200),
			`{"id":"bad-2","occurred_at":"2026-01-02T10:00:00Z","order_placed":{"customer_id":"c-1","order_id":"y","total":{"amount_minor":12.5,"currency":"EUR"}}}`,
			`{"occurred_at":"2026-01-02T10:00:00Z","tenant_id":"shop","survey_answered":{"customer_id":"c-2","survey_id":"s","kind":"SURVEY_KIND_NPS","score":9}}`,
			`{"occurred_at":"2026-01-02T10:00:00Z","order_placed":{"customer_id":"c-1","order_id":"z","totl":{}},"id":"bad-3"}`,
			`{"id":"a-1","occurred_at":"2026-01-02T10:00:00Z","tenant_id":"someone-else","survey_answered":{"customer_id":"c-2","survey_id":"s","kind":"SURVEY_KIND_NPS","score":9}}`,
		))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		want := []string{"accepted", "rejected", "duplicate", "rejected", "accepted", "rejected", "rejected"}
		if len(a.Results) != len(want) {
			t.Fatalf("%d results, want %d", len(a.Results), len(want))
		}
		for i, r := range a.Results {
			if r.Status != want[i] {
				t.Errorf("event %d: %s, want %s", i, r.Status, want[i])
			}
		}
		if a.Accepted != 2 || a.Duplicates != 1 || a.Rejected != 4 {
			t.Errorf("counts %+v", a)
		}
		if got := a.Results[1].Errors; len(got) == 0 || got[0].Field != "order_placed.total.amount_minor" {
			t.Errorf("negative money errors %+v, want field order_placed.total.amount_minor", got)
		}
		if got := a.Results[3].Errors; len(got) == 0 || got[0].Field != "order_placed.total.amount_minor" || !strings.Contains(got[0].Description, "integer") {
			t.Errorf("fractional money errors %+v", got)
		}
		// Events that fail to decode are still named by the id the client
		// sent, for correlation, next to their index.
		for _, i := range []int{1, 3, 5} {
			if r := a.Results[i]; r.Index != i || r.ID != fmt.Sprintf("bad-%d", (i+1)/2) {
				t.Errorf("rejected event %d answered index %d id %q, want index %d id bad-%d", i, r.Index, r.ID, i, (i+1)/2)
			}
		}
		if got := a.Results[5].Errors; len(got) == 0 || got[0].Field != "order_placed.totl" {
			t.Errorf("unknown field errors %+v, want field order_placed.totl", got)
		}
		if a.Results[4].ID == "" {
			t.Error("an event without id gets a generated one")
		}
		// Another tenant's id in the body is a client using the wrong
		// token: refused, never stored under the token's tenant.
		if got := a.Results[6].Errors; len(got) != 1 || got[0].Field != "tenant_id" || !strings.Contains(got[0].Description, `"someone-else" is not the tenant of the token ("shop")`) {
			t.Errorf("another tenant's event: errors %+v, want one on tenant_id", got)
		}
		msgs := s.streamMsgs(t)
		if len(msgs) != 2 {
			t.Fatalf("stream has %d events, want the 2 accepted", len(msgs))
		}
		for _, ev := range msgs {
			if ev.GetTenantId() != "shop" {
				t.Errorf("event %s stored for tenant %q: the tenant must come from the token", ev.GetId(), ev.GetTenantId())
			}
			if ev.GetReceivedAt() == nil {
				t.Errorf("event %s has no received_at", ev.GetId())
			}
		}
	})

	t.Run("a client retry is reported duplicate and adds nothing", func(t *testing.T) {
		before := len(s.streamMsgs(t))
		_, a := s.post(t, s.token, batch(order("o-1", "c-1", 4200), order("o-2", "c-1", 1000)))
		if a.Duplicates != 1 || a.Accepted != 1 {
			t.Fatalf("retry answered %+v, want 1 duplicate and 1 accepted", a)
		}
		_, a = s.post(t, s.token, batch(order("o-1", "c-1", 4200), order("o-2", "c-1", 1000)))
		if a.Duplicates != 2 {
			t.Fatalf("second retry answered %+v, want 2 duplicates", a)
		}
		if after := len(s.streamMsgs(t)); after != before+1 {
			t.Fatalf("stream grew from %d to %d, want +1", before, after)
		}
	})

	t.Run("the same id from another tenant is a different event", func(t *testing.T) {
		other := s.issue(t, "other-shop", auth.ScopeEventsWrite)
		_, a := s.post(t, other, batch(order("o-1", "c-1", 4200)))
		if a.Accepted != 1 {
			t.Fatalf("answered %+v, want accepted", a)
		}
		if _, ok := s.streamMsgs(t)["other-shop/o-1"]; !ok {
			t.Fatal("other-shop/o-1 not on the stream")
		}
	})

	t.Run("media types are read case-insensitively, with parameters", func(t *testing.T) {
		for i, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "application/json; charset=UTF-8"} {
			resp, a := s.post(t, s.token, batch(order(fmt.Sprintf("o-ct-%d", i), "c-9", 100)), "Content-Type", ct)
			if resp.StatusCode != http.StatusOK || a.Accepted != 1 {
				t.Errorf("%s: status %d, answer %+v", ct, resp.StatusCode, a)
			}
		}
	})

	t.Run("gzip bodies are accepted", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(batch(order("o-gz", "c-9", 100)))
		_ = zw.Close()
		resp, a := s.post(t, s.token, buf.Bytes(), "Content-Encoding", "gzip")
		if resp.StatusCode != http.StatusOK || a.Accepted != 1 {
			t.Fatalf("status %d, answer %+v", resp.StatusCode, a)
		}
	})

	t.Run("limits and malformed bodies", func(t *testing.T) {
		many := make([]string, 501)
		for i := range many {
			many[i] = order(fmt.Sprintf("m-%d", i), "c", 1)
		}
		big := batch(order("big", "c", 1)[:10] + strings.Repeat(" ", 1<<20))
		var bigGz bytes.Buffer
		zw := gzip.NewWriter(&bigGz)
		_, _ = zw.Write(big)
		_ = zw.Close()
		one := batch(order("lim-1", "c", 1))
		cases := []struct {
			name   string
			body   []byte
			header []string
			status int
			code   string
		}{
			{"501 events", batch(many...), nil, http.StatusRequestEntityTooLarge, "too_many_events"},
			{"body over 1 MiB", big, nil, http.StatusRequestEntityTooLarge, "body_too_large"},
			{"body over 1 MiB after gunzip", bigGz.Bytes(), []string{"Content-Encoding", "gzip"}, http.StatusRequestEntityTooLarge, "body_too_large"},
			{"not gzip", one, []string{"Content-Encoding", "gzip"}, http.StatusBadRequest, "bad_request"},
			{"not JSON", []byte(`{"events":[`), nil, http.StatusBadRequest, "bad_request"},
			{"events not an array", []byte(`{"events":{}}`), nil, http.StatusBadRequest, "bad_request"},
			{"content type", one, []string{"Content-Type", "text/csv"}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
			{"a type named like JSON", one, []string{"Content-Type", "application/jsonx"}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
			{"JSON not in UTF-8", one, []string{"Content-Type", "application/json; charset=latin1"}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
			{"content encoding", one, []string{"Content-Encoding", "br"}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
		}
		for _, c := range cases {
			resp, _ := s.post(t, s.token, c.body, c.header...)
			if resp.StatusCode != c.status {
				body, _ := io.ReadAll(resp.Body)
				t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.status, body)
				continue
			}
			if code, msg := errorBody(t, resp); code != c.code || msg == "" {
				t.Errorf("%s: error code %q message %q, want code %q and a message", c.name, code, msg, c.code)
			}
		}
	})

	t.Run("other methods and paths answer JSON errors", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			status       int
			code, allow  string
		}{
			{http.MethodGet, "/v1/events", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
			{http.MethodPut, "/v1/events", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
			{http.MethodPost, "/v1/event", http.StatusNotFound, "not_found", ""},
			{http.MethodGet, "/v1/events/o-1", http.StatusNotFound, "not_found", ""},
		} {
			req, err := http.NewRequest(c.method, s.httpURL+c.path, strings.NewReader(string(batch(order("m-1", "c", 1)))))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+s.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Errorf("%s %s: status %d, want %d", c.method, c.path, resp.StatusCode, c.status)
			} else if code, msg := errorBody(t, resp); code != c.code || msg == "" {
				t.Errorf("%s %s: error code %q message %q, want code %q and a message", c.method, c.path, code, msg, c.code)
			}
			if got := resp.Header.Get("Allow"); got != c.allow {
				t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
			}
			resp.Body.Close()
		}
		if _, ok := s.streamMsgs(t)["shop/m-1"]; ok {
			t.Error("an event sent to the wrong method or path reached the bus")
		}
	})

	t.Run("credentials", func(t *testing.T) {
		if resp, _ := s.post(t, "", batch(order("a-1", "c", 1))); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no token: %d, want 401", resp.StatusCode)
		} else if code, _ := errorBody(t, resp); code != "unauthenticated" {
			t.Errorf("no token: code %q, want unauthenticated", code)
		}
		if resp, _ := s.post(t, "not-a-token", batch(order("a-1", "c", 1))); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("garbage token: %d, want 401", resp.StatusCode)
		}
		reader := s.issue(t, "shop", auth.ScopeRead)
		if resp, _ := s.post(t, reader, batch(order("a-1", "c", 1))); resp.StatusCode != http.StatusForbidden {
			t.Errorf("read-only token: %d, want 403", resp.StatusCode)
		} else if code, _ := errorBody(t, resp); code != "permission_denied" {
			t.Errorf("read-only token: code %q, want permission_denied", code)
		}
		forged, _ := authtest.Keys(t).Signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeAdmin}})
		if resp, _ := s.post(t, forged, batch(order("a-1", "c", 1))); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token signed by another key: %d, want 401", resp.StatusCode)
		}
		if _, ok := s.streamMsgs(t)["shop/a-1"]; ok {
			t.Error("a refused request reached the bus")
		}
	})
}

func TestDuplicateBeyondTheStreamWindow(t *testing.T) {
	s := setup(t, func(c *ingest.Config) { c.Streams.Duplicates = time.Second })
	_, a := s.post(t, s.token, batch(order("late-1", "c-1", 100)))
	if a.Accepted != 1 {
		t.Fatalf("first send %+v", a)
	}
	pool, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	testenv.WaitFor(t, "the ingest log to record the event", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM ingest_log WHERE msg_id = 'shop/late-1'`).Scan(&n)
		return n == 1
	})
	time.Sleep(1500 * time.Millisecond) // let the stream's duplicate window pass
	_, a = s.post(t, s.token, batch(order("late-1", "c-1", 100)))
	if a.Duplicates != 1 {
		t.Fatalf("retry after the window answered %+v, want duplicate", a)
	}
	if n := len(s.streamMsgs(t)); n != 1 {
		t.Fatalf("stream has %d events, want 1", n)
	}
}

func TestGRPCPublish(t *testing.T) {
	s := setup(t)
	client := ingestv1.NewIngestServiceClient(s.grpc)
	ctx := context.Background()
	call := func(token string) grpc.CallOption {
		return grpc.PerRPCCredentials(auth.BearerCredentials{Token: token})
	}
	// One occurred_at for every event: a retry repeats the event unchanged.
	occurred := timestamppb.New(time.Now().Add(-time.Hour))
	ev := func(id string, score int32) *eventsv1.Event {
		return &eventsv1.Event{Id: id, OccurredAt: occurred, Payload: &eventsv1.Event_SurveyAnswered{
			SurveyAnswered: &eventsv1.SurveyAnswered{CustomerId: "c-1", SurveyId: "s-1", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: score}}}
	}

	t.Run("publish accepts, then reports the retry as duplicate", func(t *testing.T) {
		r, err := client.Publish(ctx, &ingestv1.PublishRequest{Event: ev("g-1", 9)}, call(s.token))
		if err != nil || r.GetResult().GetStatus() != ingestv1.EventStatus_EVENT_STATUS_ACCEPTED {
			t.Fatalf("publish: %v %v", r, err)
		}
		r, err = client.Publish(ctx, &ingestv1.PublishRequest{Event: ev("g-1", 9)}, call(s.token))
		if err != nil || r.GetResult().GetStatus() != ingestv1.EventStatus_EVENT_STATUS_DUPLICATE {
			t.Fatalf("retry: %v %v", r, err)
		}
	})

	t.Run("a rejected event is INVALID_ARGUMENT naming the field", func(t *testing.T) {
		_, err := client.Publish(ctx, &ingestv1.PublishRequest{Event: ev("g-2", 11)}, call(s.token))
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Fatalf("code %v, want InvalidArgument", st.Code())
		}
		var fields []string
		for _, v := range server.Violations(err) {
			fields = append(fields, v.Field)
		}
		if len(fields) == 0 || fields[0] != "survey_answered.score" {
			t.Fatalf("field violations %v, want survey_answered.score", fields)
		}
	})

	t.Run("batch results per event", func(t *testing.T) {
		r, err := client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: []*eventsv1.Event{ev("g-3", 7), ev("g-4", -1), ev("g-1", 9)}}, call(s.token))
		if err != nil {
			t.Fatal(err)
		}
		if r.GetAccepted() != 1 || r.GetRejected() != 1 || r.GetDuplicates() != 1 {
			t.Fatalf("answer %v", r)
		}
	})

	t.Run("credentials", func(t *testing.T) {
		_, err := client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("no token: %v", err)
		}
		_, err = client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{}, call(s.issue(t, "shop", auth.ScopeRead)))
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("read-only token: %v", err)
		}
	})

	t.Run("server reflection lists the service", func(t *testing.T) {
		stream, err := rpb.NewServerReflectionClient(s.grpc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, svc := range resp.GetListServicesResponse().GetService() {
			names = append(names, svc.GetName())
		}
		if !strings.Contains(strings.Join(names, ","), "retain.ingest.v1.IngestService") {
			t.Fatalf("reflection lists %v", names)
		}
	})
}

// TestNATSRestartLosesNothingAcknowledged sends batches from several clients
// while the NATS server restarts. Every event a client was told is accepted
// or duplicate must be on the stream exactly once afterwards; clients retry
// what was refused, as the 429 answer asks them to.
func TestNATSRestartLosesNothingAcknowledged(t *testing.T) {
	s := setup(t)
	const clients, batches, perBatch = 4, 30, 50
	var mu sync.Mutex
	acked := map[string]bool{}
	refused := 0
	var wg sync.WaitGroup
	restarted := make(chan struct{})
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if c == 0 && b == batches/3 {
					close(restarted)
				}
				events := make([]string, perBatch)
				ids := make([]string, perBatch)
				for i := range events {
					ids[i] = fmt.Sprintf("r-%d-%d-%d", c, b, i)
					events[i] = order(ids[i], "c", 1)
				}
				deadline := time.Now().Add(60 * time.Second)
				for {
					resp, a := s.post(t, s.token, batch(events...))
					if resp.StatusCode == http.StatusOK {
						if a.Accepted+a.Duplicates != perBatch {
							t.Errorf("batch %d/%d: %+v", c, b, a)
						}
						mu.Lock()
						for _, id := range ids {
							acked["shop/"+id] = true
						}
						mu.Unlock()
						break
					}
					if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
						t.Errorf("status %d without Retry-After during restart", resp.StatusCode)
						return
					}
					mu.Lock()
					refused++
					mu.Unlock()
					if time.Now().After(deadline) {
						t.Errorf("batch %d/%d never accepted", c, b)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	<-restarted
	s.nats.Restart(t)
	wg.Wait()
	t.Logf("%d requests were answered 429 while NATS restarted", refused)
	msgs := s.streamMsgs(t)
	for id := range acked {
		if _, ok := msgs[id]; !ok {
			t.Errorf("acknowledged event %s is not on the stream", id)
		}
	}
	if len(msgs) != clients*batches*perBatch {
		t.Errorf("stream has %d events, want %d", len(msgs), clients*batches*perBatch)
	}
}
