package consumer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// ErrRebuildElsewhere is returned when another process (a replica) runs a
// rebuild of the tenant.
var ErrRebuildElsewhere = errors.New("a rebuild of this tenant is running in another process of the service")

// ErrRebuilderStopped is returned when a rebuild is asked of a rebuilder
// that is not running (the service is starting or stopping).
var ErrRebuilderStopped = errors.New("the service is not running rebuilds now (starting or stopping)")

// DefaultResumeEvery is how often Run looks for rebuilds left half-way.
const DefaultResumeEvery = 30 * time.Second

// RebuildResult is what a rebuild did.
type RebuildResult struct {
	// Replayed is how many of the tenant's facts were read back.
	Replayed int64
	// Applied is how many of them were new to the inbox and applied; the
	// rest were applied meanwhile by the live consumer.
	Applied int64
	// Rejected is how many the handler refused.
	Rejected  int64
	StartedAt time.Time
	Duration  time.Duration
}

// Rebuilder drops one tenant's projections and replays its facts from
// RETAIN_EVENTS.
//
// The live metrics-facts consumer keeps running meanwhile: the reset holds
// the tenant's write lock and clears the tenant's inbox ids in the same
// transaction as its rows, and the replay claims ids in the same inbox as the
// live consumer, so every fact is applied exactly once whichever of the two
// reaches it first.
//
// The tenant's figures are partial from the reset until the replay is done.
// So that they are never left so (decision 0035): a rebuild runs under the
// rebuilder's lifetime (Run's context), not its caller's, and completes
// whoever stops waiting for it; the reset marks the tenant as being rebuilt
// (queries refuse to answer, naming it) until the replay is done; and a
// rebuild left half-way by a process that stopped is run again by Run, in
// whichever replica finds it first.
type Rebuilder struct {
	bus       *bus.Bus
	store     *store.Store
	batchSize int
	// fetchMaxBytes bounds each replayed batch in bytes as the live
	// consumer's are (decision 0042).
	fetchMaxBytes int
	log           *slog.Logger
	// ResumeEvery is how often Run looks for rebuilds nobody is running;
	// a database away for a while is logged once, not at every look.
	ResumeEvery time.Duration
	outage      *pg.OutageLog

	mu sync.Mutex
	// life is Run's context while it runs, else nil; rebuilds run under it
	// and Run waits for them (wg) before it returns.
	life    context.Context
	wg      sync.WaitGroup
	running map[string]*rebuildRun
}

// rebuildRun is one rebuild in this process; started is closed once its
// reset is committed (the tenant is marked), done once res and err are set.
type rebuildRun struct {
	started chan struct{}
	done    chan struct{}
	res     RebuildResult
	err     error
}

// NewRebuilder returns a rebuilder replaying in batches of batchSize
// messages and at most fetchMaxBytes bytes (the live consumer's
// bus.ConsumerConfig.FetchMaxBytes; 0: bus.DefaultFetchMaxBytes).
func NewRebuilder(b *bus.Bus, s *store.Store, batchSize, fetchMaxBytes int, log *slog.Logger) *Rebuilder {
	if batchSize <= 0 {
		batchSize = 500
	}
	if fetchMaxBytes <= 0 {
		fetchMaxBytes = bus.DefaultFetchMaxBytes
	}
	return &Rebuilder{bus: b, store: s, batchSize: batchSize, fetchMaxBytes: fetchMaxBytes, log: log,
		ResumeEvery: DefaultResumeEvery, running: map[string]*rebuildRun{},
		outage: pg.NewOutageLog(log, "rebuild: looking for unfinished rebuilds", s.Pool().Ping)}
}

