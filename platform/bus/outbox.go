package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/propagation"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/telemetry"
)

// OutboxChannel is the LISTEN/NOTIFY channel Enqueue signals on commit.
const OutboxChannel = "retain_bus_outbox"

// Relay defaults.
const (
	DefaultRelayBatchSize  = 500
	DefaultPollInterval    = time.Second
	DefaultOutboxRetention = 24 * time.Hour
)

// outboxCleanupEvery spaces deletions of old published rows.
const outboxCleanupEvery = 10 * time.Minute

// Enqueue writes msgs to bus_outbox inside tx, the transaction that makes
// the state change they announce, so they are published if and only if it
// commits. A message without ID gets a ULID; an ID already enqueued is
// ignored (enqueueing the same event twice publishes it once). The trace
// context of ctx is stored with each message so consumers link to it.
func Enqueue(ctx context.Context, tx pgx.Tx, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var (
		ids      = make([]string, len(msgs))
		subjects = make([]string, len(msgs))
		types    = make([]string, len(msgs))
		headers  = make([]map[string][]string, len(msgs))
		data     = make([][]byte, len(msgs))
		prop     = propagation.TraceContext{}
	)
	for i, m := range msgs {
		if m.Subject == "" {
			return fmt.Errorf("bus: enqueue message %d (%q): no subject", i, m.ID)
		}
		if m.ID == "" {
			m.ID = ulid.Make().String()
		}
		h := make(nats.Header, len(m.Header)+2)
		for k, v := range m.Header {
			h[k] = append([]string(nil), v...)
		}
		if headerValue(h, HeaderTraceparent) == "" {
			prop.Inject(ctx, natsHeaderCarrier(h))
		}
		ids[i], subjects[i], types[i], headers[i], data[i] = m.ID, m.Subject, m.Type, h, m.Data
		if data[i] == nil {
			data[i] = []byte{}
		}
	}
	// One round trip: the insert and the notification, which Postgres
	// delivers only when (and if) tx commits.
	batch := &pgx.Batch{}
	batch.Queue(`
		INSERT INTO bus_outbox (msg_id, subject, type, headers, data)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[])
		ON CONFLICT (msg_id) DO NOTHING`, ids, subjects, types, headers, data)
	batch.Queue(`SELECT pg_notify($1, '')`, OutboxChannel)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("bus: enqueue %d outbox messages: %w", len(msgs), err)
	}
	return nil
}

// RelayConfig configures the outbox relay.
type RelayConfig struct {
	// BatchSize is the most rows published per transaction (as atomic
	// batches of up to the bus MaxBatchSize).
	BatchSize int
	// PollInterval is the fallback wake-up when no notification arrives
	// (notifications are lost while the listening connection is down).
	PollInterval time.Duration
	// Retention is how long published rows are kept (for inspection)
	// before deletion. Negative keeps them forever.
	Retention time.Duration
}

func (c RelayConfig) withDefaults() RelayConfig {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultRelayBatchSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Retention == 0 {
		c.Retention = DefaultOutboxRetention
	}
	return c
}

// Validate reports configuration errors; zero values mean defaults.
func (c RelayConfig) Validate() error {
	var errs []error
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("bus: relay BatchSize must not be negative (got %d)", c.BatchSize))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("bus: relay PollInterval must not be negative (got %s)", c.PollInterval))
	}
	return errors.Join(errs...)
}

// Relay publishes committed outbox rows. Several replicas may run at once:
// each claims rows with FOR UPDATE SKIP LOCKED, so no row is published by
// two relays at the same time, and the msg id makes a re-publish after a
// crash between publish and commit a duplicate the stream drops.
//
// It never keeps an "id > last seen" cursor: ids are assigned at insert but
// rows become visible at commit, in a different order, so a cursor would skip
// a row whose transaction commits after a later id was relayed. Each pass
// instead takes the oldest unpublished rows, whatever their ids.
type Relay struct {
	bus  *Bus
	pool *pgxpool.Pool
	cfg  RelayConfig
	log  *slog.Logger

	mu          sync.Mutex
	lastCleanup time.Time
	// passes and listens log a database outage when it starts and when
	// it ends, not once a retry.
	passes, listens *pg.OutageLog
	// publishes paces the log of passes NATS does not take (down, no
	// storage left): at its start, once a publishLogEvery, and at its end.
	publishes telemetry.FailureRun

	backlog      outboxBacklog
	backlogEvery time.Duration
}

