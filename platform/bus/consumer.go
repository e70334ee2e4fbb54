package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/retainhq/retain/platform/pg"
)

// Consumer defaults.
const (
	DefaultBatchSize      = 250
	DefaultMaxWait        = 2 * time.Second
	DefaultMaxDeliver     = 10
	DefaultAckWait        = 30 * time.Second
	DefaultInboxRetention = 7 * 24 * time.Hour
)

// Backoff is the redelivery delay after a failed batch: Initial doubled per
// delivery, capped at Max, with +-20% jitter.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// DefaultBackoff waits 1s, 2s, 4s, ... up to 5 minutes.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 5 * time.Minute}

// Delay is the wait before delivery numDelivered+1 (numDelivered >= 1).
func (b Backoff) Delay(numDelivered uint64) time.Duration {
	if b.Initial <= 0 {
		return 0
	}
	d := b.Initial
	for i := uint64(1); i < numDelivered && d < b.Max; i++ {
		d *= 2
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return jitter(d)
}

// ConsumerConfig declares a durable pull consumer and how the runner uses it.
type ConsumerConfig struct {
	// Stream to consume, e.g. EventsStream.
	Stream string
	// Durable names the consumer on the server and its rows in bus_inbox
	// and bus_dead_letters ("<service>-<purpose>", e.g. "metrics-facts").
	Durable string
	// FilterSubjects restricts the subjects consumed (empty: all).
	FilterSubjects []string
	// EventTypes, if set, are the only event types (Retain-Event-Type) the
	// handler is given; messages of other types are acknowledged without a
	// transaction. For a consumer of several types of one stream this beats
	// a filter subject per type: nats-server serves a consumer with several
	// filters an order of magnitude slower once the stream holds many
	// subjects (many tenants: 5k instead of 74k messages/s with 500).
	EventTypes []string
	// BatchSize is the most messages handled in one transaction.
	BatchSize int
	// FetchMaxBytes is the most bytes one fetch, so one batch, takes, as
	// NATS counts a message (subject, reply subject, headers and data): a
	// batch ends at BatchSize messages or at FetchMaxBytes, whichever comes
	// first. A message larger than it on its own is still taken, alone, so
	// none is stuck. A consumer holds at most Concurrency batches (0: the
	// bus's Config.FetchMaxBytes, RETAIN_NATS_FETCH_MAX_BYTES).
	FetchMaxBytes int
	// MaxWait is how long an idle worker's pull request lives before it is
	// renewed (it does not delay messages: see fetch).
	MaxWait time.Duration
	// MaxDeliver is how many times the handler may fail on a message before
	// it is dead-lettered.
	MaxDeliver int
	// AckWait is how long the server waits for an ack before redelivering;
	// it also bounds one batch's processing, and Postgres ends a batch
	// transaction that waits longer than that for its next statement.
	AckWait time.Duration
	// MaxAckPending limits unacked messages across workers (0: enough for
	// two batches per worker, at least 1000).
	MaxAckPending int
	// Backoff spaces redeliveries after a failed batch.
	Backoff Backoff
	// Concurrency is the number of workers, each fetching and committing its
	// own batches. Handlers must not assume order across workers, except
	// where they call Sequence.
	Concurrency int
	// Exclusive runs the consumer in one process at a time, whatever the
	// replicas: the one holding its lease in Postgres (bus_leases); the
	// others stand by and take over when it is released (a clean
	// shutdown), when the holder's database session ends (its process
	// died), or when it lapses (LeaseTTL unrenewed). With Sequence this
	// applies the stream in order per key across a deployment.
	Exclusive bool
	// LeaseTTL is how long an Exclusive consumer's lease lasts unrenewed
	// (0: DefaultLeaseTTL); the holder renews it every third of that, and
	// Postgres ends a batch transaction idle longer than that.
	LeaseTTL time.Duration
	// InboxRetention is how long processed ids stay in bus_inbox. Retries
	// older than this are not recognised as duplicates, so keep it well above
	// the stream's dedupe window and any client retry horizon. Negative
	// disables cleanup.
	InboxRetention time.Duration
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Backoff == (Backoff{}) {
		c.Backoff = DefaultBackoff
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = max(1000, 2*c.BatchSize*c.Concurrency)
	}
	if c.InboxRetention == 0 {
		c.InboxRetention = DefaultInboxRetention
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	return c
}

// Validate reports configuration errors; zero values mean defaults.
func (c ConsumerConfig) Validate() error {
	var errs []error
	if c.Stream == "" {
		errs = append(errs, errors.New("bus: consumer Stream is required"))
	}
	if c.Durable == "" {
		errs = append(errs, errors.New("bus: consumer Durable is required"))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("bus: consumer %s: BatchSize must not be negative (got %d)", c.Durable, c.BatchSize))
	}
	if c.FetchMaxBytes != 0 && c.FetchMaxBytes < MinFetchMaxBytes {
		errs = append(errs, fmt.Errorf("bus: consumer %s: FetchMaxBytes must be 0 (the bus's) or at least %d (got %d)", c.Durable, MinFetchMaxBytes, c.FetchMaxBytes))
	}
	if c.MaxWait < 0 || c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("bus: consumer %s: MaxWait and AckWait must not be negative", c.Durable))
	}
	if c.MaxDeliver < 0 {
		errs = append(errs, fmt.Errorf("bus: consumer %s: MaxDeliver must not be negative (got %d)", c.Durable, c.MaxDeliver))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("bus: consumer %s: Concurrency must not be negative (got %d)", c.Durable, c.Concurrency))
	}
	if c.MaxAckPending < 0 {
		errs = append(errs, fmt.Errorf("bus: consumer %s: MaxAckPending must not be negative (got %d)", c.Durable, c.MaxAckPending))
	}
	if c.LeaseTTL < 0 {
		errs = append(errs, fmt.Errorf("bus: consumer %s: LeaseTTL must not be negative (got %s)", c.Durable, c.LeaseTTL))
	}
	if c.Backoff.Initial < 0 || c.Backoff.Max < 0 {
		errs = append(errs, fmt.Errorf("bus: consumer %s: Backoff durations must not be negative", c.Durable))
	}
	return errors.Join(errs...)
}

