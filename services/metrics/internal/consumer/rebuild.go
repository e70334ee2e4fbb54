package consumer

import (
	"context"
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
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// ErrRebuildRunning is returned when a rebuild of the same tenant is already
// running in this process.
var ErrRebuildRunning = errors.New("a rebuild of this tenant is already running")

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
// reaches it first. Queries during a rebuild see partial figures.
type Rebuilder struct {
	bus       *bus.Bus
	store     *store.Store
	batchSize int
	log       *slog.Logger

	mu      sync.Mutex
	running map[string]bool
}

// NewRebuilder returns a rebuilder replaying in batches of batchSize.
func NewRebuilder(b *bus.Bus, s *store.Store, batchSize int, log *slog.Logger) *Rebuilder {
	if batchSize <= 0 {
		batchSize = 500
	}
	return &Rebuilder{bus: b, store: s, batchSize: batchSize, log: log, running: map[string]bool{}}
}

// Rebuild resets tenant's projections and replays every fact of the tenant
// still on the stream (RETAIN_EVENTS keeps them for its max age).
func (r *Rebuilder) Rebuild(ctx context.Context, tenantID string) (RebuildResult, error) {
	r.mu.Lock()
	if r.running[tenantID] {
		r.mu.Unlock()
		return RebuildResult{}, ErrRebuildRunning
	}
	r.running[tenantID] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, tenantID)
		r.mu.Unlock()
	}()

	res := RebuildResult{StartedAt: time.Now().UTC()}
	stream, err := r.bus.JS.Stream(ctx, bus.EventsStream)
	if err != nil {
		return res, fmt.Errorf("rebuild: find stream %s: %w", bus.EventsStream, err)
	}
	if err := r.store.ResetTenant(ctx, tenantID, Durable); err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	r.log.Info("rebuild: projections reset, replaying", "tenant", tenantID)
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: TenantSubjects(tenantID),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return res, fmt.Errorf("rebuild: replay consumer: %w", err)
	}
	// Facts published after the replay started are the live consumer's;
	// stopping at the sequence known now keeps a busy tenant's rebuild
	// finite.
	info, err := stream.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("rebuild: stream info: %w", err)
	}
	lastSeq := info.State.LastSeq
	for {
		msgs, err := fetch(cons, r.batchSize)
		if err != nil {
			return res, fmt.Errorf("rebuild: fetch: %w", err)
		}
		ds := make([]*bus.Delivery, 0, len(msgs))
		done := false
		for _, m := range msgs {
			ds = append(ds, delivery(m))
			if md, err := m.Metadata(); err == nil && (md.NumPending == 0 || md.Sequence.Stream >= lastSeq) {
				done = true
			}
		}
		if len(ds) > 0 {
			applied, rejected, err := r.apply(ctx, ds)
			if err != nil {
				return res, err
			}
			res.Replayed += int64(len(ds))
			res.Applied += applied
			res.Rejected += rejected
		}
		if done {
			break
		}
		if len(ds) == 0 {
			ci, err := cons.Info(ctx)
			if err != nil {
				return res, fmt.Errorf("rebuild: replay consumer info: %w", err)
			}
			if ci.NumPending == 0 {
				break
			}
		}
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("rebuild: %w", err)
		}
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
// with the reason, stays the one that reports it.
func (r *Rebuilder) apply(ctx context.Context, ds []*bus.Delivery) (applied, rejected int64, err error) {
	err = bus.InHandlerTx(ctx, r.store.Pool(), func(ctx context.Context, tx pgx.Tx) error {
		applied, rejected = 0, 0
		fresh, _, err := bus.ClaimInbox(ctx, tx, Durable, ds)
		if err != nil {
			return fmt.Errorf("claim inbox ids: %w", err)
		}
		if len(fresh) == 0 {
			return nil
		}
		if err := handle(ctx, tx, r.store, fresh, r.log); err != nil {
			return err
		}
		var dead []string
		for _, d := range fresh {
			if bad, _ := d.Rejected(); bad {
				dead = append(dead, d.ID)
			}
		}
		applied, rejected = int64(len(fresh)-len(dead)), int64(len(dead))
		if len(dead) > 0 {
			if err := bus.ReleaseInbox(ctx, tx, Durable, dead); err != nil {
				return fmt.Errorf("rejected ids: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("rebuild: apply %d facts: %w", len(ds), err)
	}
	return applied, rejected, nil
}

// fetch takes up to n messages without waiting for a full batch: what is
// there at once, else the first to arrive within a second topped up with
// what came meanwhile (the runner's rule).
func fetch(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	msgs, err := collect(cons.FetchNoWait(n))
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	msgs, err = collect(cons.Fetch(1, jetstream.FetchMaxWait(time.Second)))
	if len(msgs) == 0 || err != nil || n == 1 {
		return msgs, err
	}
	more, err := collect(cons.FetchNoWait(n - 1))
	return append(msgs, more...), err
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
