package campaign_test

import (
	"context"
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
	"github.com/retainhq/retain/platform/testenv"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const day = 24 * time.Hour

// waitThenSend is a campaign whose every order waits an hour, then sends:
// one timer per order.
const waitThenSend = `
id: later
name: Later
trigger: {event: order.placed}
entry: {once_per_key: order_id}
steps:
  - {id: wait, wait: {duration: 1h}}
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}}
`

// stack is a campaign service on real NATS and Postgres.
type stack struct {
	nats   *testenv.NATSServer
	dbURL  string
	db     *pgxpool.Pool
	pub    *bus.Bus
	js     jetstream.JetStream
	signer *auth.Signer
	pubKey string
	clock  *testenv.Clock
	opts   []option
	inst   []*instance
	// top is the test that owns the stack: replicas started in subtests
	// live until it ends.
	top testing.TB
}

// instance is one running replica.
type instance struct {
	svc  *campaign.Service
	conn *grpc.ClientConn
	stop func()
}

type option func(*campaign.Config)

func setup(t testing.TB, opts ...option) *stack {
	t.Helper()
	keys := authtest.Keys(t)
	s := &stack{nats: testenv.NATS(t), dbURL: testenv.Postgres(t), signer: keys.Signer, pubKey: keys.Public,
		clock: testenv.NewClock(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)), opts: opts, top: t}
	s.start(t)
	ctx := context.Background()
	var err error
	if s.db, err = pgxpool.New(ctx, s.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.db.Close)
	s.pub = testenv.Bus(t, bus.Config{URL: s.nats.URL(), Name: "test-publisher"})
	s.js = s.pub.JS
	return s
}

// start runs one more replica on the stack's NATS and database.
func (s *stack) start(t testing.TB) *instance {
	t.Helper()
	cfg := campaign.DefaultConfig()
	cfg.NATS.URL = s.nats.URL()
	cfg.DatabaseURL = s.dbURL
	cfg.AuthPublicKey = s.pubKey
	// Tests fire timers and audiences themselves, at the clock they set.
	cfg.TimerInterval, cfg.AudienceInterval = 0, 0
	cfg.Now = s.clock.Now
	cfg.Addrs = server.Addrs{GRPC: "127.0.0.1:0", Ops: "127.0.0.1:0"}
	for _, o := range s.opts {
		o(&cfg)
	}
	tel := servertest.Telemetry(t, "campaign-test")
	svc, err := campaign.New(context.Background(), cfg, tel)
	if err != nil {
		t.Fatal(err)
	}
	r := servertest.Start(t, svc, tel, svc.Verifier(), cfg.Addrs)
	// Replicas outlive the subtest that started them: the top test stops
	// them, and reports how they ended.
	top := s.top
	in := &instance{svc: svc, conn: r.Conn, stop: func() {
		if err := r.Stop(); err != nil {
			top.Error(err)
		}
	}}
	s.top.Cleanup(in.stop)
	s.inst = append(s.inst, in)
	return in
}

// stopAll stops every replica (cleanly: each finishes its batch in flight).
func (s *stack) stopAll() {
	for _, in := range s.inst {
		in.stop()
	}
	s.inst = nil
}

func (s *stack) svc() *campaign.Service { return s.inst[len(s.inst)-1].svc }

func (s *stack) client() campaignv1.CampaignServiceClient {
	return campaignv1.NewCampaignServiceClient(s.inst[len(s.inst)-1].conn)
}

