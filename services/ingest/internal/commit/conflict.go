package commit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/ingest/event"
)

// ErrUnresolved means ingest could not read what an event id was first used
// for, so it cannot tell a retry from a different event reusing the id.
// Nothing of that event was stored; the client retries.
var ErrUnresolved = errors.New("could not check the event id against its first use")

// ErrLogUnavailable means the ingest log look-up of a batch failed while its
// database answers, too slowly or with an error: the batch's requests are
// refused for a retry (decision 0024). It comes with ErrUnresolved.
var ErrLogUnavailable = errors.New("the ingest log (ingest's database of event ids) is unavailable")

// databaseSetting is the setting of the ingest log's database.
const databaseSetting = "RETAIN_INGEST_DATABASE_URL"

// Status is what happened to one message of a Submit.
type Status int

const (
	// Published: stored by this batch.
	Published Status = iota + 1
	// Duplicate: the id was stored before for the same content (or content
	// that is not known: ids logged before fingerprints were); nothing new
	// was stored.
	Duplicate
	// Conflict: the id was stored before for a different event; this one
	// was not stored.
	Conflict

	// unresolved fails the message's request with Outcome.Err.
	unresolved Status = -1
)

// Outcome is the answer for one message.
type Outcome struct {
	Status Status
	// Original is, for a Conflict, what the id was first used for; a field
	// may be zero when it is not known.
	Original Entry
	err      error
}

// Entry is what an event id was first used for: the content fingerprint
// (event.Encode), the event type and when the stream stored it. An empty
// Fingerprint means unknown.
type Entry struct {
	Fingerprint string
	Type        string
	AcceptedAt  time.Time
}

// against answers a message with fingerprint fp whose id was first used for
// e: a duplicate when the content is the same or either is not known.
func (e Entry) against(fp string) Outcome {
	if e.Fingerprint == "" || fp == "" || e.Fingerprint == fp {
		return Outcome{Status: Duplicate}
	}
	return Outcome{Status: Conflict, Original: e}
}

// publishNew publishes the messages whose ids are new and answers the others
// against what their id was first used for. The first use is, in order: the
// ingest log's row; the same id earlier in this batch (bus.PublishDurable
// finds those repeats and does not send them); the stored original of an id
// the stream refuses as a duplicate (the log trails the stream by the log
// writer's lag, so a retry may beat its row).
func (c *Committer) publishNew(msgs []bus.Message) ([]Outcome, error) {
	out := make([]Outcome, len(msgs))
	fps := make([]string, len(msgs))
	for i, m := range msgs {
		fps[i] = m.Header.Get(event.HeaderFingerprint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PublishTimeout)
	defer cancel()
	known, err := c.lookup(ctx, msgIDs(msgs, nil))
	if err != nil && !pg.Unreachable(err) {
		// The log answers, too slowly or with an error: publishing without
		// it would answer a late retry "accepted" and, worse, accept a
		// reused id's different event that every consumer's inbox then
		// skips. The batch's requests are refused for a retry instead. Only
		// a log that cannot be reached at all is published past (decision
		// 0024). The cause is text: a deadline here is not the client's.
		return nil, fmt.Errorf("%w: %w (%v)", ErrLogUnavailable, ErrUnresolved, err)
	}
	var fresh []bus.Message
	var freshIdx []int
	for i, m := range msgs {
		if e, ok := known[m.ID]; ok {
			out[i] = e.against(fps[i])
			continue
		}
		fresh = append(fresh, m)
		freshIdx = append(freshIdx, i)
	}
	if len(fresh) == 0 {
		return out, nil
	}

	published, err := c.pub.PublishDurable(ctx, fresh)
	if err != nil {
		return nil, err
	}
	if len(published) != len(fresh) {
		return nil, fmt.Errorf("publish returned %d outcomes for %d messages", len(published), len(fresh))
	}
	now := time.Now()
	firstUse := make(map[string]Outcome, len(fresh))
	var refused, repeats []int
	seqs := map[int]uint64{}
	for k, p := range published {
		i := freshIdx[k]
		switch {
		case p.Outcome == bus.Duplicate && p.Repeat:
			// Answered once its first occurrence's fate is known.
			repeats = append(repeats, i)
		case p.Outcome == bus.Duplicate:
			refused = append(refused, i)
			seqs[i] = p.Original
		default:
			out[i] = Outcome{Status: Published}
			firstUse[msgs[i].ID] = Outcome{Original: Entry{Fingerprint: fps[i], Type: msgs[i].Type, AcceptedAt: now}}
		}
	}
	if len(refused) > 0 {
		originals := c.originalsOf(ctx, msgs, refused, seqs)
		for _, i := range refused {
			o := originals[msgs[i].ID]
			firstUse[msgs[i].ID] = o
			if o.Status == unresolved {
				out[i] = o
			} else {
				out[i] = o.Original.against(fps[i])
			}
		}
	}
	for _, i := range repeats {
		o := firstUse[msgs[i].ID]
		if o.Status == unresolved {
			out[i] = o
		} else {
			out[i] = o.Original.against(fps[i])
		}
	}
	return out, nil
}

// originalsOf finds the first use of the ids of msgs[idx], which the stream
// refused as duplicates of the messages it stores at seqs[i]: in the ingest
// log when its row is written by now, else from the stream. The Outcome's
// Original is the first use, or its Status is unresolved.
func (c *Committer) originalsOf(ctx context.Context, msgs []bus.Message, idx []int, seqs map[int]uint64) map[string]Outcome {
	found := make(map[string]Outcome, len(idx))
	// A failed look-up leaves the stream's copies to answer; it refuses
	// nothing, so it neither tells of an outage nor makes ingest not
	// ready. Its own HistoryTimeout: what the publish left of the batch's
	// PublishTimeout may be nothing.
	known, _ := c.readLog(context.WithoutCancel(ctx), msgIDs(msgs, idx))
	for id, e := range known {
		found[id] = Outcome{Original: e}
	}
	for _, i := range idx {
		m := msgs[i]
		if _, ok := found[m.ID]; ok {
			continue
		}
		if c.originals == nil {
			found[m.ID] = Outcome{} // unknown content: a duplicate, as before fingerprints
			continue
		}
		e, err := c.originals.Original(ctx, seqs[i])
		if err != nil {
			c.log.Warn("cannot read the first use of a duplicate event id; its request is refused for a retry", "msg_id", m.ID, "err", err)
			found[m.ID] = Outcome{Status: unresolved, err: fmt.Errorf("%w %s: %w", ErrUnresolved, m.ID, err)}
			continue
		}
		found[m.ID] = Outcome{Original: e}
	}
	return found
}

func msgIDs(msgs []bus.Message, idx []int) []string {
	if idx == nil {
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		return ids
	}
	ids := make([]string, len(idx))
	for k, i := range idx {
		ids[k] = msgs[i].ID
	}
	return ids
}

// readLog reads the ingest log's entries of ids, within HistoryTimeout.
func (c *Committer) readLog(ctx context.Context, ids []string) (map[string]Entry, error) {
	if c.history == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HistoryTimeout)
	defer cancel()
	return c.history.Known(ctx, ids)
}

