package campaign_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/campaign/campaignfile"
	"github.com/retainhq/retain/services/campaign/internal/app"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// benchEnv is a bus and a migrated campaign database without the service
// around them, so each path can be timed alone.
type benchEnv struct {
	pub    *bus.Bus
	pool   *pgxpool.Pool
	engine *app.Engine
	clock  *testenv.Clock
}

func newBenchEnv(b *testing.B) *benchEnv {
	return newEngineEnv(b, app.Config{}, slog.New(slog.DiscardHandler))
}

// newEngineEnv is newBenchEnv with cfg (its clock and MaxTriggerAge set
// here) and log.
func newEngineEnv(tb testing.TB, cfg app.Config, log *slog.Logger) *benchEnv {
	tb.Helper()
	pub := testenv.Bus(tb, bus.Config{URL: testenv.NATS(tb).URL()})
	pool := testenv.MigratedPool(tb, store.Migrations)
	c := testenv.NewClock(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	cfg.MaxTriggerAge, cfg.Now = 7*day, c.Now
	e := app.New(pool, cfg, log)
	return &benchEnv{pub: pub, pool: pool, engine: e, clock: c}
}

// benchTenants are the RETAIN_BENCH_TENANTS shops (default 1) a benchmark
// spreads its events over.
func benchTenants() []string {
	tenants := make([]string, testenv.BenchInt("RETAIN_BENCH_TENANTS", 1))
	for i := range tenants {
		tenants[i] = fmt.Sprintf("shop%03d", i)
	}
	return tenants
}

// publishSpread publishes evs round-robin over tenants: several shops'
// events interleave on the stream, one publish each.
func (e *benchEnv) publishSpread(b *testing.B, tenants []string, evs []*eventsv1.Event) {
	b.Helper()
	if len(tenants) == 1 {
		testenv.PublishEvents(b, e.pub, tenants[0], e.clock.Now(), evs...)
		return
	}
	for i, ev := range evs {
		testenv.PublishEvents(b, e.pub, tenants[i%len(tenants)], e.clock.Now(), ev)
	}
}

// drain runs a consumer with workers concurrent batches of 500 over the n
// events on RETAIN_EVENTS and returns how long it took.
func (e *benchEnv) drain(b *testing.B, durable string, h bus.Handler, n, workers int) time.Duration {
	b.Helper()
	return testenv.ConsumerTime(b, e.pub, e.pool, bus.ConsumerConfig{
		Stream: bus.EventsStream, Durable: durable, EventTypes: app.FactTypes, BatchSize: 500, Concurrency: workers,
	}, h, n)
}

// benchEvents is a shop's week up to now: orders (a third of them a
// customer's 3rd) and NPS answers, over customers who are new that week
// (week numbers them and the event ids).
func benchEvents(n, customers int, now time.Time, week int) []*eventsv1.Event {
	evs := make([]*eventsv1.Event, n)
	for i := range n {
		cust := fmt.Sprintf("w%d-c%06d", week, i%customers)
		id := fmt.Sprintf("w%d-e%07d", week, i)
		ev := &eventsv1.Event{Id: id, OccurredAt: timestamppb.New(now.Add(-time.Duration(n-i) * time.Second))}
		if i%5 < 4 {
			ev.Type, ev.Payload = "order.placed", &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{CustomerId: cust, OrderId: id, Total: &eventsv1.Money{AmountMinor: 4200, Currency: "EUR"}}}
		} else {
			ev.Type, ev.Payload = "survey.answered", &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{CustomerId: cust, SurveyId: "nps", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: int32(i % 11)}}
		}
		evs[i] = ev
	}
	return evs
}

