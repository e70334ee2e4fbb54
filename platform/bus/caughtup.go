package bus

import (
	"context"
	"fmt"
	"time"
)

// CaughtUp reports whether the consumer has applied everything on its stream
// so far: nothing pending and nothing awaiting an ack. Since the runner acks
// only after its transaction commits, caught up means every effect is in
// Postgres. Demos and tests wait for it before reading projections.
func (c *Consumer) CaughtUp(ctx context.Context) (bool, error) {
	cons, err := c.bus.JS.Consumer(ctx, c.cfg.Stream, c.cfg.Durable)
	if err != nil {
		return false, fmt.Errorf("bus: consumer %s: %w", c.cfg.Durable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("bus: consumer %s: %w", c.cfg.Durable, err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0, nil
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