// Handler applies a batch of new (never seen by this consumer) deliveries
// inside tx, the same transaction that records their ids in the inbox. A
// returned error rolls everything back and the whole batch is redelivered
// with backoff (transient failures). A message that can never succeed
// (cannot decode, fails validation) is marked with d.Reject(reason) instead:
// it is dead-lettered in tx and terminated after commit.
type Handler func(ctx context.Context, tx pgx.Tx, msgs []*Delivery) error

// Delivery is one message handed to a Handler.
type Delivery struct {
	ID           string // Nats-Msg-Id (the event id)
	Type         string // Retain-Event-Type
	Subject      string
	Data         []byte
	Header       nats.Header
	NumDelivered uint64 // 1 on first delivery
	Stream       string
	StreamSeq    uint64
	Timestamp    time.Time // when the stream stored it

	msg    jetstream.Msg // nil when replayed from the dead letters
	reason string
	// rejected is set by Reject; a flag besides reason so that an empty
	// reason still rejects.
	rejected bool
}

// Reject marks d as a poison message: it is dead-lettered with reason in
// the handler's transaction and terminated (never redelivered).
func (d *Delivery) Reject(reason string) {
	d.rejected = true
	if reason == "" {
		reason = "rejected by handler"
	}
	d.reason = reason
}

// Rejected reports whether the handler rejected d, and why.
func (d *Delivery) Rejected() (bool, string) { return d.rejected, d.reason }

func newDelivery(m jetstream.Msg) *Delivery {
	d := &Delivery{
		Subject: m.Subject(),
		Data:    m.Data(),
		Header:  m.Headers(),
		msg:     m,
	}
	if d.Header == nil {
		d.Header = nats.Header{}
	}
	d.ID = d.Header.Get(HeaderMsgID)
	d.Type = d.Header.Get(HeaderEventType)
	if md, err := m.Metadata(); err == nil {
		d.NumDelivered = md.NumDelivered
		d.Stream = md.Stream
		d.StreamSeq = md.Sequence.Stream
		d.Timestamp = md.Timestamp
	}
	if d.ID == "" {
		// Messages from outside Retain may lack an id; the stream position
		// still makes redeliveries of the same stored message harmless.
		d.ID = "seq:" + d.Stream + ":" + strconv.FormatUint(d.StreamSeq, 10)
	}
	return d
}

// Consumer runs a durable pull consumer whose effects land in Postgres
// exactly once per message id: fetch a batch, in one transaction record the
// ids in bus_inbox and apply the new ones, commit, then ack.
type Consumer struct {
	bus     *Bus
	pool    *pgxpool.Pool
	cfg     ConsumerConfig
	handler Handler
	log     *slog.Logger

	attrConsumer attribute.KeyValue
	// nextSubject is where pullNoWait asks for messages: the JetStream API
	// (the bus's jetstream context uses the default prefix) for this
	// consumer.
	nextSubject string
	// caps are the consumer's limits on a request learned (pullNoWait).
	caps        requestCaps
	cleanupMu   sync.Mutex
	lastCleanup time.Time

	// lease is an Exclusive consumer's, which every batch fences on.
	lease *lease
	// batchTx begins a batch's transaction so that the server ends it
	// once it waits longer than batchIdleLimit for its next statement.
	batchTx pgx.TxOptions

	// With several workers, fetches take turns so that batches enter seq
	// in stream order (see Sequence).
	fetchMu sync.Mutex
	seq     sequencer

	backlog      consumerBacklog
	backlogEvery time.Duration
	// probeLeft is set once a backlog probe could not be deleted (logged
	// once: the server deletes each probe itself after probeLife).
	probeLeft atomic.Bool
}