// Run runs the rebuilds until ctx is done: those Rebuild starts, and those
// it finds unfinished (marked, nobody holding their lock) at once and then
// every ResumeEvery. When ctx is done the running rebuilds stop at their
// next batch, their tenants still marked, and Run returns once they have:
// the next process to find them runs them again.
func (r *Rebuilder) Run(ctx context.Context) error {
	r.mu.Lock()
	r.life = ctx
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.life = nil
		r.mu.Unlock()
		r.wg.Wait()
	}()
	tick := time.NewTicker(r.ResumeEvery)
	defer tick.Stop()
	for {
		r.resume(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// resume starts the unfinished rebuilds this process is not running; one
// that another process runs ends at once, finding its lock held.
func (r *Rebuilder) resume(ctx context.Context) {
	tenants, err := r.store.UnfinishedRebuilds(ctx)
	if ctx.Err() == nil {
		r.outage.Pass(ctx, err, "rebuild: cannot look for unfinished rebuilds; looking again later", "every", r.ResumeEvery)
	}
	if err != nil {
		return
	}
	for _, t := range tenants {
		_, _ = r.start(t, true)
	}
}

// Rebuild starts a rebuild of tenant, or joins the one this process is
// running, and waits for it until ctx is done. The rebuild goes on when
// ctx ends first; the error then wraps ctx's.
func (r *Rebuilder) Rebuild(ctx context.Context, tenantID string) (RebuildResult, error) {
	run, err := r.start(tenantID, false)
	if err != nil {
		return RebuildResult{}, err
	}
	select {
	case <-run.done:
		return run.res, run.err
	case <-ctx.Done():
		return RebuildResult{}, fmt.Errorf("stopped waiting for the rebuild, which goes on: %w", ctx.Err())
	}
}

// Start starts a rebuild of tenant, or joins the one this process is
// running, and returns once it has reset the tenant (or has ended, when
// that comes first: the error is then the rebuild's), without waiting for
// the replay: store.RebuildStatus follows it from there. The rebuild goes
// on when ctx ends first; the error then wraps ctx's.
func (r *Rebuilder) Start(ctx context.Context, tenantID string) error {
	run, err := r.start(tenantID, false)
	if err != nil {
		return err
	}
	select {
	case <-run.started:
		return nil
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return fmt.Errorf("stopped waiting for the rebuild to start, which goes on: %w", ctx.Err())
	}
}

// start returns the tenant's rebuild in this process, starting it under
// the rebuilder's lifetime when there is none.
func (r *Rebuilder) start(tenantID string, resume bool) (*rebuildRun, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.running[tenantID]; run != nil {
		return run, nil
	}
	if r.life == nil {
		return nil, ErrRebuilderStopped
	}
	run := &rebuildRun{started: make(chan struct{}), done: make(chan struct{})}
	r.running[tenantID] = run
	r.wg.Add(1)
	go func(ctx context.Context) {
		defer r.wg.Done()
		run.res, run.err = r.locked(ctx, tenantID, resume, func() { close(run.started) })
		r.mu.Lock()
		delete(r.running, tenantID)
		r.mu.Unlock()
		close(run.done)
	}(r.life)
	return run, nil
}

// locked runs the rebuild holding the tenant's rebuild lock, which keeps
// other processes from rebuilding the tenant meanwhile and tells them,
// when its holder is gone, that a marked tenant's rebuild was left
// half-way. started is called once, when the tenant is reset.
func (r *Rebuilder) locked(ctx context.Context, tenantID string, resume bool, started func()) (RebuildResult, error) {
	lock, holder, err := r.store.TryRebuildLock(ctx, tenantID)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("rebuild: cannot take the tenant's rebuild lock", "tenant", tenantID, "error", err)
		}
		return RebuildResult{}, fmt.Errorf("rebuild: %w", err)
	}
	if holder != nil {
		return RebuildResult{}, fmt.Errorf("%w: %s", ErrRebuildElsewhere, holder)
	}
	defer lock.Release(ctx)
	if resume {
		// Marked, yet nobody held the lock: unless another process has
		// just finished it, the process running it stopped half-way.
		st, err := r.store.RebuildState(ctx, tenantID)
		if err != nil || !st.Rebuilding() {
			return RebuildResult{}, err
		}
		r.log.Warn("rebuild: found one left unfinished (its process stopped, or it failed, e.g. with the database away); running it again", "tenant", tenantID, "partial_since", st.Since)
	}
	res, err := r.rebuild(ctx, tenantID, started)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.log.Warn("rebuild: stopped with the service; the tenant stays marked as being rebuilt and the next process runs it again",
			"tenant", tenantID, "replayed", res.Replayed)
	default:
		r.log.Error("rebuild: failed; the tenant stays marked as being rebuilt and it is run again", "tenant", tenantID,
			"replayed", res.Replayed, "error", err, "retry_in", r.ResumeEvery)
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if ferr := r.store.FailRebuild(fctx, tenantID, err); ferr != nil {
			r.log.Error("rebuild: cannot record the failure for GetRebuild", "tenant", tenantID, "error", ferr)
		}
	}
	return res, err
}

