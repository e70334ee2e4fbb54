package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CaughtUp reports whether the consumer has applied everything on its stream
// so far: nothing pending, nothing awaiting an ack, and its ack floor at or
// past the last message its filters match. Since the runner acks only after
// its transaction commits, caught up means every effect is in Postgres.
// Demos and tests wait for it before reading projections.
//
// The answer does not rest on the server's pending counters alone: the ack
// floor must also have reached the newest message the filters match, which
// is what "everything published so far is applied" means.
func (c *Consumer) CaughtUp(ctx context.Context) (bool, error) {
	info, err := c.info(ctx)
	if err != nil {
		return false, err
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		return false, nil
	}
	last, err := c.lastMatchingSeq(ctx)
	if err != nil {
		return false, err
	}
	return info.AckFloor.Stream >= last, nil
}

// Backlog is how many messages the consumer has yet to apply: those the
// server has not delivered yet and those delivered but not acknowledged
// (the counters the backlog gauges show).
func (c *Consumer) Backlog(ctx context.Context) (int64, error) {
	info, err := c.info(ctx)
	if err != nil {
		return 0, err
	}
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

// lastMatchingSeq is the stream sequence of the newest message the
// consumer's filters match (0 when there is none).
func (c *Consumer) lastMatchingSeq(ctx context.Context) (uint64, error) {
	stream, err := c.bus.JS.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("bus: stream %s: %w", c.cfg.Stream, err)
	}
	if len(c.cfg.FilterSubjects) == 0 {
		// Stream just fetched the info: no second request.
		return stream.CachedInfo().State.LastSeq, nil
	}
	var last uint64
	for _, f := range c.cfg.FilterSubjects {
		m, err := stream.GetLastMsgForSubject(ctx, f)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("bus: last message of %s on %s: %w", f, c.cfg.Stream, err)
		}
		last = max(last, m.Sequence)
	}
	return last, nil
}

// WaitCaughtUp polls CaughtUp until it holds or ctx is done.
func (c *Consumer) WaitCaughtUp(ctx context.Context) error {
	for {
		ok, err := c.CaughtUp(ctx)
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return fmt.Errorf("bus: consumer %s not caught up: %w", c.cfg.Durable, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
