package churnsignal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/simulate"
	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/platform/testenv"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/churnsignal"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is a running churn-signal service on real NATS and Postgres.
type stack struct {
	nats   *testenv.NATSServer
	dbURL  string
	db     *pgxpool.Pool
	pub    *bus.Bus // publishes facts as ingest does
	js     jetstream.JetStream
	conn   *grpc.ClientConn
	signer *auth.Signer
	pubKey string
	clock  *testenv.Clock
	svc    *churnsignal.Service
	tel    *telemetry.Telemetry // the service's: its /metrics
	stop   func()               // stops the service (idempotent)
}

type option func(*churnsignal.Config)

func setup(t *testing.T, opts ...option) *stack {
	t.Helper()
	ns := testenv.NATS(t)
	dbURL := testenv.Postgres(t)
	keys := authtest.Keys(t)
	var err error
	s := &stack{nats: ns, dbURL: dbURL, signer: keys.Signer, pubKey: keys.Public, clock: testenv.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}
	s.start(t, opts...)

	ctx := context.Background()
	s.db, err = pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.db.Close)
	s.pub = testenv.Bus(t, bus.Config{URL: ns.URL(), Name: "test-publisher"})
	s.js = s.pub.JS
	return s
}

// start runs a service instance on the stack's NATS and database and
// connects a gRPC client to it.
func (s *stack) start(t testing.TB, opts ...option) {
	t.Helper()
	cfg := churnsignal.DefaultConfig()
	cfg.NATS.URL = s.nats.URL()
	cfg.DatabaseURL = s.dbURL
	cfg.AuthPublicKey = s.pubKey
	cfg.RescoreInterval = 0 // tests run passes themselves
	cfg.Now = s.clock.Now
	cfg.Addrs = server.Addrs{GRPC: "127.0.0.1:0", Ops: "127.0.0.1:0"}
	for _, o := range opts {
		o(&cfg)
	}
	tel := servertest.Telemetry(t, "churnsignal-test")
	svc, err := churnsignal.New(context.Background(), cfg, tel)
	if err != nil {
		t.Fatal(err)
	}
	r := servertest.Start(t, svc, tel, svc.Verifier(), cfg.Addrs)
	s.stop = func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(s.stop)
	s.svc, s.tel, s.conn = svc, tel, r.Conn
}

func (s *stack) token(t *testing.T, tenant string, scopes ...string) grpc.CallOption {
	t.Helper()
	tok, err := s.signer.Issue(auth.Claims{Tenant: tenant, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return grpc.PerRPCCredentials(auth.BearerCredentials{Token: tok})
}

func (s *stack) client() churnv1.ChurnServiceClient { return churnv1.NewChurnServiceClient(s.conn) }

// publish sends events to RETAIN_EVENTS exactly as ingest does: protobuf
// Event, subject retain.events.<tenant>.<type>, msg id "<tenant>/<id>".
func (s *stack) publish(t testing.TB, tenant string, evs ...*eventsv1.Event) {
	t.Helper()
	testenv.PublishEvents(t, s.pub, tenant, time.Now(), evs...)
}

// caughtUp waits until the facts consumer has acknowledged everything on
// RETAIN_EVENTS and the relay has published every outbox row.
func (s *stack) caughtUp(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The consumer's own check: pending counters alone can read zero just
	// after a publish, before the server counted the message.
	if err := s.svc.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the relay to publish the outbox", func() bool {
		var unpublished int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM bus_outbox WHERE published_at IS NULL`).Scan(&unpublished); err != nil {
			return false
		}
		return unpublished == 0
	})
}

// signals returns every churn.risk_changed on RETAIN_SIGNALS, in stream
// order, with their msg ids.
func (s *stack) signals(t testing.TB) ([]*churnv1.ChurnRiskChanged, []string) {
	t.Helper()
	s.caughtUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, bus.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*churnv1.ChurnRiskChanged
	var ids []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get signal %d: %v", seq, err)
		}
		var ev churnv1.ChurnRiskChanged
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("decode signal %d: %v", seq, err)
		}
		evs = append(evs, &ev)
		ids = append(ids, m.Header.Get(bus.HeaderMsgID))
	}
	return evs, ids
}

// Event builders.

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func orderEv(id, customer string, at time.Time, minor int64) *eventsv1.Event {
	return &eventsv1.Event{Id: id, Type: "order.placed", OccurredAt: ts(at), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
		CustomerId: customer, OrderId: id, Total: &eventsv1.Money{AmountMinor: minor, Currency: "EUR"}}}}
}

func ticketEv(id, customer string, at time.Time, cat eventsv1.TicketCategory) *eventsv1.Event {
	return &eventsv1.Event{Id: "open-" + id, Type: "ticket.opened", OccurredAt: ts(at), Payload: &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{
		CustomerId: customer, TicketId: id, Category: cat}}}
}

func resolvedEv(id, customer string, at time.Time) *eventsv1.Event {
	return &eventsv1.Event{Id: "resolve-" + id, Type: "ticket.resolved", OccurredAt: ts(at), Payload: &eventsv1.Event_TicketResolved{TicketResolved: &eventsv1.TicketResolved{
		CustomerId: customer, TicketId: id}}}
}

func npsEv(id, customer string, at time.Time, score int32) *eventsv1.Event {
	return &eventsv1.Event{Id: id, Type: "survey.answered", OccurredAt: ts(at), Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
		CustomerId: customer, SurveyId: "nps", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: score}}}
}

func renewalEv(id, customer string, at time.Time, date string) *eventsv1.Event {
	return &eventsv1.Event{Id: id, Type: "customer.updated", OccurredAt: ts(at), Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{
		CustomerId: customer, Traits: map[string]string{"renewal_date": date}}}}
}

// halfYearShop is a simulated shop of customers over the half year before
// end, in time order, and the indexes of its orders among the events.
func halfYearShop(t testing.TB, customers int, end time.Time) (evs []*eventsv1.Event, orders []int) {
	t.Helper()
	cfg := simulate.DefaultConfig()
	cfg.Customers, cfg.Seed, cfg.Days, cfg.Start = customers, 11, 182, end.AddDate(0, 0, -182)
	shop, err := simulate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := shop.Events(func(ev *eventsv1.Event) error {
		if ev.GetOrderPlaced() != nil {
			orders = append(orders, len(evs))
		}
		evs = append(evs, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return evs, orders
}

// population is a deterministic shop: customers buying every few weeks,
// some of whom stopped, so that the model can be fitted.
func population(n int, end time.Time) []*eventsv1.Event {
	var evs []*eventsv1.Event
	for c := range n {
		cust := fmt.Sprintf("p%03d", c)
		start := end.AddDate(0, 0, -300+(c*7)%100)
		gap := 10 + (c*13)%50
		stop := end
		if c%3 == 0 {
			stop = start.AddDate(0, 0, 60+(c*11)%120) // dropped out
		}
		for k, at := 0, start; at.Before(stop); k, at = k+1, at.AddDate(0, 0, gap) {
			evs = append(evs, orderEv(fmt.Sprintf("%s-o%d", cust, k), cust, at, int64(1000+100*(c%7))))
		}
	}
	return evs
}
