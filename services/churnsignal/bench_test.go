package churnsignal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/churnsignal/internal/facts"
)

// BenchmarkConsumer measures the facts consumer (apply facts + rescore the
// touched customers + outbox, one transaction per batch of 500) on
// RETAIN_BENCH_FACTS facts (default 50k: 70% orders, 15% tickets, 15% NPS
// answers over 10k customers) already on RETAIN_EVENTS, next to the raw
// rate of the platform's runner (fetch -> inbox-only transaction -> ack) on
// the same messages in the same run. One op is the whole backlog.
// RETAIN_BENCH_TENANTS spreads the facts round-robin over that many shops
// (default 1; shop000, shop001, ...): the same 10k customers, each in one
// shop, so a batch of 500 facts holds about min(500, N) shops.
//
//	go test -run '^$' -bench Consumer -benchtime 1x .
//	RETAIN_TEST_PG_DURABLE=1 go test -run '^$' -bench Consumer -benchtime 1x .   # commits pay their fsync
//	RETAIN_TEST_PG_DURABLE=1 RETAIN_BENCH_TENANTS=500 go test -run '^$' -bench Consumer -benchtime 1x .
func BenchmarkConsumer(b *testing.B) {
	n := testenv.BenchInt("RETAIN_BENCH_FACTS", 50_000)
	tenants := make([]string, testenv.BenchInt("RETAIN_BENCH_TENANTS", 1))
	for i := range tenants {
		tenants[i] = fmt.Sprintf("shop%03d", i)
	}
	if len(tenants) == 1 {
		tenants[0] = "bench"
	}
	for b.Loop() {
		b.StopTimer()
		ns := testenv.NATS(b)
		dbURL := testenv.Postgres(b)
		ctx := context.Background()
		pub := testenv.Bus(b, bus.Config{URL: ns.URL()})
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		msgs := make([]bus.Message, n)
		for i := range n {
			cust := fmt.Sprintf("c%05d", i%10_000)
			at := timestamppb.New(now.Add(-time.Duration(i%400) * 24 * time.Hour))
			id := fmt.Sprintf("e%07d", i)
			tenant := tenants[i%len(tenants)]
			ev := &eventsv1.Event{Id: id, TenantId: tenant, OccurredAt: at}
			switch {
			case i%20 < 14:
				ev.Type, ev.Payload = "order.placed", &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{CustomerId: cust, OrderId: id, Total: &eventsv1.Money{AmountMinor: 4200, Currency: "EUR"}}}
			case i%20 < 17:
				ev.Type, ev.Payload = "ticket.opened", &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{CustomerId: cust, TicketId: id, Category: 1}}
			default:
				ev.Type, ev.Payload = "survey.answered", &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{CustomerId: cust, SurveyId: "nps", Kind: 1, Score: int32(i % 11)}}
			}
			data, err := proto.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			msgs[i] = bus.Message{Subject: bus.EventSubject(tenant, ev.GetType()), ID: tenant + "/" + id, Type: ev.GetType(), Data: data}
		}
		if _, err := pub.PublishDurable(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		drained := func(durable string) bool {
			c, err := pub.JS.Consumer(ctx, bus.EventsStream, durable)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Consumer > 0
		}

		// The raw runner: the same fetch, inbox and ack, no effects.
		pool, err := pgxpool.New(ctx, dbURL)
		if err != nil {
			b.Fatal(err)
		}
		if err := pg.Migrate(ctx, pool, nil, bus.Migrations); err != nil {
			b.Fatal(err)
		}
		took := testenv.ConsumerTime(b, pub, pool, bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "bench-raw", EventTypes: facts.EventTypes, BatchSize: 500},
			func(context.Context, pgx.Tx, []*bus.Delivery) error { return nil }, n)
		rawRate := float64(n) / took.Seconds()
		pool.Close()

		// The service.
		s := &stack{nats: ns, dbURL: dbURL, clock: testenv.NewClock(now)}
		s.pubKey = authtest.Keys(b).Public
		start := time.Now()
		b.StartTimer()
		s.start(b)
		testenv.WaitForUpTo(b, 10*time.Minute, "the facts consumer", func() bool { return drained(churnsignal.ConsumerName) })
		b.StopTimer()
		rate := float64(n) / time.Since(start).Seconds()
		s.stop()
		pub.Close()
		b.ReportMetric(rate, "facts/s")
		b.ReportMetric(rawRate, "raw-runner-msgs/s")
		b.ReportMetric(float64(len(tenants)), "tenants")
		b.StartTimer()
	}
}
