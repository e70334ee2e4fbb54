package notifier_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/smtp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/channel"
	"github.com/retainhq/retain/services/notifier/internal/contacts"
	"github.com/retainhq/retain/services/notifier/internal/policy"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

// discardSession accepts every message and keeps none: the SMTP sink of
// the send benchmark, so the figure is the client's.
type discardSession struct{}

func (discardSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (discardSession) Reset()                                 {}
func (discardSession) Logout() error                          { return nil }
func (discardSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func newDiscardSMTP(b *testing.B) string {
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return discardSession{}, nil }))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// benchMessages are the messages of both SMTP phases: a rendered
// retention email of about 3 KB (text and HTML parts).
func benchMessages(n int) []*channel.Message {
	html := "<p>Hello Ada,</p>"
	for range 30 {
		html += "<p>We have not seen you in a while. Here is 15% off your next order: COMEBACK15.</p>\n"
	}
	out := make([]*channel.Message, n)
	for i := range out {
		out[i] = &channel.Message{Tenant: "bench", RequestID: fmt.Sprintf("winback/e-%d/s-1", i), To: fmt.Sprintf("c%d@example.com", i),
			Subject: "We miss you, Ada", Text: "Hello Ada, here is 15% off: COMEBACK15", HTML: html,
			UnsubscribeURL: "https://retain.shop.example/v1/unsubscribe?t=abc", UnsubscribePostURL: "https://retain.shop.example/v1/unsubscribe?t=abc",
			RequestedAt: time.Unix(1767225600, 0)}
	}
	return out
}

