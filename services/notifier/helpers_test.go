package notifier_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// mailbox is a real SMTP server (go-smtp) in the test process.
type mailbox struct {
	addr string
	mu   sync.Mutex
	msgs []*mail.Message
	raw  []string
	rcpt []string
}

type smtpSession struct {
	mb *mailbox
	to string
}

func (s *smtpSession) AuthMechanisms() []string                  { return nil }
func (s *smtpSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = to; return nil }
func (s *smtpSession) Reset()                                    {}
func (s *smtpSession) Logout() error                             { return nil }
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	s.mb.mu.Lock()
	s.mb.msgs = append(s.mb.msgs, m)
	s.mb.raw = append(s.mb.raw, string(b))
	s.mb.rcpt = append(s.mb.rcpt, s.to)
	s.mb.mu.Unlock()
	return nil
}

func newMailbox(t testing.TB) *mailbox {
	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{mb: mb}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	mb.addr = l.Addr().String()
	return mb
}

func (mb *mailbox) to(addr string) []*mail.Message {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var out []*mail.Message
	for i, r := range mb.rcpt {
		if r == addr {
			out = append(out, mb.msgs[i])
		}
	}
	return out
}

func (mb *mailbox) count() int { mb.mu.Lock(); defer mb.mu.Unlock(); return len(mb.msgs) }

// provider is an HTTP SMS provider or webhook receiver that, as real ones
// do, recognises a repeated Idempotency-Key.
type provider struct {
	srv *httptest.Server
	mu  sync.Mutex
	// calls counts requests; accepted holds the bodies by idempotency key.
	calls    int
	accepted map[string][]byte
	headers  []http.Header
	// hang, when > 0, makes the next calls stall this long after accepting.
	hang  time.Duration
	hangN int
	// gate, when set, makes every call wait until it is closed before
	// answering, after it was accepted.
	gate chan struct{}
	// down, when not 0, is the HTTP status every call is answered with
	// (nothing accepted), as a provider that is down answers.
	down int
}

func newProvider(t testing.TB) *provider {
	p := &provider{accepted: map[string][]byte{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := r.Header.Get("Idempotency-Key")
		p.mu.Lock()
		p.calls++
		p.headers = append(p.headers, r.Header.Clone())
		if p.down != 0 {
			status := p.down
			p.mu.Unlock()
			http.Error(w, "provider down for maintenance", status)
			return
		}
		if _, dup := p.accepted[key]; !dup {
			p.accepted[key] = b
		}
		hang := time.Duration(0)
		if p.hangN > 0 {
			p.hangN--
			hang = p.hang
		}
		gate := p.gate
		p.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if hang > 0 {
			select {
			case <-time.After(hang):
			case <-r.Context().Done():
				return
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"id": "sms-" + key})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) stats() (calls, unique int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, len(p.accepted)
}

const (
	unsubSecret   = "an-unsubscribe-secret-of-32-bytes!!"
	webhookSecret = "webhook-secret-0123456789"
)

type stack struct {
	nats     *testenv.NATSServer
	dbURL    string
	db       *pgxpool.Pool
	pub      *bus.Bus
	signer   *auth.Signer
	pubKey   string
	clock    *testenv.Clock
	mail     *mailbox
	sms      *provider
	hook     *provider
	svc      *notifier.Service
	conn     *grpc.ClientConn
	httpAddr string
	stop     func()
	opts     []func(*notifier.Config)
	// metrics reads what the service's instruments recorded, across
	// restarts; logs is everything it logged at info and above.
	metrics *sdkmetric.ManualReader
	meters  *sdkmetric.MeterProvider
	logs    *testenv.SyncBuffer
}

func setup(t *testing.T, opts ...func(*notifier.Config)) *stack {
	t.Helper()
	keys := authtest.Keys(t)
	s := &stack{nats: testenv.NATS(t), dbURL: testenv.Postgres(t), signer: keys.Signer, pubKey: keys.Public,
		clock: testenv.NewClock(time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)), mail: newMailbox(t), sms: newProvider(t), hook: newProvider(t), opts: opts,
		metrics: sdkmetric.NewManualReader(), logs: &testenv.SyncBuffer{}}
	s.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.metrics))
	s.start(t)
	ctx := context.Background()
	var err error
	if s.db, err = pgxpool.New(ctx, s.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.db.Close)
	s.pub = testenv.Bus(t, bus.Config{URL: s.nats.URL(), Name: "test"})
	return s
}