// rebuild resets tenant's projections and replays every fact of the tenant
// still on the stream (RETAIN_EVENTS keeps them for its max age), then
// marks the rebuild done. started is called once, when the tenant is reset.
func (r *Rebuilder) rebuild(ctx context.Context, tenantID string, started func()) (RebuildResult, error) {
	res := RebuildResult{StartedAt: time.Now().UTC()}
	stream, err := r.bus.JS.Stream(ctx, bus.EventsStream)
	if err != nil {
		return res, fmt.Errorf("rebuild: find stream %s: %w", bus.EventsStream, err)
	}
	if err := r.store.ResetTenant(ctx, tenantID, Durable); err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	started()
	r.log.Info("rebuild: projections reset, replaying", "tenant", tenantID)
	// Facts published after the replay started are the live consumer's;
	// stopping at the sequence known now keeps a busy tenant's rebuild
	// finite.
	info, err := stream.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("rebuild: stream info: %w", err)
	}
	lastSeq := info.State.LastSeq
	for next := uint64(1); ; {
		msgs, left, err := r.replay(ctx, tenantID, next)
		if err != nil {
			return res, fmt.Errorf("rebuild: %w", err)
		}
		if left == 0 {
			break // none of the tenant's facts past next
		}
		ds := make([]*bus.Delivery, 0, len(msgs))
		done := false
		var pending *int64
		for _, m := range msgs {
			ds = append(ds, delivery(m))
			if md, err := m.Metadata(); err == nil {
				next = md.Sequence.Stream + 1
				n := int64(md.NumPending)
				pending = &n
				done = done || md.Sequence.Stream >= lastSeq || n == 0
			}
		}
		if len(ds) > 0 {
			if res, err = r.apply(ctx, tenantID, ds, res, pending); err != nil {
				return res, err
			}
		}
		if done {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("rebuild: %w", err)
		}
	}
	// Every fact is applied: the figures are whole again. Marked even when
	// the service stops now, rather than replaying everything once more.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.store.FinishRebuild(fctx, tenantID); err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	res.Duration = time.Since(res.StartedAt)
	r.log.Info("rebuild: done", "tenant", tenantID, "replayed", res.Replayed, "applied", res.Applied, "rejected", res.Rejected, "duration", res.Duration)
	return res, nil
}

// apply runs one replayed batch the way the consumer runner does: claim the
// ids in the consumer's inbox and apply the fresh ones, in one transaction
// whose after-commit hooks run as a batch's do (the customer cache follows
// the replay instead of waiting for a version check to miss). A rejected
// fact leaves no inbox id behind, so the live consumer, which dead-letters
// with the reason, stays the one that reports it. The rebuild's counts so
// far (so, plus this batch's) are recorded in the same transaction, for
// GetRebuild in any replica; pending is what the stream still holds for
// the tenant after the batch, when known.
func (r *Rebuilder) apply(ctx context.Context, tenantID string, ds []*bus.Delivery, so RebuildResult, pending *int64) (RebuildResult, error) {
	var now RebuildResult
	err := bus.InHandlerTx(ctx, r.store.Pool(), func(ctx context.Context, tx pgx.Tx) error {
		now = so
		now.Replayed += int64(len(ds))
		fresh, _, err := bus.ClaimInbox(ctx, tx, Durable, ds)
		if err != nil {
			return fmt.Errorf("claim inbox ids: %w", err)
		}
		if len(fresh) > 0 {
			if err := handle(ctx, tx, r.store, fresh, r.log); err != nil {
				return err
			}
			var dead []string
			for _, d := range fresh {
				if bad, _ := d.Rejected(); bad {
					dead = append(dead, d.ID)
				}
			}
			now.Applied += int64(len(fresh) - len(dead))
			now.Rejected += int64(len(dead))
			if len(dead) > 0 {
				if err := bus.ReleaseInbox(ctx, tx, Durable, dead); err != nil {
					return fmt.Errorf("rejected ids: %w", err)
				}
			}
		}
		return store.RecordRebuildProgress(ctx, tx, tenantID, store.RebuildProgress{
			Replayed: now.Replayed, Applied: now.Applied, Rejected: now.Rejected, Pending: pending})
	})
	if err != nil {
		return so, fmt.Errorf("rebuild: apply %d facts: %w", len(ds), err)
	}
	return now, nil
}

// RebuildName is the name of the rebuilds' consumer on RETAIN_EVENTS:
// one name, which the NATS permissions of the service can name where
// generated ones (an ordered consumer's) need a wildcard that names every
// consumer of the stream, and with it every other service's durable
// (docs/decisions/0044-consumer-permissions-per-service.md).
const RebuildName = Durable + "-rebuild"

