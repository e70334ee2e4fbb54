package testenv

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
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

// DatabaseOutage makes the database of pool refuse connections and ends
// the ones it has, as a stopped or restarting server would look to a
// service, while the rest of the test cluster keeps running. The returned
// func ends the outage; cleanup ends it too if the test did not.
func DatabaseOutage(tb testing.TB, pool *pgxpool.Pool) (end func()) {
	tb.Helper()
	ctx := context.Background()
	db := pool.Config().ConnConfig.Database
	adminURL, err := pg.DatabaseURL(pool.Config().ConnString(), "postgres")
	if err != nil {
		tb.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		tb.Fatalf("connect to the cluster's postgres database: %v", err)
	}
	allow := func(on bool) {
		if _, err := admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, pgx.Identifier{db}.Sanitize(), on)); err != nil {
			tb.Fatalf("database outage: %v", err)
		}
	}
	allow(false)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db); err != nil {
		tb.Fatalf("database outage: %v", err)
	}
	var once sync.Once
	end = func() {
		once.Do(func() {
			allow(true)
			admin.Close(ctx)
		})
	}
	tb.Cleanup(end)
	return end
}