func (s *stack) start(t testing.TB) {
	t.Helper()
	cfg := notifier.DefaultConfig()
	cfg.NATS.URL = s.nats.URL()
	cfg.DatabaseURL = s.dbURL
	cfg.AuthPublicKey = s.pubKey
	cfg.Addrs = server.Addrs{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0", Ops: "127.0.0.1:0"}
	cfg.UnsubscribeSecret = unsubSecret
	cfg.Now = s.clock.Now
	cfg.PollInterval = 50 * time.Millisecond
	cfg.SMTP.Addr, cfg.SMTP.From = s.mail.addr, "Shop <news@shop.example>"
	cfg.SMS.URL, cfg.SMS.AuthValue, cfg.SMSRate = s.sms.srv.URL, "Bearer sms-key", 0
	cfg.Webhook.URL, cfg.Webhook.Secret = s.hook.srv.URL, webhookSecret
	for _, o := range s.opts {
		o(&cfg)
	}
	tel := servertest.Telemetry(t, "notifier-test")
	tel.MeterProvider = s.meters
	tel.Logger = slog.New(slog.NewTextHandler(s.logs, nil))
	svc, err := notifier.New(context.Background(), cfg, tel)
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
	s.svc, s.httpAddr, s.conn = svc, r.Host.Addrs().HTTP, r.Conn
}

func (s *stack) client() notifierv1.NotifierServiceClient {
	return notifierv1.NewNotifierServiceClient(s.conn)
}

func (s *stack) token(t testing.TB, tenant string, scopes ...string) grpc.CallOption {
	tok, err := s.signer.Issue(auth.Claims{Tenant: tenant, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return grpc.PerRPCCredentials(auth.BearerCredentials{Token: tok})
}

type customer struct {
	id, email, phone, locale, tz string
	emailConsent, smsConsent     eventsv1.ConsentState
}

func (s *stack) customers(t testing.TB, tenant string, cs ...customer) {
	t.Helper()
	s.customerEvents(t, "", s.customerUpdates(tenant, cs...)...)
}

// customerUpdates are the customer.updated events of cs, each customer's
// event id cu-<id>, occurred an hour ago.
func (s *stack) customerUpdates(tenant string, cs ...customer) []*eventsv1.Event {
	var evs []*eventsv1.Event
	for _, c := range cs {
		evs = append(evs, &eventsv1.Event{Id: "cu-" + c.id, TenantId: tenant, Type: "customer.updated", OccurredAt: timestamppb.New(s.clock.Now().Add(-time.Hour)),
			Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{CustomerId: c.id, Email: c.email, Phone: c.phone,
				FirstName: "Name-" + c.id, Locale: c.locale, TimeZone: c.tz, Consent: &eventsv1.Consent{EmailMarketing: c.emailConsent, SmsMarketing: c.smsConsent}}}})
	}
	return evs
}

// customerEvents publishes customer.updated events (publishCustomerEvents)
// and waits until they are applied.
func (s *stack) customerEvents(t testing.TB, msgSuffix string, evs ...*eventsv1.Event) {
	t.Helper()
	ids := s.publishCustomerEvents(t, msgSuffix, evs...)
	// Applied when the contacts consumer's inbox holds these messages: a
	// count of the tenant's contacts is met at once by earlier ones.
	testenv.WaitFor(t, "contacts projected", func() bool {
		var n int
		_ = s.db.QueryRow(context.Background(), `SELECT count(DISTINCT msg_id) FROM bus_inbox WHERE msg_id = ANY($1)`, ids).Scan(&n)
		return n == len(ids)
	})
}

// publishCustomerEvents publishes customer.updated events, each with
// Nats-Msg-Id <tenant>/<event id> (suffixed with msgSuffix: a re-publish
// after the stream's dedupe window), and returns their message ids.
func (s *stack) publishCustomerEvents(t testing.TB, msgSuffix string, evs ...*eventsv1.Event) []string {
	t.Helper()
	var msgs []bus.Message
	ids := make([]string, len(evs))
	for i, ev := range evs {
		data, _ := proto.Marshal(ev)
		ids[i] = ev.GetTenantId() + "/" + ev.GetId() + msgSuffix
		msgs = append(msgs, bus.Message{Subject: bus.EventSubject(ev.GetTenantId(), "customer.updated"), ID: ids[i], Type: "customer.updated", Data: data})
	}
	if _, err := s.pub.PublishDurable(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	return ids
}

// request publishes notification.requested as the campaign service does;
// msgID overrides the Nats-Msg-Id (a re-publish beyond the dedupe window).
func (s *stack) request(t testing.TB, r *notifierv1.NotificationRequested, msgID string) {
	t.Helper()
	if r.RequestedAt == nil {
		r.RequestedAt = timestamppb.New(s.clock.Now())
	}
	if msgID == "" {
		msgID = r.TenantId + "/" + r.RequestId
	}
	data, _ := proto.Marshal(r)
	if _, err := s.pub.Publish(context.Background(), bus.Message{Subject: bus.NotificationSubject(r.TenantId, bus.TypeNotificationRequested), ID: msgID, Type: bus.TypeNotificationRequested, Data: data}); err != nil {
		t.Fatal(err)
	}
}

func marketingEmail(tenant, id, cust, campaign string) *notifierv1.NotificationRequested {
	return &notifierv1.NotificationRequested{RequestId: id, TenantId: tenant, CustomerId: cust, Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Category: notifierv1.Category_CATEGORY_MARKETING, Priority: notifierv1.Priority_PRIORITY_NORMAL, TemplateKey: "winback_90",
		Origin: &notifierv1.Origin{CampaignId: campaign}}
}

// delivery waits until the request has a status in want and returns it.
func (s *stack) delivery(t testing.TB, tenant, id string, want ...string) *notifierv1.Delivery {
	t.Helper()
	var d *notifierv1.Delivery
	testenv.WaitFor(t, fmt.Sprintf("delivery %s to be %v", id, want), func() bool {
		resp, err := s.client().GetDelivery(context.Background(), &notifierv1.GetDeliveryRequest{RequestId: id}, s.token(t, tenant, auth.ScopeRead))
		if err != nil {
			return false
		}
		d = resp.GetDelivery()
		for _, w := range want {
			if d.GetStatus() == w {
				return true
			}
		}
		return false
	})
	return d
}

// sentSMS sends marketing SMS sms-1 to customer c of shop, who consented,
// and waits for it to be sent.
func (s *stack) sentSMS(t testing.TB) {
	t.Helper()
	s.customers(t, "shop", customer{id: "c", phone: "+4915112345678", smsConsent: granted})
	r := marketingEmail("shop", "sms-1", "c", "winback")
	r.Channel = notifierv1.Channel_CHANNEL_SMS
	s.request(t, r, "")
	s.delivery(t, "shop", "sms-1", "sent")
}

// storedSMS stores request id as sms-1 is, but in status with attempts
// and leaseUntil (nil: none), due now: a delivery as another replica or an
// earlier process left it.
func (s *stack) storedSMS(t testing.TB, id, status string, attempts int, leaseUntil *time.Time) {
	t.Helper()
	if _, err := s.db.Exec(context.Background(), `INSERT INTO deliveries (tenant, request_id, customer_id, channel, category, priority, template_key, request, status, expires_at, requested_at, created_at, updated_at, attempts, lease_until, due_at)
		SELECT tenant, $5, customer_id, channel, category, priority, template_key, request, $2, expires_at, requested_at, $1, $1, $3, $4, $1 FROM deliveries WHERE request_id = 'sms-1'`,
		s.clock.Now(), status, attempts, leaseUntil, id); err != nil {
		t.Fatal(err)
	}
}

// outcomes returns the outcomes on RETAIN_DELIVERIES for a request, in order.
func (s *stack) outcomes(t testing.TB, requestID string) []*notifierv1.DeliveryOutcome {
	t.Helper()
	ctx := context.Background()
	testenv.WaitFor(t, "the outbox to drain", func() bool {
		var n int
		_ = s.db.QueryRow(ctx, `SELECT count(*) FROM bus_outbox WHERE published_at IS NULL`).Scan(&n)
		return n == 0
	})
	st, err := s.pub.JS.Stream(ctx, bus.DeliveriesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*notifierv1.DeliveryOutcome
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var o notifierv1.DeliveryOutcome
		if err := proto.Unmarshal(m.Data, &o); err != nil {
			t.Fatal(err)
		}
		if o.GetRequestId() == requestID {
			if want := fmt.Sprintf("%s/%s/%d", o.GetTenantId(), requestID, o.GetSequence()); m.Header.Get(bus.HeaderMsgID) != want {
				t.Errorf("msg id %q, want %q", m.Header.Get(bus.HeaderMsgID), want)
			}
			out = append(out, &o)
		}
	}
	return out
}

// verifySignature is the receiver's recipe from the README, written out
// independently of the notifier's code.
func verifySignature(secret, header string, body []byte) bool {
	var ts, sig string
	for _, kv := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "t" {
			ts = v
		} else if k == "v1" {
			sig = v
		}
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	return ts != "" && hmac.Equal([]byte(want), []byte(sig))
}
