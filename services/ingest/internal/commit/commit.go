// Package commit coalesces concurrent ingest requests into shared atomic
// batches (group commit).
//
// JetStream runs with an fsync on every write, so the cost of a publish is one
// fsync per atomic batch, whatever its size. Publishing each HTTP request as
// its own batch would make a 10-event request cost as much as a 500-event one;
// instead the committer waits a few milliseconds for other requests, publishes
// them together and answers each request when its batch is acknowledged.
package commit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/pg"
)

// ErrOverloaded means the queue of waiting requests is full; the caller should
// tell its client to retry later.
var ErrOverloaded = errors.New("ingest is overloaded: too many requests waiting for the bus")

// Publisher is the durable batch publish of platform/bus.
type Publisher interface {
	PublishDurable(ctx context.Context, msgs []bus.Message) ([]bus.PublishResult, error)
}

// History tells which message ids were published long ago, beyond the
// stream's duplicate window, and what for (the ingest log).
type History interface {
	Known(ctx context.Context, msgIDs []string) (map[string]Entry, error)
}

// Originals reads what the stream stored at the sequence its PubAck named
// for a message it refused as a duplicate (see StreamOriginals).
type Originals interface {
	Original(ctx context.Context, seq uint64) (Entry, error)
}

// Config tunes the group commit.
type Config struct {
	// MaxBatch is the most messages published in one atomic batch. The
	// default is the server's limit: two full 500-event requests share an
	// fsync.
	MaxBatch int
	// Linger is how long the first request of a batch waits for others.
	Linger time.Duration
	// Publishers is how many batches may be in flight at once; two keep the
	// server busy while the next batch is assembled.
	Publishers int
	// QueueDepth is how many requests may wait before Submit refuses.
	QueueDepth int
	// PublishTimeout bounds one batch publish.
	PublishTimeout time.Duration
	// HistoryTimeout bounds the ingest log look-up of a batch. Past it the
	// batch's requests are refused for a retry; only a log database that
	// cannot be reached at all is published past (decision 0024).
	HistoryTimeout time.Duration
	// ProbeEvery is how often WatchLog looks the ingest log up while its
	// look-ups fail.
	ProbeEvery time.Duration
}

// DefaultConfig is tuned for the 2-core machines of docs/benchmarks.md.
func DefaultConfig() Config {
	return Config{MaxBatch: 1000, Linger: time.Millisecond, Publishers: 2, QueueDepth: 4096, PublishTimeout: 10 * time.Second, HistoryTimeout: 2 * time.Second,
		ProbeEvery: 5 * time.Second}
}

// Validate names every bad setting.
func (c Config) Validate() error {
	// Named by the settings ingest binds them to (ingest.Config.RegisterFlags).
	var v config.Validator
	v.Check(c.MaxBatch >= 1 && c.MaxBatch <= 1000, config.SettingName("RETAIN_INGEST_MAX_BATCH", "max-batch"),
		"must be 1-1000 (the server's limit: the max batch it takes atomically), got %d", c.MaxBatch)
	v.Check(c.Linger >= 0 && c.Linger <= time.Second, config.SettingName("RETAIN_INGEST_LINGER", "linger"),
		"must be 0-1s, such as 1ms, got %s", c.Linger)
	v.Check(c.Publishers >= 1, config.SettingName("RETAIN_INGEST_PUBLISHERS", "publishers"), "must be at least 1, got %d", c.Publishers)
	v.Check(c.QueueDepth >= 1, config.SettingName("RETAIN_INGEST_QUEUE_DEPTH", "queue-depth"), "must be at least 1, got %d", c.QueueDepth)
	v.Check(c.PublishTimeout > 0, "commit publish timeout", "must be positive, got %s", c.PublishTimeout)
	v.Check(c.HistoryTimeout > 0, "commit history timeout", "must be positive, got %s", c.HistoryTimeout)
	v.Check(c.ProbeEvery > 0, "commit probe interval", "must be positive, got %s", c.ProbeEvery)
	return v.Err()
}

type request struct {
	msgs     []bus.Message
	outcomes []Outcome
	err      error
	done     chan struct{}
}

// Committer is the group-commit queue. Run must be running for Submit to make
// progress.
type Committer struct {
	cfg       Config
	pub       Publisher
	history   History   // nil: rely on the stream's duplicate window alone
	originals Originals // nil: a duplicate the log does not know yet is not checked
	log       *slog.Logger
	queue     chan *request
	// lookups logs an ingest log outage when it starts and when it ends,
	// not once a batch; any failed look-up counts (the batch goes on
	// without it only when the log's database cannot be reached, decision
	// 0024).
	lookups *pg.OutageLog
	// refusal is the error of the last look-up of a batch or probe
	// (lookup) when it failed while the log's database answers, too slowly
	// or with an error: batches are refused then, not published (decision
	// 0024). Nil otherwise.
	refusalMu sync.Mutex
	refusal   error
}

