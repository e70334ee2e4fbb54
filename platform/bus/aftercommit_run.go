package bus

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/pg"
)

// InHandlerTx runs fn in one transaction of pool the way the consumer
// runner runs a handler: AfterCommit accepts hooks in the ctx fn is given,
// calls them once the transaction has committed and drops them when it
// rolls back.
//
// It is for a service's own path that runs its handler's work outside a
// runner (a rebuild replaying the stream): without it AfterCommit refuses
// there, and what the handler keeps outside the database (a cache of the
// rows it wrote) falls behind those writes.
func InHandlerTx(ctx context.Context, pool *pgxpool.Pool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, hooks := withCommitHooks(ctx)
	err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		hooks.reset()
		return fn(ctx, tx)
	})
	if err != nil {
		return err
	}
	hooks.run()
	return nil
}