// rebuildConsumerLife is how long the server keeps a rebuild's consumer
// with no pull waiting: one left by a process that stopped mid-fetch
// holds the name for no longer.
const rebuildConsumerLife = 10 * time.Second

// replay reads the next batch of tenantID's facts from stream sequence
// next on, at most the rebuilder's batch size and fetch bytes; left is
// how many of them the stream held from next on (none: the replay is
// done).
//
// Each batch has a consumer of its own, created from next (what the last
// batch ended at) and deleted once fetched, as an ordered consumer resets
// at each fetch: a message the fetch lost on the way (no acks) is in the
// next batch. Its name is always RebuildName: the rebuilds of this
// process take turns, and one of another replica, or one left by a
// process that stopped, keeps it until deleted (at the end of its fetch)
// or inactive for rebuildConsumerLife; meanwhile the creation, which asks
// for a new consumer and never updates one (its description names this
// batch alone), is tried again. It runs apart from the apply, so that
// rebuilds of several tenants take turns only at their fetches.
func (r *Rebuilder) replay(ctx context.Context, tenantID string, next uint64) (msgs []jetstream.Msg, left uint64, err error) {
	used := false
	err = r.bus.UseNamedConsumer(ctx, bus.NamedConsumer{
		Stream: bus.EventsStream,
		Config: jetstream.ConsumerConfig{
			Name:              RebuildName,
			Description:       fmt.Sprintf("rebuild of tenant %s from %d (%s)", tenantID, next, rand.Text()),
			FilterSubjects:    TenantSubjects(tenantID),
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       next,
			AckPolicy:         jetstream.AckNonePolicy,
			MemoryStorage:     true,
			Replicas:          1,
			InactiveThreshold: rebuildConsumerLife,
		},
		Taken: func(ctx context.Context) error {
			select {
			case <-time.After(100 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		// The next batch's creation waits for the name while this one
		// is on the stream, whoever stops waiting for it.
		DeleteTimeout: 10 * time.Second,
		Deleted: func(err error) {
			if err != nil {
				r.log.Warn("rebuild: cannot delete the replay consumer; the server does once it is inactive", "tenant", tenantID,
					"consumer", RebuildName, "error", err, "after", rebuildConsumerLife)
			}
		},
	}, func(cons jetstream.Consumer) error {
		used = true
		// Each fetch asks for no more than the consumer holds, so that it
		// ends once it has them instead of waiting out its expiry.
		if left = cons.CachedInfo().NumPending; left == 0 {
			return nil
		}
		var err error
		if msgs, err = fetch(cons, int(min(uint64(r.batchSize), left)), r.fetchMaxBytes); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		return nil
	})
	if err != nil && !used {
		err = fmt.Errorf("replay consumer: %w", err)
	}
	return msgs, left, err
}

// fetch takes up to n messages and at most maxBytes bytes of them (as NATS
// counts a message: subject, reply subject, headers and data), waiting up
// to a second for them. The caller asks for no more than the consumer
// holds, so the wait ends as soon as they are there.
//
// A message larger than maxBytes on its own is not stuck: the server ends
// the bounded request with 409 Message Size Exceeds MaxBytes and nothing
// delivered, which nats.go reports as no message, and the fetch of one
// message with no byte bound then takes it, the batch on its own.
func fetch(cons jetstream.Consumer, n, maxBytes int) ([]jetstream.Msg, error) {
	msgs, err := collect(cons.Fetch(n, jetstream.FetchMaxBytes(maxBytes), jetstream.FetchMaxWait(time.Second)))
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	return collect(cons.Fetch(1, jetstream.FetchMaxWait(time.Second)))
}

func collect(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		return msgs, err
	}
	return msgs, nil
}

// delivery is bus.Delivery's view of a replayed message, with the id rule of
// the runner (Nats-Msg-Id, else the stream position).
func delivery(m jetstream.Msg) *bus.Delivery {
	h := m.Headers()
	if h == nil {
		h = nats.Header{}
	}
	d := &bus.Delivery{
		ID: h.Get(bus.HeaderMsgID), Type: h.Get(bus.HeaderEventType),
		Subject: m.Subject(), Data: m.Data(), Header: h, NumDelivered: 1,
	}
	if md, err := m.Metadata(); err == nil {
		d.Stream, d.StreamSeq, d.Timestamp = md.Stream, md.Sequence.Stream, md.Timestamp
	}
	if d.ID == "" {
		d.ID = "seq:" + d.Stream + ":" + strconv.FormatUint(d.StreamSeq, 10)
	}
	return d
}
