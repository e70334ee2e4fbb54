package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
)

// MigratedPool returns a pool on a fresh test database (Postgres) with the
// bus tables (inbox, dead letters, outbox) and sets migrated, as a
// service's start-up leaves it; the pool closes at cleanup. It opens up to
// 16 connections, as many as a service's consumers, relay and scheduler
// may hold at once (connections open when first used).
func MigratedPool(tb testing.TB, sets ...pg.MigrationSet) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	pool, err := pg.Connect(ctx, Postgres(tb), 16)
	if err != nil {
		tb.Fatalf("connect postgres: %v", err)
	}
	tb.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, append([]pg.MigrationSet{bus.Migrations}, sets...)...); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return pool
}