// NewRelay builds a relay; Run starts it.
func NewRelay(b *Bus, pool *pgxpool.Pool, cfg RelayConfig, log *slog.Logger) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil || pool == nil {
		return nil, errors.New("bus: relay needs a bus and a pool")
	}
	if log == nil {
		log = b.log
	}
	log = log.With("component", "outbox-relay")
	return &Relay{
		bus: b, pool: pool, cfg: cfg.withDefaults(), log: log,
		passes:       pg.NewOutageLog(log, "outbox relay", pool.Ping),
		listens:      pg.NewOutageLog(log, "outbox listen", pool.Ping),
		publishes:    telemetry.FailureRun{Every: publishLogEvery},
		backlogEvery: backlogRefresh,
	}, nil
}

// publishLogEvery is how often a relay that NATS keeps refusing says so
// again.
const publishLogEvery = time.Minute

// Run relays until ctx is done: immediately when notified of a commit, and
// every PollInterval regardless. It returns nil on cancellation after the
// pass in flight has finished.
func (r *Relay) Run(ctx context.Context) error {
	defer r.watchBacklog(ctx)()
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx, wake) })
	defer wg.Wait()

	delay := 100 * time.Millisecond
	for {
		// Finish a pass once started, so rows are not left locked by a
		// canceled transaction and published again by another replica.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		n, err := r.RelayOnce(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		r.report(ctx, n, err, delay)
		if err != nil {
			if sleepCtx(ctx, jitter(delay)) != nil {
				return nil
			}
			delay = min(delay*2, 10*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if n >= r.cfg.BatchSize {
			continue // more are waiting
		}
		r.maybeCleanup(ctx)
		t := time.NewTimer(r.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// report logs the outcome of a pass. A publish NATS refuses for a while
// (Transient: not connected, no storage left) fails every pass alike for as
// long as it lasts, so it is logged with what to check when it starts, then
// once a publishLogEvery with the count, and once when a pass publishes
// rows again; the database's failures go to passes. A pass that claims no
// row (n == 0) does not end it: another replica may hold the rows (SKIP
// LOCKED) while its own publish waits out, NATS still down.
func (r *Relay) report(ctx context.Context, n int, err error, delay time.Duration) {
	now := time.Now()
	if err != nil && Transient(err) {
		r.passes.Answered() // the rows were claimed: the database answers
		l := r.publishes.Failed(now)
		if !l.Log {
			return
		}
		attrs := []any{"hint", r.publishHint(err), "retry_in", delay}
		if !l.First {
			attrs = append(attrs, "failed_passes", l.Failures, "failing_for", l.FailingFor.Round(time.Second))
		}
		r.log.Warn("outbox relay cannot publish; rows wait in the outbox, logged again in a minute or when they are published",
			append(attrs, "error", err)...)
		return
	}
	if err == nil && n > 0 {
		if l := r.publishes.Ended(now); l.Log {
			r.log.Info("outbox relay publishes again", "failed_passes", l.Failures, "failing_for", l.FailingFor.Round(time.Millisecond))
		}
	}
	r.passes.Pass(ctx, err, "outbox relay pass failed, retrying", "retry_in", delay)
}

// publishHint says what to check when NATS refuses the relay's publishes.
func (r *Relay) publishHint(err error) string {
	if errors.Is(err, ErrStorageFull) {
		return "JetStream has no room for the stream's messages: check the stream's limits (max bytes, max messages) " +
			"and the JetStream storage of the server and account, or free space on its volume"
	}
	return "check that NATS at " + redactURL(r.bus.cfg.URL) + " (RETAIN_NATS_URL) is up and reachable from this service"
}

// outboxRow is one claimed row.
type outboxRow struct {
	id  int64
	msg Message
}

// RelayOnce publishes up to BatchSize unpublished rows in one transaction
// and returns how many it relayed. Rows locked by another relay are skipped,
// not waited for.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	var n int
	err := pg.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, msg_id, subject, type, headers, data
			FROM bus_outbox
			WHERE published_at IS NULL
			ORDER BY id
			LIMIT $1
			FOR UPDATE SKIP LOCKED`, r.cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("claim outbox rows: %w", err)
		}
		claimed, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxRow, error) {
			var (
				o outboxRow
				h map[string][]string
			)
			err := row.Scan(&o.id, &o.msg.ID, &o.msg.Subject, &o.msg.Type, &h, &o.msg.Data)
			o.msg.Header = nats.Header(h)
			return o, err
		})
		if err != nil {
			return fmt.Errorf("claim outbox rows: %w", err)
		}
		if len(claimed) == 0 {
			return nil
		}
		msgs := make([]Message, len(claimed))
		ids := make([]int64, len(claimed))
		for i, o := range claimed {
			msgs[i], ids[i] = o.msg, o.id
		}
		outcomes, err := r.bus.PublishDurable(ctx, msgs)
		if err != nil {
			return fmt.Errorf("publish %d outbox rows: %w", len(msgs), err)
		}
		// Lag is computed by Postgres, on the clock that set created_at.
		rows, err = tx.Query(ctx, `
			UPDATE bus_outbox SET published_at = clock_timestamp()
			WHERE id = ANY($1::bigint[])
			RETURNING extract(epoch FROM clock_timestamp() - created_at)::float8`, ids)
		if err != nil {
			return fmt.Errorf("mark %d outbox rows published: %w", len(ids), err)
		}
		lags, err := pgx.CollectRows(rows, pgx.RowTo[float64])
		if err != nil {
			return fmt.Errorf("mark %d outbox rows published: %w", len(ids), err)
		}
		for _, lag := range lags {
			r.bus.inst.outboxLag.Record(ctx, lag)
		}
		for i := range claimed {
			r.bus.inst.outboxPublished.Add(ctx, 1, outcomeAttr(outcomes[i].Outcome))
		}
		n = len(claimed)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bus: outbox relay: %w", err)
	}
	return n, nil
}

// listen holds one connection LISTENing on OutboxChannel and signals wake on
// each notification. It reconnects with backoff; the poll covers the gaps.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, signal)
		if ctx.Err() != nil {
			return
		}
		r.listens.Pass(ctx, err, "outbox listen connection lost, reconnecting", "retry_in", delay)
		if sleepCtx(ctx, jitter(delay)) != nil {
			return
		}
		delay = min(delay*2, 10*time.Second)
	}
}

func (r *Relay) listenOnce(ctx context.Context, signal func()) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listen connection: %w", err)
	}
	// Take the connection out of the pool: a connection left LISTENing (or
	// broken by a canceled wait) must not be handed to anyone else.
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{OutboxChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen %s: %w", OutboxChannel, err)
	}
	r.listens.Answered()
	// Rows may have committed while we were not listening.
	signal()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		signal()
	}
}

func (r *Relay) maybeCleanup(ctx context.Context) {
	if r.cfg.Retention < 0 {
		return
	}
	r.mu.Lock()
	due := time.Since(r.lastCleanup) >= outboxCleanupEvery
	if due {
		r.lastCleanup = time.Now()
	}
	r.mu.Unlock()
	if !due {
		return
	}
	if n, err := r.Cleanup(ctx); err != nil {
		r.log.Warn("outbox cleanup failed", "error", err)
	} else if n > 0 {
		r.log.Info("outbox cleanup", "deleted", n)
	}
}

// Cleanup deletes rows published more than Retention ago, in small batches,
// and returns how many it deleted.
func (r *Relay) Cleanup(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := r.pool.Exec(ctx, `
			DELETE FROM bus_outbox WHERE id = ANY (ARRAY(
				SELECT id FROM bus_outbox
				WHERE published_at IS NOT NULL AND published_at < now() - $1::interval
				LIMIT 5000))`, r.cfg.Retention)
		if err != nil {
			return total, fmt.Errorf("bus: outbox cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

// backlogCountCap bounds Backlog's count: counting a stuck relay's rows
// costs about 0.2 s per million (an index-only scan that still reads the
// heap of rows not yet vacuumed), every refresh on every replica, while
// 100,000 take 10-20 ms and already say that the relay is stuck.
const backlogCountCap = 100_000

// Backlog returns how many rows wait to be published (counted up to
// 100,000) and how long the oldest has waited, from its transaction's
// start (0 when none waits). The oldest is the first by id, the row the
// next pass takes first: a row the relay cannot publish stays first, and
// its age grows. Both are read through the unpublished rows' partial
// index: the age in one index entry, whatever the backlog.
func (r *Relay) Backlog(ctx context.Context) (int64, time.Duration, error) {
	var (
		n   int64
		age float64
	)
	err := r.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM (SELECT FROM bus_outbox WHERE published_at IS NULL LIMIT $1) AS u),
		       coalesce((SELECT extract(epoch FROM now() - created_at)::float8 FROM bus_outbox
		                 WHERE published_at IS NULL ORDER BY id LIMIT 1), 0)`, backlogCountCap).Scan(&n, &age)
	if err != nil {
		return 0, 0, fmt.Errorf("bus: outbox backlog: %w", err)
	}
	return n, time.Duration(age * float64(time.Second)), nil
}

// WaitRelayed polls until every row committed to the outbox so far has been
// published, or ctx is done: with the consumers' CaughtUp, what demos and
// tests wait for before reading what another service did with the messages.
// It only waits; a relay (Run, on this process or another) publishes.
func (r *Relay) WaitRelayed(ctx context.Context) error {
	for {
		var pending bool
		err := r.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM bus_outbox WHERE published_at IS NULL)`).Scan(&pending)
		if err == nil && !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("bus: outbox: %w", err)
			}
			return fmt.Errorf("bus: outbox not relayed: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