// NewConsumer validates cfg and builds a consumer; Run starts it.
func NewConsumer(b *Bus, pool *pgxpool.Pool, cfg ConsumerConfig, h Handler, log *slog.Logger) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil || pool == nil || h == nil {
		return nil, fmt.Errorf("bus: consumer %s needs a bus, a pool and a handler", cfg.Durable)
	}
	if log == nil {
		log = b.log
	}
	cfg = cfg.withDefaults()
	if cfg.FetchMaxBytes == 0 {
		cfg.FetchMaxBytes = b.cfg.FetchMaxBytes
	}
	log = log.With("consumer", cfg.Durable, "stream", cfg.Stream)
	var l *lease
	if cfg.Exclusive {
		l = newLease(pool, "consumer:"+cfg.Durable, cfg.LeaseTTL, log)
	}
	return &Consumer{
		lease:        l,
		batchTx:      pg.IdleBounded(batchIdleLimit(cfg)),
		bus:          b,
		pool:         pool,
		cfg:          cfg,
		handler:      h,
		log:          log,
		attrConsumer: attribute.String("consumer", cfg.Durable),
		nextSubject:  jetstream.DefaultAPIPrefix + "CONSUMER.MSG.NEXT." + cfg.Stream + "." + cfg.Durable,
		lastCleanup:  time.Now(),
		backlogEvery: backlogRefresh,
	}, nil
}

// batchIdleLimit is how long a batch's transaction may wait for its next
// statement before the server ends it and its session: AckWait, after
// which the batch's messages go to another worker or replica anyway, and
// for an Exclusive consumer no longer than LeaseTTL, the longest a batch
// may keep a successor waiting on the lease row it share-locks.
//
// A process that froze or lost its link mid-batch (a paused VM, a long
// stall, a partition) leaves its transaction open on the server, and with
// it the fence's lock on the lease row and the inbox rows it claimed: a
// standby's takeover, or the redelivered batch on another replica, would
// wait on them until TCP noticed the dead connection, by default hours.
// A live batch never waits that long between statements (its handler's
// Go runs in milliseconds, and the batch's own context ends at AckWait).
func batchIdleLimit(cfg ConsumerConfig) time.Duration {
	if cfg.Exclusive {
		return min(cfg.AckWait, cfg.LeaseTTL)
	}
	return cfg.AckWait
}

// Name is the durable name.
func (c *Consumer) Name() string { return c.cfg.Durable }

// Config returns the effective configuration (defaults applied).
func (c *Consumer) Config() ConsumerConfig { return c.cfg }

// Declare creates or updates the durable consumer on the server.
func (c *Consumer) Declare(ctx context.Context) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Durable:       c.cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxAckPending: c.cfg.MaxAckPending,
		// Unlimited on the server: the runner counts deliveries itself and
		// dead-letters in Postgres. A server-side limit would silently drop
		// a message whose dead-letter write failed on its last delivery.
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	switch len(c.cfg.FilterSubjects) {
	case 0:
	case 1:
		// A single filter goes in FilterSubject so older servers and tools
		// show it the usual way.
		cc.FilterSubject = c.cfg.FilterSubjects[0]
	default:
		cc.FilterSubjects = c.cfg.FilterSubjects
	}
	cons, err := c.bus.JS.CreateOrUpdateConsumer(ctx, c.cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("bus: declare consumer %s on %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	return cons, nil
}

// Run declares the consumer (retrying until NATS answers), then runs
// Concurrency workers until ctx is done (an Exclusive consumer only while
// this process holds its lease, standing by otherwise). On cancellation the workers stop
// fetching, finish the batch in flight (commit and ack) and Run returns nil.
func (c *Consumer) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	delay := 100 * time.Millisecond
	for {
		var err error
		cons, err = c.Declare(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("declare consumer failed, retrying", "retry_in", delay, "error", err)
		if sleepCtx(ctx, jitter(delay)) != nil {
			return nil
		}
		delay = min(delay*2, 5*time.Second)
	}
	// Standbys too: the backlog of a consumer nobody runs matters most.
	defer c.watchBacklog(ctx)()
	if !c.cfg.Exclusive {
		c.runWorkers(ctx, cons)
		return nil
	}
	l := c.lease
	l.hold(ctx, min(time.Second, c.cfg.LeaseTTL/3), func(held bool, err error) {
		switch {
		case held:
			c.log.Info("consumer lease taken", "holder", l.holder)
		case errors.Is(err, errLeaseHeld):
			c.log.Info("consumer standing by: another process holds its lease", "holder", l.currentHolder(ctx), "self", l.holder)
		case errors.Is(err, errLeaseLost):
			c.log.Warn("consumer stopped: its lease may have passed to another process", "holder", l.holder, "error", err)
		default:
			c.log.Warn("consumer lease", "holder", l.holder, "error", err)
		}
	}, func(ctx context.Context) {
		held := metric.WithAttributes(c.attrConsumer)
		c.bus.inst.leaseHeld.Add(ctx, 1, held)
		defer c.bus.inst.leaseHeld.Add(context.WithoutCancel(ctx), -1, held)
		c.runWorkers(ctx, cons)
	})
	return nil
}

// runWorkers runs Concurrency workers until ctx is done.
func (c *Consumer) runWorkers(ctx context.Context, cons jetstream.Consumer) {
	c.log.Info("consumer running", "workers", c.cfg.Concurrency, "batch_size", c.cfg.BatchSize, "fetch_max_bytes", c.cfg.FetchMaxBytes)
	var wg sync.WaitGroup
	for w := range c.cfg.Concurrency {
		wg.Go(func() { c.work(ctx, cons, w) })
	}
	wg.Wait()
	c.log.Info("consumer stopped")
}

func (c *Consumer) work(ctx context.Context, cons jetstream.Consumer, worker int) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		msgs, t, err := c.fetchInTurn(ctx, cons)
		if len(msgs) > 0 {
			c.processBatch(ctx, t, msgs)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("fetch failed", "worker", worker, "retry_in", delay, "error", err)
			if sleepCtx(ctx, jitter(delay)) != nil {
				return
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if worker == 0 {
			c.maybeCleanupInbox(ctx)
		}
	}
}

// fetchInTurn fetches the worker's next batch, less the messages of other
// types than EventTypes (acknowledged at once). With several workers it
// takes the fetch lock and registers the batch with the sequencer under it,
// so batches are registered in the order the server handed them out; the
// ticket ends when processBatch's transaction does.
func (c *Consumer) fetchInTurn(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, *ticket, error) {
	if c.cfg.Concurrency == 1 {
		msgs, err := c.fetch(ctx, cons)
		return c.skipOtherTypes(ctx, msgs), nil, err
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	msgs, err := c.fetch(ctx, cons)
	if msgs = c.skipOtherTypes(ctx, msgs); len(msgs) == 0 {
		return msgs, nil, err
	}
	return msgs, c.seq.enter(), err
}

// fetch returns up to BatchSize messages and FetchMaxBytes bytes without
// adding latency: it takes what is available at once; when nothing is, it
// waits up to MaxWait for the first message and then tops the batch up
// with what arrived meanwhile. A plain Fetch(BatchSize, MaxWait) would hold
// a trickle of messages back for MaxWait at every hop.
//
// A message larger than FetchMaxBytes on its own comes from the wait for
// one message, which has no byte bound: the server answers the no-wait
// request it would not fit with no message (409), and the wait then finds
// it pending at once. It is the batch on its own.
//
// Only the idle wait is canceled by ctx, so shutdown does not wait for it.
// A message the server sends just as that wait is canceled is redelivered
// after AckWait: delayed, never lost.
func (c *Consumer) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	msgs, err := c.pullNoWait(c.cfg.BatchSize, c.cfg.FetchMaxBytes)
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.MaxWait)
	msgs, err = drain(cons.Fetch(1, jetstream.FetchContext(wctx)))
	cancel()
	if len(msgs) == 0 || err != nil || c.cfg.BatchSize == 1 {
		return msgs, err
	}
	left := c.cfg.FetchMaxBytes - wireSize(msgs[0])
	if left <= 0 {
		return msgs, nil
	}
	more, err := c.pullNoWait(c.cfg.BatchSize-1, left)
	return append(msgs, more...), err
}