// lookup is the look-up that decides whether a batch is refused
// (publishNew), or WatchLog's probe: readLog, and what it answered decides
// ingest's readiness (LogReady) and is counted in the log's outages.
func (c *Committer) lookup(ctx context.Context, ids []string) (map[string]Entry, error) {
	if c.history == nil {
		return nil, nil
	}
	known, err := c.readLog(ctx, ids)
	unreachable := pg.Unreachable(err)
	c.refusalMu.Lock()
	c.refusal = nil
	if err != nil && !unreachable {
		c.refusal = err
	}
	c.refusalMu.Unlock()
	if err != nil {
		effect := "batches are refused for a retry (429 ingest_log_unavailable) and ingest is not ready"
		if unreachable {
			effect = "batches are published relying on the stream's duplicate window alone"
		}
		c.lookups.Failed(err, "effect", effect)
		return nil, err
	}
	c.lookups.Answered()
	return known, nil
}

// LogReady reports whether the ingest log answers enough for ingest to take
// events: an error while its look-ups fail with the database answering,
// too slowly or with an error, when every batch is refused. A database
// that cannot be reached at all leaves ingest ready: batches are published
// past it (decision 0024).
func (c *Committer) LogReady() error {
	c.refusalMu.Lock()
	defer c.refusalMu.Unlock()
	if c.refusal == nil {
		return nil
	}
	return fmt.Errorf("%w, events are refused until it answers: check the ingest database (%s): %v", ErrLogUnavailable, databaseSetting, c.refusal)
}

// WatchLog looks the ingest log up every ProbeEvery while its look-ups
// fail, until ctx is done, so that the end of an outage is seen (logged,
// with how long it lasted, and ingest ready again) within seconds of the
// database answering, not at the next request: while ingest is not ready
// none may come.
func (c *Committer) WatchLog(ctx context.Context) error {
	if c.history == nil {
		return nil
	}
	t := time.NewTicker(c.cfg.ProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if c.lookups.Away() {
			// No ids: the query itself is the probe.
			_, _ = c.lookup(ctx, []string{})
		}
	}
}

// StreamOriginals reads the original of a refused duplicate from the
// stream, at the sequence the duplicate's PubAck named. Its fingerprint is
// its header, or computed from its data when it was stored before
// fingerprints were.
type StreamOriginals struct {
	Bus    *bus.Bus
	Stream string

	mu     sync.Mutex
	stream jetstream.Stream
}

// Original implements Originals.
func (s *StreamOriginals) Original(ctx context.Context, seq uint64) (Entry, error) {
	if seq == 0 {
		return Entry{}, errors.New("the stream did not say where the original is stored")
	}
	st, err := s.handle(ctx)
	if err != nil {
		return Entry{}, err
	}
	orig, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Gone from the stream (deleted or past a limit) while its id is
		// still in the window: its content cannot be known.
		return Entry{}, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read %s sequence %d: %w", s.Stream, seq, err)
	}
	return Entry{
		Fingerprint: event.StoredFingerprint(orig.Header.Get(event.HeaderFingerprint), orig.Data),
		Type:        orig.Header.Get(bus.HeaderEventType),
		AcceptedAt:  orig.Time,
	}, nil
}

func (s *StreamOriginals) handle(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		return s.stream, nil
	}
	st, err := s.Bus.JS.Stream(ctx, s.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.Stream, err)
	}
	s.stream = st
	return st, nil
}
