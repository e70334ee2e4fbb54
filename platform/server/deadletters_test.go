package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	opsv1 "github.com/retainhq/retain/proto/gen/go/retain/ops/v1"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// consumerService hosts one bus consumer and nothing else.
type consumerService struct{ c *bus.Consumer }

func (s consumerService) Name() string                    { return "consumer-stub" }
func (s consumerService) MethodScopes() map[string]string { return nil }
func (s consumerService) RegisterGRPC(*grpc.Server)       {}
func (s consumerService) RegisterHTTP(*http.ServeMux)     {}
func (s consumerService) Ready(context.Context) error     { return nil }
func (s consumerService) Run(ctx context.Context) error   { return s.c.Run(ctx) }
func (s consumerService) Consumers() []*bus.Consumer      { return []*bus.Consumer{s.c} }

// TestDeadLetterService drives the host's dead-letter API over real NATS and
// Postgres: poison messages of two tenants are dead-lettered, each tenant's
// admin sees and replays only its own, and a replay runs the real handler.
func TestDeadLetterService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tel, _ := newTelemetry(t)
	log := slog.New(slog.DiscardHandler)

	b, err := bus.Connect(ctx, bus.Config{URL: testenv.NATS(t).URL(), Name: t.Name()}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	pool := testenv.MigratedPool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE applied (msg_id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}

	// The handler rejects "poison" until the bug is "fixed"; while failing
	// is set it fails on it instead, as a half-fixed handler would.
	var fixed, failing atomic.Bool
	c, err := bus.NewConsumer(b, pool, bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "dl-test"},
		func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			for _, d := range ds {
				if string(d.Data) == "poison" && failing.Load() {
					return errors.New(`relation "orders_v2" does not exist`)
				}
				if string(d.Data) == "poison" && !fixed.Load() {
					d.Reject("cannot decode: not an OrderPlaced")
					continue
				}
				if _, err := tx.Exec(ctx, `INSERT INTO applied VALUES ($1)`, d.ID); err != nil {
					return err
				}
			}
			return nil
		}, log)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []bus.Message
	for _, m := range []struct{ tenant, id, data string }{
		{"acme", "a-1", "good"}, {"acme", "a-2", "poison"}, {"acme", "a-3", "poison"}, {"globex", "g-1", "poison"},
	} {
		msgs = append(msgs, bus.Message{Subject: bus.EventSubject(m.tenant, "order.placed"), ID: m.tenant + "/" + m.id, Type: "order.placed", Data: []byte(m.data)})
	}
	if _, err := b.PublishDurable(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	keys := authtest.Keys(t)
	signer, verifier := keys.Signer, keys.Verifier
	host, err := NewHost(HostConfig{Addrs: Addrs{GRPC: "127.0.0.1:0"}, Telemetry: tel, Verifier: verifier}, consumerService{c})
	if err != nil {
		t.Fatal(err)
	}
	hostCtx, stopHost := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- host.Run(hostCtx) }()
	t.Cleanup(func() { stopHost(); <-done })
	if err := c.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}

	client := func(tenant string, scopes ...string) opsv1.DeadLetterServiceClient {
		tok, err := signer.Issue(auth.Claims{Tenant: tenant, Scopes: scopes})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(host.Addrs().GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Token: tok}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return opsv1.NewDeadLetterServiceClient(conn)
	}
	acme, globex := client("acme", auth.ScopeAdmin), client("globex", auth.ScopeAdmin)
	wantCode := func(t *testing.T, err error, code codes.Code, contains string) {
		t.Helper()
		if status.Code(err) != code || !strings.Contains(err.Error(), contains) {
			t.Fatalf("err = %v, want %s containing %q", err, code, contains)
		}
	}

	t.Run("needs the admin scope", func(t *testing.T) {
		_, err := client("acme", auth.ScopeRead).ListConsumers(ctx, &opsv1.ListConsumersRequest{})
		wantCode(t, err, codes.PermissionDenied, "")
	})

	t.Run("consumers with the tenant's pending count", func(t *testing.T) {
		resp, err := acme.ListConsumers(ctx, &opsv1.ListConsumersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetConsumers()) != 1 || resp.GetConsumers()[0].GetName() != "dl-test" ||
			resp.GetConsumers()[0].GetStream() != bus.EventsStream || resp.GetConsumers()[0].GetPendingDeadLetters() != 2 {
			t.Fatalf("ListConsumers = %v", resp)
		}
	})

	var acmeIDs []int64
	t.Run("pages through the tenant's dead letters only", func(t *testing.T) {
		token := ""
		for page := 0; ; page++ {
			resp, err := acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test", PageSize: 1, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, dl := range resp.GetDeadLetters() {
				if !strings.HasPrefix(dl.GetMsgId(), "acme/") || dl.GetReason() != "cannot decode: not an OrderPlaced" ||
					dl.GetType() != "order.placed" || string(dl.GetData()) != "poison" || dl.GetReplayedAt() != nil {
					t.Fatalf("dead letter %v", dl)
				}
				acmeIDs = append(acmeIDs, dl.GetId())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
			if page > 3 {
				t.Fatal("paging does not end")
			}
		}
		if len(acmeIDs) != 2 {
			t.Fatalf("acme sees %d dead letters, want 2", len(acmeIDs))
		}
	})

	t.Run("bad requests name the field", func(t *testing.T) {
		_, err := acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test", PageSize: 501})
		wantCode(t, err, codes.InvalidArgument, "page_size")
		_, err = acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{})
		wantCode(t, err, codes.InvalidArgument, "consumer")
		_, err = acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test", PageToken: "x"})
		wantCode(t, err, codes.InvalidArgument, "page_token: is malformed")
		// A token continues only the listing it came from.
		first, err := acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test", PageSize: 1})
		if err != nil || first.GetNextPageToken() == "" {
			t.Fatalf("first page = %v, %v", first, err)
		}
		_, err = acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test", IncludeReplayed: true, PageToken: first.GetNextPageToken()})
		wantCode(t, err, codes.InvalidArgument, "page_token: was returned for another include_replayed")
		_, err = acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "nope"})
		wantCode(t, err, codes.NotFound, "dl-test")
		_, err = acme.ReplayDeadLetter(ctx, &opsv1.ReplayDeadLetterRequest{Consumer: "dl-test"})
		wantCode(t, err, codes.InvalidArgument, "id")
	})

	t.Run("replay", func(t *testing.T) {
		id := acmeIDs[0]
		_, err := acme.ReplayDeadLetter(ctx, &opsv1.ReplayDeadLetterRequest{Consumer: "dl-test", Id: id})
		wantCode(t, err, codes.FailedPrecondition, "rejected again")

		globexList, err := globex.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test"})
		if err != nil || len(globexList.GetDeadLetters()) != 1 {
			t.Fatalf("globex list = %v, %v", globexList, err)
		}
		_, err = acme.ReplayDeadLetter(ctx, &opsv1.ReplayDeadLetterRequest{Consumer: "dl-test", Id: globexList.GetDeadLetters()[0].GetId()})
		wantCode(t, err, codes.NotFound, "not found")

		// A handler that fails again says why, and the dead letter stays.
		failing.Store(true)
		_, err = acme.ReplayDeadLetter(ctx, &opsv1.ReplayDeadLetterRequest{Consumer: "dl-test", Id: id})
		wantCode(t, err, codes.FailedPrecondition, `stays a dead letter; fix the cause and replay it again: `)
		wantCode(t, err, codes.FailedPrecondition, `relation "orders_v2" does not exist`)
		failing.Store(false)

		fixed.Store(true)
		resp, err := acme.ReplayDeadLetter(ctx, &opsv1.ReplayDeadLetterRequest{Consumer: "dl-test", Id: id})
		if err != nil || resp.GetDeadLetter().GetReplayedAt() == nil {
			t.Fatalf("replay = %v, %v", resp, err)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM applied WHERE msg_id = $1`, resp.GetDeadLetter().GetMsgId()).Scan(&n); err != nil || n != 1 {
			t.Fatalf("replayed message applied %d times (%v), want once", n, err)
		}
		_, err = acme.ReplayDeadLetter(ctx, &opsv1.ReplayDeadLetterRequest{Consumer: "dl-test", Id: id})
		wantCode(t, err, codes.FailedPrecondition, "already replayed")

		after, err := acme.ListConsumers(ctx, &opsv1.ListConsumersRequest{})
		if err != nil || after.GetConsumers()[0].GetPendingDeadLetters() != 1 {
			t.Fatalf("after replay ListConsumers = %v, %v", after, err)
		}
		all, err := acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test", IncludeReplayed: true})
		if err != nil || len(all.GetDeadLetters()) != 2 {
			t.Fatalf("include_replayed list = %v, %v", all, err)
		}
	})

	// Last: the database goes away for good.
	t.Run("database away is UNAVAILABLE without its address", func(t *testing.T) {
		testenv.DatabaseOutage(t, pool)
		db := pool.Config().ConnConfig.Database
		_, err := acme.ListConsumers(ctx, &opsv1.ListConsumersRequest{})
		wantCode(t, err, codes.Unavailable, "retry")
		_, lerr := acme.ListDeadLetters(ctx, &opsv1.ListDeadLettersRequest{Consumer: "dl-test"})
		wantCode(t, lerr, codes.Unavailable, "retry")
		for _, e := range []error{err, lerr} {
			if strings.Contains(e.Error(), db) || strings.Contains(e.Error(), "127.0.0.1") {
				t.Errorf("the client was shown the database: %v", e)
			}
		}
	})
}