func drain(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	err = batch.Error()
	if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		// An idle wait that ended empty (or partly filled) is not a failure.
		err = nil
	}
	return msgs, err
}

// batchResult is what one committed transaction decided per delivery.
type batchResult struct {
	handled    []*Delivery // new, applied
	duplicates []*Delivery // id already in the inbox
	rejected   []*Delivery // dead-lettered by the handler's Reject
	exhausted  []*Delivery // dead-lettered for exceeding MaxDeliver
}

// processBatch applies one fetched batch. The batch is in flight: it is
// finished even if ctx (the consumer's run) is canceled meanwhile, each
// attempt bounded by AckWait, after which the server redelivers anyway.
func (c *Consumer) processBatch(runCtx context.Context, t *ticket, msgs []jetstream.Msg) {
	ctx := context.WithoutCancel(runCtx)
	if t != nil {
		ctx = context.WithValue(ctx, ticketKey{}, t)
	}
	start := time.Now()
	ds := make([]*Delivery, len(msgs))
	links := make([]trace.Link, 0, len(msgs))
	for i, m := range msgs {
		ds[i] = newDelivery(m)
		if sc := c.bus.ExtractTrace(ctx, ds[i].Header); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	// One consumer span per batch, linked to every producer span: a batch
	// has many parents, which is what links are for.
	ctx, span := c.bus.tracer.Start(ctx, "process "+c.cfg.Durable,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", c.cfg.Stream),
			attribute.String("messaging.consumer.group.name", c.cfg.Durable),
			attribute.Int("messaging.batch.message_count", len(ds)),
		))
	defer span.End()
	c.bus.inst.batchSize.Record(ctx, int64(len(ds)), metric.WithAttributes(c.attrConsumer))

	res, err := c.attempt(ctx, ds)
	if err != nil {
		// A batch held or run again outlives its AckWait: its messages are
		// kept in progress from its first failure (which may come late in
		// its AckWait) until it is settled, or the server would redeliver
		// them, spending a delivery and running a second copy alongside.
		stop := c.keepInProgress(ds)
		lost := 0 // retries for a connection failure (holdBatch)
		for err != nil && c.holdBatch(runCtx, ctx, ds, err, &lost) {
			res, err = c.attempt(ctx, ds)
		}
		stop()
	}
	if t != nil {
		c.seq.leave(t)
	}
	result := "ok"
	switch {
	case err == nil:
		c.settle(ctx, res)
	case errors.Is(err, errLeaseLost) || errors.Is(context.Cause(runCtx), errLeaseLost):
		result = "error"
		span.RecordError(err)
		span.SetStatus(codes.Error, "lease lost")
		c.handBack(ctx, ds)
	default:
		result = "error"
		span.RecordError(err)
		span.SetStatus(codes.Error, "batch failed")
		c.fail(ctx, ds, err)
	}
	c.bus.inst.batchDuration.Record(ctx, time.Since(start).Seconds(),
		metric.WithAttributes(c.attrConsumer, attribute.String("result", result)))
}