// BenchmarkSMTPSend measures emails/s through the notifier's pooled SMTP
// sender (8 connections, 16 senders as the engine's defaults) to a local
// go-smtp server that discards, next to a raw net/smtp pipeline over the
// same number of connections, sending the same bytes, to the same server
// in the same run. One op is one email.
//
//	cd services/notifier && go test -run '^$' -bench SMTPSend -benchtime 20000x .
func BenchmarkSMTPSend(b *testing.B) {
	addr := newDiscardSMTP(b)
	const pool, senders = 8, 16
	from := "Shop <news@shop.example>"
	var rawRate float64
	b.Run("raw-net-smtp", func(b *testing.B) {
		msgs := benchMessages(b.N)
		data := make([][]byte, len(msgs))
		for i, m := range msgs {
			data[i], _ = channel.BuildEmail(m, from)
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, pool)
		b.ResetTimer()
		for range pool {
			wg.Go(func() {
				c, err := smtp.Dial(addr)
				if err != nil {
					errs <- err
					return
				}
				defer c.Quit()
				if err := c.Hello("localhost"); err != nil {
					errs <- err
					return
				}
				for i := int(next.Add(1)) - 1; i < len(msgs); i = int(next.Add(1)) - 1 {
					if err := rawSend(c, "news@shop.example", msgs[i].To, data[i]); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		rawRate = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rawRate, "emails/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("notifier-pooled-sender", func(b *testing.B) {
		msgs := benchMessages(b.N)
		s := channel.NewSMTP(channel.SMTPConfig{Addr: addr, From: from, TLS: channel.TLSNone, PoolSize: pool, Timeout: 10 * time.Second})
		defer s.Close()
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Int64
		b.ResetTimer()
		for range senders {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < len(msgs); i = int(next.Add(1)) - 1 {
					if _, err := s.Send(context.Background(), msgs[i]); err != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d sends failed", n)
		}
		rate := float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "emails/s")
		b.ReportMetric(rawRate, "raw-emails/s")
		if rawRate > 0 {
			b.ReportMetric(100*rate/rawRate, "%-of-raw")
		}
		b.ReportMetric(0, "ns/op")
	})
}

func rawSend(c *smtp.Client, from, to string, data []byte) error {
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

// BenchmarkPolicyConsumer measures notification.requested/s decided by the
// notifier's consumer (contacts, preferences, suppressions and cap loaded
// per batch under per-customer locks; policy; delivery row, decision
// trail and, for the outcomes decided here, the outbox row, all in the
// batch's transaction) next to the raw platform consumer (bus.NewConsumer
// with a handler that does nothing: fetch -> transaction with the inbox ->
// ack) over the same number of messages in the same run. Both use the
// notifier's batch size and one worker. The requests mix what a campaign
// run produces: of every 20 customers 14 consented, 3 revoked and 3 never
// answered; each customer gets 3 marketing emails, so the third of a
// consenting one is over the cap (deferred). One op is one request.
//
//	cd services/notifier && RETAIN_TEST_PG_DURABLE=1 go test -run '^$' -bench PolicyConsumer -benchtime 20000x .
func BenchmarkPolicyConsumer(b *testing.B) {
	ctx := context.Background()
	ns := testenv.NATS(b)
	pool := testenv.MigratedPool(b, store.Migrations)
	bb := testenv.Bus(b, bus.Config{URL: ns.URL(), Name: "bench"})
	cfg := notifier.DefaultConfig()
	qs, _ := policy.ParseClock(cfg.QuietStart)
	qe, _ := policy.ParseClock(cfg.QuietEnd)
	// Noon UTC: quiet hours do not hold everything back.
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	engine, err := app.New(pool, app.Config{
		Policy:     policy.Config{CapMax: cfg.CapMax, CapWindow: cfg.CapWindow, QuietStart: qs, QuietEnd: qe, DefaultZone: time.UTC},
		DefaultTTL: cfg.DefaultTTL, Lease: cfg.Lease, SendTimeout: cfg.SendTimeout, MaxAttempts: cfg.MaxAttempts,
		RetryInitial: cfg.RetryInitial, RetryMax: cfg.RetryMax, SendBatch: cfg.SendBatch, SendWorkers: cfg.SendWorkers,
		PollInterval: cfg.PollInterval, PublicURL: cfg.PublicURL, UnsubscribeKey: []byte(unsubSecret), Now: func() time.Time { return now },
	}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	var round atomic.Int64

	// publish puts n requests of a fresh tenant on RETAIN_NOTIFICATIONS
	// (whose contacts exist), in atomic batches of 500.
	publish := func(b *testing.B, n int) string {
		tenant := fmt.Sprintf("bench%d", round.Add(1))
		customers := max(1, n/3)
		var cs []contacts.Contact
		for i := range customers {
			consent := eventsv1.ConsentState_CONSENT_STATE_GRANTED
			switch i % 20 {
			case 14, 15, 16:
				consent = eventsv1.ConsentState_CONSENT_STATE_REVOKED
			case 17, 18, 19:
				consent = eventsv1.ConsentState_CONSENT_STATE_UNSPECIFIED
			}
			c, _ := contacts.FromEvent(&eventsv1.Event{TenantId: tenant, OccurredAt: timestamppb.New(now.Add(-time.Hour)),
				Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{CustomerId: fmt.Sprintf("c%d", i),
					Email: fmt.Sprintf("c%d@example.com", i), FirstName: "Ada", Locale: "en", TimeZone: "Europe/Berlin",
					Consent: &eventsv1.Consent{EmailMarketing: consent}}}})
			cs = append(cs, c)
		}
		if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return store.ApplyContacts(ctx, tx, cs) }); err != nil {
			b.Fatal(err)
		}
		msgs := make([]bus.Message, 0, 500)
		for i := range n {
			r := &notifierv1.NotificationRequested{RequestId: fmt.Sprintf("camp%d/e-%d/s-1", i%3, i/3), TenantId: tenant, CustomerId: fmt.Sprintf("c%d", (i/3)%customers),
				Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_MARKETING, Priority: notifierv1.Priority_PRIORITY_NORMAL,
				TemplateKey: "winback_90", Origin: &notifierv1.Origin{CampaignId: fmt.Sprintf("camp%d", i%3)}, RequestedAt: timestamppb.New(now)}
			data, err := proto.Marshal(r)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, bus.Message{Subject: bus.NotificationSubject(tenant, bus.TypeNotificationRequested), ID: tenant + "/" + r.RequestId,
				Type: bus.TypeNotificationRequested, Data: data})
			if len(msgs) == cap(msgs) || i == n-1 {
				if err := bb.PublishAtomic(ctx, msgs); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[:0]
			}
		}
		return tenant
	}

	runUntil := func(b *testing.B, tenant string, h bus.Handler) {
		testenv.TimeConsumer(b, bb, pool, bus.ConsumerConfig{
			Stream: bus.NotificationsStream, Durable: "bench-" + tenant, BatchSize: cfg.BatchSize,
			FilterSubjects: []string{bus.NotificationSubject(tenant, bus.TypeNotificationRequested)},
		}, h)
	}

	var rawRate float64
	b.Run("raw-runner", func(b *testing.B) {
		tenant := publish(b, b.N)
		runUntil(b, tenant, func(context.Context, pgx.Tx, []*bus.Delivery) error { return nil })
		rawRate = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rawRate, "requests/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("policy", func(b *testing.B) {
		tenant := publish(b, b.N)
		runUntil(b, tenant, engine.HandleRequests)
		rate := float64(b.N) / b.Elapsed().Seconds()
		b.StopTimer()
		counts, err := engine.Counts(ctx, tenant)
		if err != nil {
			b.Fatal(err)
		}
		total := 0
		for _, c := range counts {
			total += c.N
			b.Logf("%-10s %-16s %d", c.Status, c.ReasonCode, c.N)
		}
		if total != b.N {
			b.Fatalf("%d deliveries decided, want %d", total, b.N)
		}
		b.ReportMetric(rate, "requests/s")
		b.ReportMetric(rawRate, "raw-requests/s")
		if rawRate > 0 {
			b.ReportMetric(100*rate/rawRate, "%-of-raw")
		}
		b.ReportMetric(0, "ns/op")
	})
}