// BenchmarkTriggerEvaluation measures the facts consumer with every
// event-triggered playbook installed (thank-you, onboarding, loyalty reward,
// detractor recovery, passive nudge: facts stored, conditions evaluated,
// customers enrolled, due steps run, requests in the outbox) on a shop's
// second week: RETAIN_BENCH_EVENTS events (default 30k: 80% orders, 20% NPS
// answers over 10k new customers) already on RETAIN_EVENTS, after the
// first week's as many (applied untimed, so that the tables and planner
// statistics are a running shop's rather than an empty database's; the
// second week's customers are new, so it makes as many enrollments), with
// RETAIN_BENCH_WORKERS concurrent batches (default: the service's), next
// to the platform runner's raw rate on the same messages with as many
// workers: the raw runner stores each message id (fetch -> inbox and a
// multi-row insert -> ack, testenv.RawStore, as the metrics benchmark),
// timed right before and right after the service's handler
// (raw-runner-msgs/s is the mean; the rate of a shared machine moves
// between runs); noop-runner-msgs/s is the runner with a handler that
// writes nothing. One op is the whole backlog.
// RETAIN_BENCH_PLAYBOOKS picks other playbooks (e.g. "thank-you", or
// "none" for the facts alone); RETAIN_BENCH_TENANTS spreads the events
// over that many shops, interleaved, each with the playbooks installed;
// RETAIN_BENCH_HISTORY=N gives each of the second week's customers (of
// the first shop) N orders placed two years earlier, as a long-lived
// shop's regulars have.
//
//	go test -run '^$' -bench TriggerEvaluation -benchtime 1x .
func BenchmarkTriggerEvaluation(b *testing.B) {
	n := testenv.BenchInt("RETAIN_BENCH_EVENTS", 30_000)
	workers := testenv.BenchInt("RETAIN_BENCH_WORKERS", campaign.DefaultConfig().Workers)
	history := testenv.BenchInt("RETAIN_BENCH_HISTORY", 0)
	tenants := benchTenants()
	publish := func(e *benchEnv, evs []*eventsv1.Event) { e.publishSpread(b, tenants, evs) }
	for b.Loop() {
		b.StopTimer()
		e := newBenchEnv(b)
		ctx := context.Background()
		for _, t := range tenants {
			for _, name := range benchPlaybooks() {
				if _, err := e.engine.InstallPlaybook(ctx, t, name, "", false); err != nil {
					b.Fatal(err)
				}
			}
		}
		publish(e, benchEvents(n, 10_000, e.clock.Now(), 1))
		e.drain(b, "bench-campaign", e.engine.HandleFacts, n, workers)
		e.clock.Advance(7 * day)
		if history > 0 {
			if _, err := e.pool.Exec(ctx, `
				INSERT INTO campaign_orders (tenant, order_id, customer_id, placed_at, total_minor, currency)
				SELECT $1, format('h-%s-%s', c, k), format('w2-c%s', lpad(c::text, 6, '0')),
					$2::timestamptz - interval '730 days' + k * interval '1 day', 4200, 'EUR'
				FROM generate_series(0, 9999) c, generate_series(1, $3) k`, tenants[0], e.clock.Now(), history); err != nil {
				b.Fatal(err)
			}
			if _, err := e.pool.Exec(ctx, `VACUUM ANALYZE campaign_orders`); err != nil {
				b.Fatal(err)
			}
		}
		publish(e, benchEvents(n, 10_000, e.clock.Now(), 2))
		counts := func() (enrolled, requested int) {
			if err := e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM enrollments), (SELECT count(*) FROM bus_outbox)`).Scan(&enrolled, &requested); err != nil {
				b.Fatal(err)
			}
			return enrolled, requested
		}
		enrolled0, requested0 := counts()
		// The raw runners read the stream's first n messages: as many
		// events of the same kinds.
		before := e.drain(b, "bench-raw-before", testenv.RawStore(b, e.pool), n, workers)
		b.StartTimer()
		took := e.drain(b, "bench-campaign", e.engine.HandleFacts, n, workers)
		b.StopTimer()
		after := e.drain(b, "bench-raw-after", testenv.RawStore(b, e.pool), n, workers)
		noop := e.drain(b, "bench-noop", func(context.Context, pgx.Tx, []*bus.Delivery) error { return nil }, n, workers)
		enrolled, requested := counts()
		enrolled, requested = enrolled-enrolled0, requested-requested0
		rate := float64(n) / took.Seconds()
		rawRate := (float64(n)/before.Seconds() + float64(n)/after.Seconds()) / 2
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(rawRate, "raw-runner-msgs/s")
		b.ReportMetric(100*rate/rawRate, "%-of-raw")
		b.ReportMetric(float64(n)/noop.Seconds(), "noop-runner-msgs/s")
		b.ReportMetric(float64(workers), "workers")
		b.ReportMetric(float64(len(tenants)), "tenants")
		b.ReportMetric(float64(history), "history-orders")
		b.ReportMetric(float64(enrolled), "enrollments")
		b.ReportMetric(float64(requested), "requests")
		b.StartTimer()
	}
}

// benchPlaybooks are the playbooks BenchmarkTriggerEvaluation installs:
// RETAIN_BENCH_PLAYBOOKS (comma-separated, "none" for none), default every
// event-triggered one.
func benchPlaybooks() []string {
	switch v := os.Getenv("RETAIN_BENCH_PLAYBOOKS"); v {
	case "":
		return []string{"thank-you", "onboarding", "loyalty-reward", "detractor-recovery", "passive-nudge"}
	case "none":
		return nil
	default:
		return strings.Split(v, ",")
	}
}

// BenchmarkTimerFiring measures the scheduler: RETAIN_BENCH_TIMERS
// (default 20k) enrollments whose wait has passed, each firing one send
// step (the request to the outbox), 500 per transaction, spread over
// RETAIN_BENCH_TENANTS shops. One op is the whole set.
//
//	go test -run '^$' -bench TimerFiring -benchtime 1x .
func BenchmarkTimerFiring(b *testing.B) {
	n := testenv.BenchInt("RETAIN_BENCH_TIMERS", 20_000)
	tenants := benchTenants()
	for b.Loop() {
		b.StopTimer()
		e := newBenchEnv(b)
		ctx := context.Background()
		c, err := campaignfile.Decode([]byte(waitThenSend))
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range tenants {
			if _, err := e.engine.Create(ctx, t, c, "", false); err != nil {
				b.Fatal(err)
			}
		}
		evs := benchEvents(n, n, e.clock.Now(), 1)
		for _, ev := range evs {
			ev.OccurredAt = timestamppb.New(e.clock.Now()) // every timer due an hour from now
			if ev.GetType() != "order.placed" {
				o := eventsv1.OrderPlaced{CustomerId: ev.GetSurveyAnswered().GetCustomerId(), OrderId: ev.GetId(), Total: &eventsv1.Money{AmountMinor: 1, Currency: "EUR"}}
				ev.Type, ev.Payload = "order.placed", &eventsv1.Event_OrderPlaced{OrderPlaced: &o}
			}
		}
		e.publishSpread(b, tenants, evs)
		e.drain(b, "bench-campaign", e.engine.HandleFacts, n, 1)
		e.clock.Advance(2 * time.Hour)
		b.StartTimer()
		start := time.Now()
		fired, err := e.engine.FireDue(ctx)
		took := time.Since(start)
		b.StopTimer()
		if err != nil || fired != n {
			b.Fatalf("fired %d of %d: %v", fired, n, err)
		}
		b.ReportMetric(float64(n)/took.Seconds(), "timers/s")
		b.ReportMetric(float64(len(tenants)), "tenants")
		b.StartTimer()
	}
}

// BenchmarkAudiencePass measures a scheduled audience over a shop's whole
// customer base: RETAIN_BENCH_CUSTOMERS customers (default 100k) with three
// orders each, a third of them lapsed for more than 90 days; the win-back
// playbook's daily pass reads every customer's facts a chunk at a time,
// evaluates the conditions and enrolls the lapsed (first message to the
// outbox). Next to it, in the same run, the raw rate of reading every
// customer's last order in one statement; report-s is the campaign's
// report over those enrollments afterwards. One op is one pass.
//
//	go test -run '^$' -bench AudiencePass -benchtime 1x .
func BenchmarkAudiencePass(b *testing.B) {
	n := testenv.BenchInt("RETAIN_BENCH_CUSTOMERS", 100_000)
	for b.Loop() {
		b.StopTimer()
		e := newBenchEnv(b)
		ctx := context.Background()
		e.seedOrders(b, n)
		if _, err := e.engine.InstallPlaybook(ctx, "bench", "win-back", "", false); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		var read int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT customer_id, max(placed_at) FROM campaign_orders WHERE tenant = 'bench' GROUP BY customer_id) c`).Scan(&read); err != nil || read != n {
			b.Fatalf("raw read %d of %d customers: %v", read, n, err)
		}
		raw := time.Since(start)
		b.StartTimer()
		start = time.Now()
		ran, err := e.engine.RunAudiences(ctx)
		took := time.Since(start)
		b.StopTimer()
		if err != nil || ran != 1 {
			b.Fatalf("ran %d audiences: %v", ran, err)
		}
		var enrolled int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM enrollments`).Scan(&enrolled); err != nil || enrolled != (n+2)/3 {
			b.Fatalf("%d enrollments, want %d: %v", enrolled, (n+2)/3, err)
		}
		start = time.Now()
		if _, err := e.engine.Report(ctx, "bench", "win-back"); err != nil {
			b.Fatal(err)
		}
		report := time.Since(start)
		b.ReportMetric(float64(n)/took.Seconds(), "customers/s")
		b.ReportMetric(float64(n)/raw.Seconds(), "raw-customers/s")
		b.ReportMetric(took.Seconds(), "s/pass")
		b.ReportMetric(float64(enrolled), "enrollments")
		b.ReportMetric(report.Seconds(), "report-s")
		b.StartTimer()
	}
}

// seedOrders stores three orders for each of n customers, as facts
// already applied; every third customer lapsed (last order 110 days ago),
// the others ordered 10 days ago.
func (e *benchEnv) seedOrders(b *testing.B, n int) {
	b.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	rows := make([][]any, 0, 3*n)
	for i := range n {
		c := fmt.Sprintf("c%07d", i)
		for k := range 3 {
			days := 10 + 50*k
			if i%3 == 0 {
				days += 100
			}
			rows = append(rows, []any{"bench", fmt.Sprintf("%s-o%d", c, k), c, now.Add(-time.Duration(days) * day), int64(4200), "EUR"})
		}
	}
	if _, err := e.pool.CopyFrom(ctx, pgx.Identifier{"campaign_orders"}, []string{"tenant", "order_id", "customer_id", "placed_at", "total_minor", "currency"},
		pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `ANALYZE campaign_orders`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPausedBacklog measures what a paused campaign with many
// running enrollments costs: win-back enrolls the lapsed third of
// RETAIN_BENCH_CUSTOMERS customers (default 300k) and is paused, and their
// 90-day timers all come due, while another campaign with every customer
// running in it (due in a year) stays active. A scheduler tick then has
// nothing to fire (idle-tick-ms, the mean of 5), next to a tick before any
// enrollment existed (raw-idle-tick-ms); pause-s and resume-s time holding
// and releasing the paused campaign's enrollments. One op is the whole
// sequence.
//
//	go test -run '^$' -bench PausedBacklog -benchtime 1x .
func BenchmarkPausedBacklog(b *testing.B) {
	n := testenv.BenchInt("RETAIN_BENCH_CUSTOMERS", 300_000)
	for b.Loop() {
		b.StopTimer()
		e := newBenchEnv(b)
		ctx := context.Background()
		e.seedOrders(b, n)
		tick := func() time.Duration {
			var total time.Duration
			for range 5 {
				start := time.Now()
				fired, err := e.engine.FireDue(ctx)
				total += time.Since(start)
				if err != nil || fired != 0 {
					b.Fatalf("fired %d: %v", fired, err)
				}
			}
			return total / 5
		}
		raw := tick()
		// Another campaign stays active with every customer running in it
		// (due in a year), as in a shop: with running enrollments of an
		// active campaign the scheduler reads the timer index.
		yearly, err := campaignfile.Decode([]byte(`
id: yearly
name: Yearly
trigger: {schedule: {every: 1d}}
conditions: [{days_since_last_order_at_least: 5}]
entry: {once_per_customer: {}}
steps:
  - {id: wait, wait: {duration: 365d}}
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}}
`))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.engine.Create(ctx, "bench", yearly, "", false); err != nil {
			b.Fatal(err)
		}
		if _, err := e.engine.InstallPlaybook(ctx, "bench", "win-back", "", false); err != nil {
			b.Fatal(err)
		}
		if _, err := e.engine.RunAudiences(ctx); err != nil {
			b.Fatal(err)
		}
		setState := func(state campaignv1.CampaignState) time.Duration {
			start := time.Now()
			if _, err := e.engine.SetState(ctx, "bench", "win-back", state); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		b.StartTimer()
		pause := setState(campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED)
		e.clock.Advance(92 * day)
		// What autovacuum does within a minute of a change this size: the
		// pause's old row versions leave the indexes, the statistics see it.
		b.StopTimer()
		if _, err := e.pool.Exec(ctx, `VACUUM ANALYZE enrollments`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		idle := tick()
		resume := setState(campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE)
		b.StopTimer()
		b.ReportMetric(float64(idle.Microseconds())/1000, "idle-tick-ms")
		b.ReportMetric(float64(raw.Microseconds())/1000, "raw-idle-tick-ms")
		b.ReportMetric(pause.Seconds(), "pause-s")
		b.ReportMetric(resume.Seconds(), "resume-s")
		b.StartTimer()
	}
}

// BenchmarkOrderToNotification measures the time from an order.placed
// arriving at the publisher to its notification.requested being on
// RETAIN_NOTIFICATIONS, for a campaign whose first step sends at once,
// through the whole service (facts consumer, enrollment, outbox in the
// same transaction, relay woken by NOTIFY), at RETAIN_BENCH_RATE events/s
// (default 1000) for RETAIN_BENCH_SECONDS (default 10), every write
// fsynced by NATS. The raw figures are the same load through the platform
// alone in the same run: the same publisher, a consumer whose handler only
// enqueues one outbox message per event, and the relay. One op is both
// runs; p50 and p99 are reported.
//
//	go test -run '^$' -bench OrderToNotification -benchtime 1x .
func BenchmarkOrderToNotification(b *testing.B) {
	rate, secs := testenv.BenchInt("RETAIN_BENCH_RATE", 1000), testenv.BenchInt("RETAIN_BENCH_SECONDS", 10)
	for b.Loop() {
		b.StopTimer()
		raw := rawLatency(b, rate, secs)
		s := setup(b)
		ctx := context.Background()
		c, err := campaignfile.Decode([]byte(sendNow("now", "{once_per_key: order_id}", 0)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.client().CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: c}, s.token(b, "bench")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		lat := offerOrders(b, s.pub, "bench", rate, secs, s.clock.Now(), func(m *nats.Msg) string {
			n := &notifierv1.NotificationRequested{}
			if proto.Unmarshal(m.Data, n) != nil {
				return ""
			}
			return n.GetVariables()["order_id"].GetText()
		})
		b.StopTimer()
		b.ReportMetric(percentileMs(lat, 50), "p50-ms")
		b.ReportMetric(percentileMs(lat, 99), "p99-ms")
		b.ReportMetric(percentileMs(raw, 50), "raw-p50-ms")
		b.ReportMetric(percentileMs(raw, 99), "raw-p99-ms")
		b.ReportMetric(float64(rate), "events/s-offered")
		b.StartTimer()
	}
}

// rawLatency runs the order load through the platform alone, on its own
// NATS and database: consumer -> one outbox row per event (the order id)
// -> relay.
func rawLatency(b *testing.B, rate, secs int) []time.Duration {
	e := newBenchEnv(b)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := bus.NewConsumer(e.pub, e.pool, bus.ConsumerConfig{
		Stream: bus.EventsStream, Durable: "bench-raw", FilterSubjects: []string{bus.EventTypeFilter("order.placed")}, BatchSize: 500,
	}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		msgs := make([]bus.Message, len(ds))
		for i, d := range ds {
			ev := &eventsv1.Event{}
			if err := proto.Unmarshal(d.Data, ev); err != nil {
				return err
			}
			msgs[i] = bus.Message{Subject: bus.NotificationSubject("raw", bus.TypeNotificationRequested), ID: "raw/" + d.ID,
				Type: bus.TypeNotificationRequested, Data: []byte(ev.GetOrderPlaced().GetOrderId())}
		}
		return bus.Enqueue(ctx, tx, msgs...)
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	relay, err := bus.NewRelay(e.pub, e.pool, bus.RelayConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = relay.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	return offerOrders(b, e.pub, "raw", rate, secs, e.clock.Now(), func(m *nats.Msg) string { return string(m.Data) })
}

// offerOrders offers rate orders/s of tenant for secs seconds and returns
// each one's time from arrival at the publisher to its notification on
// RETAIN_NOTIFICATIONS (orderID names the order a notification is for).
// Orders arrive every 10 ms; one publisher sends whatever has arrived as
// one atomic batch, as ingest's group commit does.
func offerOrders(b *testing.B, pub *bus.Bus, tenant string, rate, secs int, at time.Time, orderID func(*nats.Msg) string) []time.Duration {
	b.Helper()
	ctx := context.Background()
	var (
		mu      sync.Mutex
		sentAt  = map[string]time.Time{}
		latency []time.Duration
	)
	total := rate * secs
	got := make(chan struct{}, total)
	sub, err := pub.NC.Subscribe(bus.NotificationSubject(tenant, bus.TypeNotificationRequested), func(m *nats.Msg) {
		now := time.Now()
		id := orderID(m)
		mu.Lock()
		if t0, ok := sentAt[id]; ok {
			latency = append(latency, now.Sub(t0))
		}
		mu.Unlock()
		got <- struct{}{}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	queue := make(chan bus.Message, total)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for m := range queue {
			msgs := []bus.Message{m}
			for more := true; more; {
				select {
				case m, ok := <-queue:
					if !ok {
						more = false
					} else {
						msgs = append(msgs, m)
					}
				default:
					more = false
				}
			}
			if _, err := pub.PublishDurable(ctx, msgs); err != nil {
				b.Error(err)
			}
		}
	}()
	per := max(1, rate/100)
	tick := time.NewTicker(10 * time.Millisecond)
	for sent := 0; sent < total; {
		<-tick.C
		now := time.Now()
		for range min(per, total-sent) {
			id := fmt.Sprintf("o%07d", sent)
			ev := orderEv(id, "c"+id, at, 1000)
			ev.TenantId = tenant
			data, _ := proto.Marshal(ev)
			mu.Lock()
			sentAt[id] = now
			mu.Unlock()
			queue <- bus.Message{Subject: bus.EventSubject(tenant, "order.placed"), ID: tenant + "/" + id, Type: "order.placed", Data: data}
			sent++
		}
	}
	close(queue)
	<-pubDone
	tick.Stop()
	deadline := time.After(60 * time.Second)
	for range total {
		select {
		case <-got:
		case <-deadline:
			b.Fatalf("%s: only %d of %d notifications arrived", tenant, len(latency), total)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(latency)
}

// percentileMs is the p-th percentile of ds in milliseconds.
func percentileMs(ds []time.Duration, p int) float64 {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return float64(ds[min(len(ds)-1, len(ds)*p/100)].Microseconds()) / 1000
}