// attempt runs the batch's transaction once, bounded by AckWait.
func (c *Consumer) attempt(ctx context.Context, ds []*Delivery) (batchResult, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.AckWait)
	defer cancel()
	return c.runTx(actx, ds)
}

// unreachable reports whether a failed batch failed because the database
// cannot be reached: it does not answer a ping now. The ping, rather than
// the error's kind, decides: an error that looks like a network failure
// (a handler's own call elsewhere) while the database answers must spend
// a delivery like any failure, or the batch would be retried for ever.
func (c *Consumer) unreachable(ctx context.Context) bool {
	return pg.NotAnswering(ctx, c.pool.Ping)
}

// databaseRetry spaces the checks of whether the database answers again.
const databaseRetry = time.Second

// connectionRetries bounds the retries of a batch whose connection failed
// while the database answers: after a restart or a crash the pool may
// hand out a few more broken connections, while a batch that breaks its
// connection every time (a statement that crashes its backend) must still
// spend its deliveries in the end.
const connectionRetries = 3

// holdBatch decides about a batch whose transaction failed with cause, and
// waits if it is to run again; it reports whether to. lost counts the
// retries of the batch for a connection failure. None of the reasons to
// run a batch again is its messages' fault, so none spends a delivery:
//
//   - The database is unreachable (decision 0018). The batch is held
//     until the database answers a ping, so an outage of any length costs
//     no attempt and dead-letters nothing.
//   - Its connection failed (pg.ErrConnectionFailed) but the database
//     answers: a connection a restart, a crash or a terminated backend
//     left broken (decision 0052). The batch runs again at once, on
//     another connection, up to connectionRetries times.
//   - An exclusive consumer's batch is held until a renewal of the lease
//     that started after it failed has succeeded (decision 0025): after
//     an outage, when the lease may have lapsed meanwhile, and when it was
//     fenced out (the lease is this holder's no longer, or not yet again).
//     A renewal refused ends the wait (runCtx, with errLeaseLost), and the
//     batch is handed back for the new holder.
//
// Its caller keeps the messages in progress meanwhile (keepInProgress).
// Only runCtx ending ends the wait: the lease lost (the batch is handed
// back), or a shutdown (it is naked as any failed batch).
func (c *Consumer) holdBatch(runCtx, ctx context.Context, ds []*Delivery, cause error, lost *int) bool {
	failed := time.Now()
	fenced := c.lease != nil && errors.Is(cause, errLeaseLost)
	if fenced {
		// A renewal at once decides between the two; the wait lasts a
		// round trip, so it is neither logged nor counted as held.
		c.lease.renewedAfter(failed)
	} else {
		if !c.unreachable(ctx) {
			if !errors.Is(cause, pg.ErrConnectionFailed) || *lost >= connectionRetries || runCtx.Err() != nil {
				return false
			}
			*lost++
			c.log.Warn("database connection failed; retrying the batch on another", "messages", len(ds), "error", cause)
			return true
		}
		c.log.Warn("database unreachable; holding the batch until it answers", "messages", len(ds), "error", cause)
		c.bus.inst.heldBatches.Add(runCtx, 1, metric.WithAttributes(c.attrConsumer))
		defer c.bus.inst.heldBatches.Add(context.WithoutCancel(runCtx), -1, metric.WithAttributes(c.attrConsumer))
	}
	for {
		if sleepCtx(runCtx, min(databaseRetry, c.cfg.AckWait/4)) != nil {
			if !fenced && !errors.Is(context.Cause(runCtx), errLeaseLost) {
				c.log.Warn("stopping while the database is unreachable; the batch will be redelivered", "messages", len(ds))
			}
			return false
		}
		if c.unreachable(runCtx) {
			continue
		}
		if c.lease != nil && !c.lease.renewedAfter(failed) {
			continue
		}
		if !fenced {
			c.log.Info("database answers again; retrying the held batch", "messages", len(ds), "held_for", time.Since(failed).Round(time.Millisecond))
		}
		return true
	}
}

