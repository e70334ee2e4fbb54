package bus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// backlogRefresh spaces the reads behind the backlog gauges: a JetStream
// consumer info request, a count of dead letters, a look at the outbox.
// A scrape reads what the last refresh found rather than asking itself,
// so scrapes (and every replica's) cost nothing more, and a slow or
// unreachable server never stalls /metrics.
const backlogRefresh = 15 * time.Second

// backlogRead bounds one refresh's reads.
const backlogRead = 5 * time.Second

// gaugeValue is the last value a refresh read; unknown when the read
// failed, and then not observed: a gap says "unknown", where the last
// value would keep an alert quiet on stale data.
type gaugeValue[T int64 | float64] struct {
	mu    sync.Mutex
	v     T
	known bool
}

func (g *gaugeValue[T]) set(v T, err error) {
	g.mu.Lock()
	g.v, g.known = v, err == nil
	g.mu.Unlock()
}

func (g *gaugeValue[T]) get() (T, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.v, g.known
}

// watch refreshes every while ctx lives, observing the gauges insts from
// the values it sets in observe; stop ends it and unregisters observe.
func watch(ctx context.Context, m metric.Meter, every time.Duration, refresh func(context.Context), observe metric.Callback, insts ...metric.Observable) (stop func(), err error) {
	reg, err := m.RegisterCallback(observe, insts...)
	if err != nil {
		return func() {}, fmt.Errorf("bus: register backlog gauges: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			rctx, rcancel := context.WithTimeout(ctx, backlogRead)
			refresh(rctx)
			rcancel()
			if sleepCtx(ctx, every) != nil {
				return
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		_ = reg.Unregister()
	}, nil
}

// consumerBacklog is what a consumer has yet to apply, and what it gave up
// on: the gauges retain.bus.consumer.pending, .ack_pending and
// .dead_letters.pending.
type consumerBacklog struct {
	pending, ackPending, deadLetters gaugeValue[int64]
}

// watchBacklog keeps c's backlog gauges while ctx lives. Every replica
// reports the same figures (they are the server's and the database's, not
// the process's): aggregate them with max, not sum.
func (c *Consumer) watchBacklog(ctx context.Context) (stop func()) {
	in := c.bus.inst
	attrs := metric.WithAttributes(c.attrConsumer, attribute.String("stream", c.cfg.Stream))
	stop, err := watch(ctx, in.meter, c.backlogEvery,
		func(ctx context.Context) {
			if _, err := c.info(ctx); err != nil {
				c.log.Debug("backlog: consumer info", "error", err)
			}
			n, err := c.PendingDeadLetters(ctx, "")
			c.backlog.deadLetters.set(n, err)
			if err != nil {
				c.log.Debug("backlog: dead letters", "error", err)
			}
		},
		func(_ context.Context, o metric.Observer) error {
			if v, ok := c.backlog.pending.get(); ok {
				o.ObserveInt64(in.consumerPending, v, attrs)
			}
			if v, ok := c.backlog.ackPending.get(); ok {
				o.ObserveInt64(in.consumerAckPending, v, attrs)
			}
			if v, ok := c.backlog.deadLetters.get(); ok {
				o.ObserveInt64(in.consumerDeadLetters, v, attrs)
			}
			return nil
		},
		in.consumerPending, in.consumerAckPending, in.consumerDeadLetters)
	if err != nil {
		c.log.Warn("backlog gauges unavailable", "error", err)
	}
	return stop
}

// info reads the consumer's state on the server, and keeps its counts for
// the backlog gauges (CaughtUp's reads refresh them too).
func (c *Consumer) info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	info, err := c.fetchInfo(ctx)
	var pending, ackPending int64
	if err == nil {
		pending, ackPending = int64(info.NumPending), int64(info.NumAckPending)
	}
	c.backlog.pending.set(pending, err)
	c.backlog.ackPending.set(ackPending, err)
	return info, err
}

func (c *Consumer) fetchInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	cons, err := c.bus.JS.Consumer(ctx, c.cfg.Stream, c.cfg.Durable)
	if err != nil {
		return nil, fmt.Errorf("bus: consumer %s: %w", c.cfg.Durable, err)
	}
	// Consumer fetched the info already: no second request.
	return cons.CachedInfo(), nil
}

// outboxBacklog is what the outbox has yet to publish: the gauges
// retain.bus.outbox.unpublished and .oldest_age.
type outboxBacklog struct {
	unpublished gaugeValue[int64]
	oldestAge   gaugeValue[float64]
}

// watchBacklog keeps the outbox's backlog gauges while ctx lives. They
// show a relay that is stuck (NATS refusing its publishes, a row it cannot
// publish holding back its batch) as rows piling up and growing old,
// where retain.bus.outbox.lag, recorded per published row, shows nothing.
func (r *Relay) watchBacklog(ctx context.Context) (stop func()) {
	in := r.bus.inst
	attrs := metric.WithAttributes(attribute.String("database", r.pool.Config().ConnConfig.Database))
	stop, err := watch(ctx, in.meter, r.backlogEvery,
		func(ctx context.Context) {
			n, age, err := r.Backlog(ctx)
			r.backlog.unpublished.set(n, err)
			r.backlog.oldestAge.set(age.Seconds(), err)
			if err != nil {
				r.log.Debug("backlog: outbox", "error", err)
			}
		},
		func(_ context.Context, o metric.Observer) error {
			if v, ok := r.backlog.unpublished.get(); ok {
				o.ObserveInt64(in.outboxUnpublished, v, attrs)
			}
			if v, ok := r.backlog.oldestAge.get(); ok {
				o.ObserveFloat64(in.outboxOldestAge, v, attrs)
			}
			return nil
		},
		in.outboxUnpublished, in.outboxOldestAge)
	if err != nil {
		r.log.Warn("backlog gauges unavailable", "error", err)
	}
	return stop
}