func (s *stack) token(t testing.TB, tenant string) grpc.CallOption {
	t.Helper()
	tok, err := s.signer.Issue(auth.Claims{Tenant: tenant, Scopes: []string{auth.ScopeCampaignsWrite, auth.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}
	return grpc.PerRPCCredentials(auth.BearerCredentials{Token: tok})
}

// publish sends events to RETAIN_EVENTS as ingest does.
// report is campaign id's report, read as tenant.
func (s *stack) report(t testing.TB, tenant, id string) *campaignv1.Report {
	t.Helper()
	r, err := s.client().GetReport(context.Background(), &campaignv1.GetReportRequest{Id: id}, s.token(t, tenant))
	if err != nil {
		t.Fatal(err)
	}
	return r.GetReport()
}

func (s *stack) publish(t testing.TB, tenant string, evs ...*eventsv1.Event) {
	t.Helper()
	testenv.PublishEvents(t, s.pub, tenant, s.clock.Now(), evs...)
}

// publishOn sends one message to any subject (signals, outcomes).
func (s *stack) publishOn(t testing.TB, subject, id, typ string, m proto.Message) {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.pub.PublishDurable(ctx, []bus.Message{{Subject: subject, ID: id, Type: typ, Data: data}}); err != nil {
		t.Fatal(err)
	}
}

// caughtUp waits until the consumers have applied everything and the relay
// has published every outbox row.
func (s *stack) caughtUp(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, in := range s.inst {
		if err := in.svc.WaitCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s.outboxDrained(t)
}

func (s *stack) outboxDrained(t testing.TB) {
	t.Helper()
	testenv.WaitFor(t, "the outbox relay", func() bool {
		var n int
		err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM bus_outbox WHERE published_at IS NULL`).Scan(&n)
		return err == nil && n == 0
	})
}

// fire fires due timers at the current clock and waits for the relay.
func (s *stack) fire(t testing.TB) int {
	t.Helper()
	n, err := s.svc().FireDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.outboxDrained(t)
	return n
}

// audiences evaluates the due scheduled audiences and waits for the relay.
func (s *stack) audiences(t testing.TB) {
	t.Helper()
	if _, err := s.svc().RunAudiences(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.outboxDrained(t)
}

// notification is a notification.requested on the stream with its msg id.
type notification struct {
	*notifierv1.NotificationRequested
	msgID string
}

// notifications returns every notification.requested of tenant on
// RETAIN_NOTIFICATIONS (nobody consumes the work queue in these tests).
func (s *stack) notifications(t testing.TB, tenant string) []notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, bus.NotificationsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []notification
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		if m.Subject != bus.NotificationSubject(tenant, bus.TypeNotificationRequested) {
			continue
		}
		n := &notifierv1.NotificationRequested{}
		if err := proto.Unmarshal(m.Data, n); err != nil {
			t.Fatalf("decode notification %d: %v", seq, err)
		}
		out = append(out, notification{NotificationRequested: n, msgID: m.Header.Get(bus.HeaderMsgID)})
	}
	return out
}

// Event builders.

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func orderEv(id, customer string, at time.Time, minor int64) *eventsv1.Event {
	return &eventsv1.Event{Id: id, Type: "order.placed", OccurredAt: ts(at), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
		CustomerId: customer, OrderId: id, Total: &eventsv1.Money{AmountMinor: minor, Currency: "EUR"}}}}
}

func couponOrderEv(id, customer string, at time.Time, minor int64, code string) *eventsv1.Event {
	ev := orderEv(id, customer, at, minor)
	ev.GetOrderPlaced().CouponCode = code
	return ev
}

func npsEv(id, customer string, at time.Time, score int32) *eventsv1.Event {
	return npsComment(id, customer, at, score, "")
}

// npsComment is npsEv with the answer's comment.
func npsComment(id, customer string, at time.Time, score int32, comment string) *eventsv1.Event {
	return &eventsv1.Event{Id: id, Type: "survey.answered", OccurredAt: ts(at), Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
		CustomerId: customer, SurveyId: "nps", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: score, Comment: comment}}}
}

func profileEv(id, customer string, at time.Time, tz string, traits map[string]string) *eventsv1.Event {
	return &eventsv1.Event{Id: id, Type: "customer.updated", OccurredAt: ts(at), Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{
		CustomerId: customer, TimeZone: tz, Traits: traits}}}
}