// keepInProgress tells the server that the messages of ds are in progress
// (no redelivery, no delivery counted) at once and then every half
// AckWait, until the stop it returns is called; stop returns once no more
// are sent, so that none follows the batch's ack or nak.
func (c *Consumer) keepInProgress(ds []*Delivery) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(c.cfg.AckWait / 2)
		defer t.Stop()
		for {
			for _, d := range ds {
				if d.msg != nil {
					_ = d.msg.InProgress() // a lost one only means a redelivery, which the inbox absorbs
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// handBack returns a batch to the server at once, unapplied, when this
// process's lease may have passed to another: the new holder is to apply
// it, so there is no backoff, and losing the lease is not the messages'
// failure, so none is dead-lettered here (JetStream counts the next
// delivery all the same, as on any handover).
func (c *Consumer) handBack(ctx context.Context, ds []*Delivery) {
	c.log.Info("lease lost; batch handed back for its new holder", "messages", len(ds))
	for _, d := range ds {
		if d.msg == nil {
			continue
		}
		if err := d.msg.Nak(); err != nil {
			c.log.Debug("nak failed; the message will be redelivered after AckWait", "msg_id", d.ID, "error", err)
		}
	}
	c.count(ctx, "retried", len(ds))
}

// skipOtherTypes acknowledges the messages whose event type is not one of
// EventTypes and returns the others. Skipping has no effect to lose, so
// neither the inbox nor a transaction is involved; a message without a
// type header goes to the handler, which decides.
func (c *Consumer) skipOtherTypes(ctx context.Context, msgs []jetstream.Msg) []jetstream.Msg {
	if len(c.cfg.EventTypes) == 0 {
		return msgs
	}
	keep := msgs[:0:0]
	for _, m := range msgs {
		typ := m.Headers().Get(HeaderEventType)
		if typ == "" || slices.Contains(c.cfg.EventTypes, typ) {
			keep = append(keep, m)
			continue
		}
		if err := m.Ack(); err != nil {
			// Redelivered later and skipped again.
			c.log.Warn("ack of a skipped message failed", "subject", m.Subject(), "error", err)
		}
	}
	c.count(ctx, "skipped", len(msgs)-len(keep))
	return keep
}

// inBatchTx runs fn in a transaction of the batch path: bounded as a
// batch's (batchTx), and for an exclusive consumer fenced by its lease
// first, so that nothing a replaced holder writes commits.
func (c *Consumer) inBatchTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pg.InTxWith(ctx, c.pool, c.batchTx, func(tx pgx.Tx) error {
		if c.lease != nil {
			if err := c.lease.fence(ctx, tx); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// runTx is the one transaction per batch: inbox, handler, dead letters.
func (c *Consumer) runTx(ctx context.Context, ds []*Delivery) (batchResult, error) {
	var res batchResult
	ctx, hooks := withCommitHooks(ctx)
	err := c.inBatchTx(ctx, func(tx pgx.Tx) error {
		res = batchResult{}
		hooks.reset()
		for _, d := range ds {
			d.rejected, d.reason = false, ""
		}
		fresh, dups, err := c.claim(ctx, tx, ds)
		if err != nil {
			return err
		}
		res.duplicates = dups
		// A delivery past MaxDeliver only happens when its last attempt
		// could not be settled: dead-lettering it failed, or the process
		// stopped while the database was away (its batch held, then
		// handed back). The first such delivery runs once more, as a last
		// attempt (alone if it fails again, then dead-lettered), so an
		// outage at the wrong moment costs a valid message nothing; any
		// later one is dead-lettered without running the handler, so a
		// message that kills the process cannot run for ever.
		var run []*Delivery
		for _, d := range fresh {
			if d.NumDelivered > uint64(c.cfg.MaxDeliver)+1 {
				d.reason = fmt.Sprintf("failed %d deliveries (MaxDeliver %d)", d.NumDelivered-1, c.cfg.MaxDeliver)
				res.exhausted = append(res.exhausted, d)
			} else {
				run = append(run, d)
			}
		}
		if len(run) > 0 {
			if err := c.callHandler(ctx, tx, run); err != nil {
				return err
			}
		}
		for _, d := range run {
			if d.rejected {
				res.rejected = append(res.rejected, d)
			} else {
				res.handled = append(res.handled, d)
			}
		}
		dead := append(append([]*Delivery(nil), res.rejected...), res.exhausted...)
		if len(dead) == 0 {
			return nil
		}
		return c.deadLetter(ctx, tx, dead)
	})
	if err != nil {
		return batchResult{}, fmt.Errorf("bus: consumer %s: batch of %d: %w", c.cfg.Durable, len(ds), err)
	}
	hooks.run()
	return res, nil
}

// callHandler runs the handler, turning a panic into an error: one bad
// message must cost a redelivery (and in the end a dead letter), not the
// process and every other consumer in it.
func (c *Consumer) callHandler(ctx context.Context, tx pgx.Tx, ds []*Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	if err := c.handler(ctx, tx, ds); err != nil {
		return fmt.Errorf("handler: %w", err)
	}
	return nil
}

// claim records the ids in the inbox with one statement and splits the
// deliveries into fresh ones (first time this consumer sees the id) and
// duplicates (seen before, or repeated in this batch).
func (c *Consumer) claim(ctx context.Context, tx pgx.Tx, ds []*Delivery) (fresh, dups []*Delivery, err error) {
	return ClaimInbox(ctx, tx, c.cfg.Durable, ds)
}

// ReleaseInbox removes ids from consumer's inbox in tx: messages given up
// on (dead-lettered, rejected) are not applied, so a replay or a
// re-publish may apply them later.
func ReleaseInbox(ctx context.Context, tx pgx.Tx, consumer string, ids []string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM bus_inbox WHERE consumer = $1 AND msg_id = ANY($2::text[])`, consumer, ids); err != nil {
		return fmt.Errorf("release inbox ids: %w", err)
	}
	return nil
}

// ReleaseInboxPrefix removes from consumer's inbox in tx every id that
// starts with prefix (a tenant's, "<tenant>/", when its projection is
// reset). The rows are deleted by ctid, as CleanupInbox deletes old ones:
// a TID scan sorts the ctids, so both lock the rows in physical order.
// Deleted through the primary key they were locked in key order, and a
// cleanup meeting the same rows waited for the reset in a cycle (SQLSTATE
// 40P01). The two must keep deleting the same way.
func ReleaseInboxPrefix(ctx context.Context, tx pgx.Tx, consumer, prefix string) error {
	if _, err := tx.Exec(ctx, `
		DELETE FROM bus_inbox WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM bus_inbox WHERE consumer = $1 AND starts_with(msg_id, $2)))`, consumer, prefix); err != nil {
		return fmt.Errorf("release inbox ids of %s starting %q: %w", consumer, prefix, err)
	}
	return nil
}

// ClaimInbox records the ids of ds in consumer's inbox in tx and splits ds
// into the fresh deliveries (first seen now, once each) and the duplicates
// (seen before, or repeated in ds). It is the runner's claim, for code that
// applies messages on a consumer's behalf (a rebuild's replay).
func ClaimInbox(ctx context.Context, tx pgx.Tx, consumer string, ds []*Delivery) (fresh, dups []*Delivery, err error) {
	ids := make([]string, 0, len(ds))
	first := make(map[string]*Delivery, len(ds))
	for _, d := range ds {
		if _, ok := first[d.ID]; ok {
			continue
		}
		first[d.ID] = d
		ids = append(ids, d.ID)
	}
	// In byte order, not the batch's: the insert locks each id it meets,
	// and two claims of the same ids (a message back from a nak, an ack
	// wait or a dead-letter replay, behind later messages, while another
	// batch or a rebuild still holds it) taken in different orders wait
	// for each other in a cycle. Nothing reads the RETURNING order.
	slices.Sort(ids)
	rows, err := tx.Query(ctx, `
		INSERT INTO bus_inbox (consumer, msg_id)
		SELECT $1, unnest($2::text[])
		ON CONFLICT DO NOTHING
		RETURNING msg_id`, consumer, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("record inbox: %w", err)
	}
	isNew, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("record inbox: %w", err)
	}
	newSet := make(map[string]struct{}, len(isNew))
	for _, id := range isNew {
		newSet[id] = struct{}{}
	}
	for _, d := range ds {
		if _, ok := newSet[d.ID]; ok && first[d.ID] == d {
			fresh = append(fresh, d)
		} else {
			dups = append(dups, d)
		}
	}
	return fresh, dups, nil
}

// deadLetter stores dead deliveries and removes their ids from the inbox,
// so a replay (or a corrected re-publish) is not mistaken for a duplicate.
func (c *Consumer) deadLetter(ctx context.Context, tx pgx.Tx, dead []*Delivery) error {
	var (
		ids      = make([]string, len(dead))
		subjects = make([]string, len(dead))
		headers  = make([]map[string][]string, len(dead))
		data     = make([][]byte, len(dead))
		reasons  = make([]string, len(dead))
		counts   = make([]int32, len(dead))
	)
	for i, d := range dead {
		ids[i], subjects[i], reasons[i] = d.ID, d.Subject, d.reason
		headers[i] = d.Header
		data[i] = d.Data
		if data[i] == nil {
			data[i] = []byte{}
		}
		counts[i] = int32(min(d.NumDelivered, 1<<31-1))
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO bus_dead_letters (consumer, msg_id, subject, headers, data, reason, num_delivered)
		SELECT $1, u.msg_id, u.subject, u.headers, u.data, u.reason, u.num_delivered
		FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::bytea[], $6::text[], $7::int[])
		     AS u(msg_id, subject, headers, data, reason, num_delivered)
		ON CONFLICT (consumer, msg_id) DO UPDATE SET
			subject = excluded.subject, headers = excluded.headers, data = excluded.data,
			reason = excluded.reason, num_delivered = excluded.num_delivered,
			failed_at = now(), replayed_at = NULL`,
		c.cfg.Durable, ids, subjects, headers, data, reasons, counts); err != nil {
		return fmt.Errorf("record dead letters: %w", err)
	}
	if err := ReleaseInbox(ctx, tx, c.cfg.Durable, ids); err != nil {
		return fmt.Errorf("release dead-lettered ids: %w", err)
	}
	return nil
}

// settle acks what was committed and terminates what was dead-lettered. An
// ack lost here only causes a redelivery that the inbox turns into an ack.
func (c *Consumer) settle(ctx context.Context, res batchResult) {
	for _, d := range res.handled {
		c.ack(d)
	}
	for _, d := range res.duplicates {
		c.ack(d)
	}
	for _, d := range res.rejected {
		c.term(d)
		c.log.Warn("message rejected, dead-lettered", "msg_id", d.ID, "type", d.Type, "reason", d.reason)
	}
	for _, d := range res.exhausted {
		c.term(d)
		c.log.Warn("message exceeded MaxDeliver, dead-lettered", "msg_id", d.ID, "type", d.Type, "deliveries", d.NumDelivered)
	}
	c.count(ctx, "handled", len(res.handled))
	c.count(ctx, "duplicate", len(res.duplicates))
	c.count(ctx, "rejected", len(res.rejected))
	c.count(ctx, "dead_lettered", len(res.exhausted))
	if n := len(res.rejected); n > 0 {
		c.bus.inst.deadLetters.Add(ctx, int64(n), metric.WithAttributes(c.attrConsumer, attribute.String("cause", "rejected")))
	}
	if n := len(res.exhausted); n > 0 {
		c.bus.inst.deadLetters.Add(ctx, int64(n), metric.WithAttributes(c.attrConsumer, attribute.String("cause", "max_deliver")))
	}
}

// fail handles a batch whose transaction rolled back. Messages with
// deliveries left are naked with backoff. A message on its last attempt is
// first retried alone, so that a poison batch-mate cannot use up its
// attempts; only if it fails on its own is it dead-lettered.
func (c *Consumer) fail(ctx context.Context, ds []*Delivery, cause error) {
	c.log.Warn("batch failed, redelivering with backoff", "messages", len(ds), "error", cause)
	var last []*Delivery
	for _, d := range ds {
		if d.NumDelivered >= uint64(c.cfg.MaxDeliver) {
			last = append(last, d)
			continue
		}
		c.nak(d)
	}
	c.count(ctx, "retried", len(ds)-len(last))
	for _, d := range last {
		err := cause
		if len(ds) > 1 {
			res, rerr := c.runTx(ctx, []*Delivery{d})
			if rerr == nil {
				c.settle(ctx, res)
				continue
			}
			err = rerr
		}
		d.reason = fmt.Sprintf("failed %d deliveries (MaxDeliver %d), last error: %v", d.NumDelivered, c.cfg.MaxDeliver, err)
		// Fenced like a batch: once another process holds the stream the
		// message is its to apply or dead-letter (the inbox id this would
		// release may be the successor's).
		if derr := c.inBatchTx(ctx, func(tx pgx.Tx) error {
			return c.deadLetter(ctx, tx, []*Delivery{d})
		}); errors.Is(derr, errLeaseLost) {
			c.nak(d)
			c.count(ctx, "retried", 1)
			continue
		} else if derr != nil {
			// It comes back past MaxDeliver and is dead-lettered then.
			c.log.Error("dead-letter write failed, redelivering", "msg_id", d.ID, "error", derr)
			c.nak(d)
			c.count(ctx, "retried", 1)
			continue
		}
		c.term(d)
		c.count(ctx, "dead_lettered", 1)
		c.bus.inst.deadLetters.Add(ctx, 1, metric.WithAttributes(c.attrConsumer, attribute.String("cause", "max_deliver")))
		c.log.Warn("message exceeded MaxDeliver, dead-lettered", "msg_id", d.ID, "type", d.Type, "deliveries", d.NumDelivered, "error", err)
	}
}

func (c *Consumer) count(ctx context.Context, outcome string, n int) {
	if n > 0 {
		c.bus.inst.consumed.Add(ctx, int64(n), metric.WithAttributes(c.attrConsumer, attribute.String("outcome", outcome)))
	}
}

func (c *Consumer) ack(d *Delivery) {
	if d.msg == nil {
		return
	}
	if err := d.msg.Ack(); err != nil {
		c.log.Debug("ack failed; the message will be redelivered and recognised by the inbox", "msg_id", d.ID, "error", err)
	}
}

func (c *Consumer) nak(d *Delivery) {
	if d.msg == nil {
		return
	}
	if err := d.msg.NakWithDelay(c.cfg.Backoff.Delay(d.NumDelivered)); err != nil {
		c.log.Debug("nak failed; the message will be redelivered after AckWait", "msg_id", d.ID, "error", err)
	}
}

func (c *Consumer) term(d *Delivery) {
	if d.msg == nil {
		return
	}
	if err := d.msg.TermWithReason(d.reason); err != nil {
		c.log.Debug("term failed; a redelivery will be dead-lettered again", "msg_id", d.ID, "error", err)
	}
}

// inboxCleanupEvery spaces inbox retention passes.
const inboxCleanupEvery = time.Hour

// maybeCleanupInbox deletes inbox ids older than InboxRetention, in small
// batches so it never holds long locks next to the hot insert path.
func (c *Consumer) maybeCleanupInbox(ctx context.Context) {
	if c.cfg.InboxRetention < 0 {
		return
	}
	c.cleanupMu.Lock()
	due := time.Since(c.lastCleanup) >= inboxCleanupEvery
	if due {
		c.lastCleanup = time.Now()
	}
	c.cleanupMu.Unlock()
	if !due {
		return
	}
	if n, err := c.CleanupInbox(ctx); err != nil {
		c.log.Warn("inbox cleanup failed", "error", err)
	} else if n > 0 {
		c.log.Info("inbox cleanup", "deleted", n)
	}
}

// CleanupInbox deletes this consumer's inbox ids older than InboxRetention
// and returns how many it deleted.
//
// It deletes by ctid; ReleaseInboxPrefix must delete the same way.
func (c *Consumer) CleanupInbox(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := c.pool.Exec(ctx, `
			DELETE FROM bus_inbox WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM bus_inbox
				WHERE consumer = $1 AND received_at < now() - $2::interval
				LIMIT 5000))`, c.cfg.Durable, c.cfg.InboxRetention)
		if err != nil {
			return total, fmt.Errorf("bus: consumer %s: clean inbox: %w", c.cfg.Durable, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}
