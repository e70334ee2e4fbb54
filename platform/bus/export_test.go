package bus

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Claim is the runner's inbox claim, for tests of its lock order.
func (c *Consumer) Claim(ctx context.Context, tx pgx.Tx, ds []*Delivery) (fresh, dups []*Delivery, err error) {
	return c.claim(ctx, tx, ds)
}

// DeadLetterTx is the runner's dead-letter write, for the same tests.
func (c *Consumer) DeadLetterTx(ctx context.Context, tx pgx.Tx, ds []*Delivery) error {
	return c.deadLetter(ctx, tx, ds)
}

// SetBacklogRefresh sets how often the consumer's backlog gauges are
// refreshed, so tests need not wait 15 s for a change.
func (c *Consumer) SetBacklogRefresh(d time.Duration) { c.backlogEvery = d }

// SetBacklogRefresh is the relay's.
func (r *Relay) SetBacklogRefresh(d time.Duration) { r.backlogEvery = d }
