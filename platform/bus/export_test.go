package bus

import (
	"context"

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
