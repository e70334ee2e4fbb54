package metrics_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/metrics"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is a running metrics service on real NATS and Postgres, with a
// publisher connection standing in for ingest.
type stack struct {
	nats   *testenv.NATSServer
	dbURL  string
	pub    string
	signer *auth.Signer
	bus    *bus.Bus

	svc  *metrics.Service
	conn *grpc.ClientConn
	stop func()
	// logs, when set, receive the service's log lines from warn up.
	logs *testenv.SyncBuffer
	// batchSize, when set, is the service's batch size (200 otherwise):
	// small batches make a rebuild long enough to stop half-way.
	batchSize int
	// clock, when set, is the service's now.
	clock *testenv.Clock
}

func setup(t *testing.T) *stack {
	t.Helper()
	return setupWith(t, &stack{})
}

// setupWith is setup of a stack with the fields given (logs).
func setupWith(t *testing.T, s *stack) *stack {
	t.Helper()
	s.nats, s.dbURL = testenv.NATS(t), testenv.Postgres(t)
	keys := authtest.Keys(t)
	s.pub, s.signer = keys.Public, keys.Signer
	s.bus = testenv.Bus(t, bus.Config{URL: s.nats.URL(), Name: "metrics-test-publisher"})
	s.start(t)
	return s
}

// start runs a metrics service instance (a new process, as far as the
// service can tell) on the stack's NATS and database.
func (s *stack) start(t *testing.T) {
	t.Helper()
	cfg := metrics.DefaultConfig()
	cfg.NATS.URL = s.nats.URL()
	cfg.DatabaseURL = s.dbURL
	cfg.AuthPublicKey = s.pub
	cfg.BatchSize = cmp.Or(s.batchSize, 200)
	if s.clock != nil {
		cfg.Now = s.clock.Now
	}
	tel := servertest.Telemetry(t, "metrics-test")
	if s.logs != nil {
		var err error
		if tel, err = telemetry.Setup(context.Background(), telemetry.Config{Service: "metrics-test", LogLevel: "warn", LogFormat: "text", Output: s.logs}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	}
	svc, err := metrics.New(context.Background(), cfg, tel)
	if err != nil {
		t.Fatal(err)
	}
	r := servertest.Start(t, svc, tel, svc.Verifier(), servertest.Loopback)
	s.svc, s.conn = svc, r.Conn
	s.stop = func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(s.stop)
}

func (s *stack) token(t *testing.T, tenant string, scopes ...string) string {
	t.Helper()
	tok, err := s.signer.Issue(auth.Claims{Tenant: tenant, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is MetricsService as a caller with one token.
type client struct {
	metricsv1.MetricsServiceClient
	creds grpc.CallOption
}

func (s *stack) client(t *testing.T, tenant string, scopes ...string) client {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{auth.ScopeRead}
	}
	return client{metricsv1.NewMetricsServiceClient(s.conn), grpc.PerRPCCredentials(auth.BearerCredentials{Token: s.token(t, tenant, scopes...)})}
}

// eventType is the subject type of an event, from its payload.
func eventType(ev *eventsv1.Event) string {
	switch ev.GetPayload().(type) {
	case *eventsv1.Event_OrderPlaced:
		return "order.placed"
	case *eventsv1.Event_OrderRefunded:
		return "order.refunded"
	case *eventsv1.Event_SurveyAnswered:
		return "survey.answered"
	case *eventsv1.Event_CustomerUpdated:
		return "customer.updated"
	case *eventsv1.Event_TicketOpened:
		return "ticket.opened"
	case *eventsv1.Event_TicketResolved:
		return "ticket.resolved"
	}
	return "unknown"
}

// publish puts events on RETAIN_EVENTS exactly as ingest does: protobuf,
// subject retain.events.<tenant>.<type>, Nats-Msg-Id <tenant>/<event id>.
func (s *stack) publish(t *testing.T, tenant string, evs []*eventsv1.Event) {
	t.Helper()
	typed := make([]*eventsv1.Event, len(evs))
	for i, ev := range evs {
		typed[i] = proto.Clone(ev).(*eventsv1.Event)
		typed[i].Type = eventType(ev)
	}
	testenv.PublishEvents(t, s.bus, tenant, time.Now(), typed...)
}

// caughtUp waits until the service applied everything on the stream.
func (s *stack) caughtUp(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.svc.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func pbPeriod(p retention.Period) *metricsv1.Period {
	return &metricsv1.Period{From: ts(p.From), To: ts(p.To)}
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func mustPeriod(from, to time.Time) retention.Period {
	p, err := retention.NewPeriod(from, to)
	if err != nil {
		panic(err)
	}
	return p
}

func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("got %v (%v), want %v", st.Code(), err, want)
	}
	return st
}

func dump(m proto.Message) string {
	return protojson.MarshalOptions{Multiline: true}.Format(m)
}

// Event builders.

func orderEvent(id, orderID, customer string, at time.Time, minor int64, currency string) *eventsv1.Event {
	return &eventsv1.Event{Id: id, OccurredAt: ts(at), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
		CustomerId: customer, OrderId: orderID, Total: &eventsv1.Money{AmountMinor: minor, Currency: currency},
	}}}
}

func refundEvent(id, refundID, orderID, customer string, at time.Time, minor int64) *eventsv1.Event {
	return &eventsv1.Event{Id: id, OccurredAt: ts(at), Payload: &eventsv1.Event_OrderRefunded{OrderRefunded: &eventsv1.OrderRefunded{
		CustomerId: customer, OrderId: orderID, RefundId: refundID, Amount: &eventsv1.Money{AmountMinor: minor, Currency: "EUR"},
	}}}
}

func surveyEvent(id, customer string, at time.Time, kind eventsv1.SurveyKind, score int32) *eventsv1.Event {
	return &eventsv1.Event{Id: id, OccurredAt: ts(at), Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
		CustomerId: customer, SurveyId: "post-purchase", Kind: kind, Score: score,
	}}}
}