// New returns a committer publishing through pub. history and originals
// may be nil.
func New(cfg Config, pub Publisher, history History, originals Originals, log *slog.Logger) (*Committer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("commit config: %w", err)
	}
	return &Committer{cfg: cfg, pub: pub, history: history, originals: originals, log: log, queue: make(chan *request, cfg.QueueDepth),
		lookups: &pg.OutageLog{Log: log, Count: "failed_lookups",
			Down: "ingest log look-up failed: check the ingest database (" + databaseSetting + "); logged again when it answers",
			Up:   "ingest log look-up answers again"}}, nil
}

// Submit publishes msgs and returns, in order, whether each was published,
// was a duplicate or conflicts with what its id was first used for (see
// Outcome). A message's content fingerprint is its event.HeaderFingerprint
// header; a message without one is never a conflict. Submit returns only
// after every message is acknowledged on disk, or with an error, in which
// case none of them may be assumed published (some may be: the client
// retries with the same ids and dedupe makes that harmless).
func (c *Committer) Submit(ctx context.Context, msgs []bus.Message) ([]Outcome, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if len(msgs) > c.cfg.MaxBatch {
		return nil, fmt.Errorf("submit %d messages: more than the batch limit %d", len(msgs), c.cfg.MaxBatch)
	}
	r := &request{msgs: msgs, done: make(chan struct{})}
	select {
	case c.queue <- r:
	default:
		return nil, ErrOverloaded
	}
	select {
	case <-r.done:
		return r.outcomes, r.err
	case <-ctx.Done():
		// The batch may still be published; the client's retry is deduplicated.
		return nil, ctx.Err()
	}
}

// Run assembles and publishes batches until ctx is cancelled, then drains
// what was already queued so no accepted request is left waiting.
func (c *Committer) Run(ctx context.Context) error {
	sem := make(chan struct{}, c.cfg.Publishers)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()

	var carry *request
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-c.queue:
			case <-ctx.Done():
				c.drain(sem, &wg)
				return nil
			}
		}
		batch := []*request{first}
		size := len(first.msgs)
		// Take what is already waiting, then linger for more. While the
		// previous batch is being fsynced the queue fills, so under load
		// batches grow by themselves and the linger rarely matters.
		var linger <-chan time.Time
		if c.cfg.Linger > 0 {
			timer.Reset(c.cfg.Linger)
			linger = timer.C
		}
	collect:
		for size < c.cfg.MaxBatch {
			select {
			case r := <-c.queue:
				if size+len(r.msgs) > c.cfg.MaxBatch {
					carry = r
					break collect
				}
				batch = append(batch, r)
				size += len(r.msgs)
			default:
				if linger == nil {
					break collect
				}
				select {
				case r := <-c.queue:
					if size+len(r.msgs) > c.cfg.MaxBatch {
						carry = r
						break collect
					}
					batch = append(batch, r)
					size += len(r.msgs)
				case <-linger:
					linger = nil
					break collect
				case <-ctx.Done():
					break collect
				}
			}
		}
		// Go 1.23+ timers: Stop (and the next Reset) discard an unread
		// expiry, so there is nothing to drain.
		timer.Stop()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.publish(batch, size)
		}()
	}
}

// drain publishes everything still queued at shutdown.
func (c *Committer) drain(sem chan struct{}, wg *sync.WaitGroup) {
	for {
		var batch []*request
		size := 0
	fill:
		for size < c.cfg.MaxBatch {
			select {
			case r := <-c.queue:
				if size+len(r.msgs) > c.cfg.MaxBatch && len(batch) > 0 {
					c.publishAsync(sem, wg, batch, size)
					batch, size = nil, 0
				}
				batch = append(batch, r)
				size += len(r.msgs)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		c.publishAsync(sem, wg, batch, size)
	}
}

func (c *Committer) publishAsync(sem chan struct{}, wg *sync.WaitGroup, batch []*request, size int) {
	sem <- struct{}{}
	wg.Add(1)
	go func() {
		defer func() { <-sem; wg.Done() }()
		c.publish(batch, size)
	}()
}

// publish sends one atomic batch made of several requests and hands each its
// slice of the outcomes. A batch publish uses its own context: a client that
// hung up must not abort the batch of others.
func (c *Committer) publish(batch []*request, size int) {
	msgs := make([]bus.Message, 0, size)
	for _, r := range batch {
		msgs = append(msgs, r.msgs...)
	}
	outcomes, err := c.publishNew(msgs)
	off := 0
	for _, r := range batch {
		switch {
		case err != nil:
			r.err = err
		default:
			r.outcomes = outcomes[off : off+len(r.msgs)]
			// An id whose first use could not be read fails its own
			// request only; the other requests of the batch are answered.
			for _, o := range r.outcomes {
				if o.Status == unresolved {
					r.outcomes, r.err = nil, o.err
					break
				}
			}
		}
		off += len(r.msgs)
		close(r.done)
	}
}