// shop is a deterministic synthetic history with the awkward cases a real
// one has: refunds (partial, several per order, arriving before their order,
// exceeding the total, naming an order that never arrives), re-sent orders
// that disagree with the first version, the same order sent under two event
// ids, and customers answering surveys more than once.
type shop struct {
	events  []*eventsv1.Event
	orders  []retention.Order // every version sent
	refunds []retention.Refund
	answers []retention.Answer
	start   time.Time
	end     time.Time
}

func newShop(seed uint64, customers int, start time.Time, days int) *shop {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	s := &shop{start: start, end: start.AddDate(0, 0, days)}
	n := 0
	next := func(prefix string) string { n++; return fmt.Sprintf("%s-%d", prefix, n) }
	instant := func(from time.Time, maxDays float64) time.Time {
		return from.Add(time.Duration(r.Float64() * maxDays * float64(24*time.Hour))).Truncate(time.Second)
	}
	addOrder := func(id, orderID, customer string, at time.Time, minor int64) {
		s.events = append(s.events, orderEvent(id, orderID, customer, at, minor, "EUR"))
		s.orders = append(s.orders, retention.Order{ID: orderID, Customer: retention.CustomerID(customer), At: at, TotalMinor: minor})
	}
	addRefund := func(refundID, orderID, customer string, at time.Time, minor int64) {
		s.events = append(s.events, refundEvent(next("ev"), refundID, orderID, customer, at, minor))
		s.refunds = append(s.refunds, retention.Refund{ID: refundID, OrderID: orderID, AmountMinor: minor})
	}
	addAnswer := func(customer string, at time.Time, kind eventsv1.SurveyKind, score int) {
		id := next("ans")
		s.events = append(s.events, surveyEvent(id, customer, at, kind, int32(score)))
		k := retention.SurveyNPS
		if kind == eventsv1.SurveyKind_SURVEY_KIND_CSAT {
			k = retention.SurveyCSAT
		}
		s.answers = append(s.answers, retention.Answer{ID: id, Customer: retention.CustomerID(customer), At: at, Kind: k, Score: score})
	}
	for c := range customers {
		customer := fmt.Sprintf("c%04d", c)
		at := instant(start, float64(days))
		for at.Before(s.end) {
			orderID := next("o")
			minor := int64(500 + r.IntN(20000))
			if r.IntN(10) == 0 {
				// A refund, sometimes sent before its order.
				refundAt := at.Add(time.Duration(r.IntN(72)) * time.Hour)
				amount := 1 + r.Int64N(minor)
				if r.IntN(20) == 0 {
					amount = minor + 100 // over-reported
				}
				addRefund(next("rf"), orderID, customer, refundAt, amount)
				if r.IntN(4) == 0 {
					addRefund(next("rf"), orderID, customer, refundAt.Add(time.Hour), 1+r.Int64N(minor/2+1))
				}
			}
			addOrder(orderID, orderID, customer, at, minor)
			switch r.IntN(25) {
			case 0: // the same order again under another event id
				addOrder(next("ev"), orderID, customer, at, minor)
			case 1: // a re-send that disagrees: earlier, later, other total
				addOrder(next("ev"), orderID, customer, at.Add(time.Duration(r.IntN(96)-48)*time.Hour), minor+int64(r.IntN(500)))
			case 2: // a re-send naming another customer
				addOrder(next("ev"), orderID, fmt.Sprintf("c%04d", r.IntN(customers)), at, minor)
			}
			if r.IntN(3) == 0 {
				addAnswer(customer, at.Add(time.Duration(1+r.IntN(200))*time.Hour), eventsv1.SurveyKind_SURVEY_KIND_NPS, r.IntN(11))
			}
			if r.IntN(8) == 0 {
				addAnswer(customer, at.Add(time.Duration(1+r.IntN(200))*time.Hour), eventsv1.SurveyKind_SURVEY_KIND_CSAT, 1+r.IntN(5))
			}
			at = at.Add(time.Duration(r.ExpFloat64() * 45 * float64(24*time.Hour))).Truncate(time.Second)
			if r.IntN(6) == 0 {
				break // the customer leaves
			}
		}
	}
	// Refunds of orders that never arrive count towards nothing.
	for range 3 {
		addRefund(next("rf"), "o-missing-"+next("x"), "c0000", instant(start, float64(days)), 100)
	}
	return s
}

// shuffled returns the events in a random order.
func shuffled(seed uint64, evs []*eventsv1.Event) []*eventsv1.Event {
	out := append([]*eventsv1.Event(nil), evs...)
	r := rand.New(rand.NewPCG(seed, 7))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// pool opens the service's database for assertions on its tables.
func (s *stack) pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func count(t *testing.T, s *stack, query string) int {
	t.Helper()
	var n int
	if err := s.pool(t).QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
