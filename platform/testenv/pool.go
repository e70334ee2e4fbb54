package testenv

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	pool, err := pg.Connect(ctx, Postgres(tb), 16, "retain-test")
	if err != nil {
		tb.Fatalf("connect postgres: %v", err)
	}
	tb.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, nil, append([]pg.MigrationSet{bus.Migrations}, sets...)...); err != nil {
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

// Concurrently runs each fn in its own goroutine for rounds rounds (fn is
// given the round) and fails the test with the first error: two writers
// meeting the same rows at once, as two consumers or replicas do. Tests of
// lock order use it: one fn taking rows in another order than the other
// deadlocks (SQLSTATE 40P01) within a few rounds.
func Concurrently(tb testing.TB, rounds int, fns ...func(round int) error) {
	tb.Helper()
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() {
			for r := range rounds {
				if err := fn(r); err != nil {
					errs <- fmt.Errorf("round %d: %w", r, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range fns {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
}

// ConcurrentTx is Concurrently with each round of each fn in its own
// transaction on pool.
func ConcurrentTx(tb testing.TB, pool *pgxpool.Pool, rounds int, fns ...func(tx pgx.Tx, round int) error) {
	tb.Helper()
	inTx := make([]func(int) error, len(fns))
	for i, fn := range fns {
		inTx[i] = func(r int) error {
			return pg.InTx(context.Background(), pool, func(tx pgx.Tx) error { return fn(tx, r) })
		}
	}
	Concurrently(tb, rounds, inTx...)
}

// ReadsWhileWrites runs write(1), write(2), ... in a goroutine while
// read(0), read(1), ... run in the test's, until at least reads reads and
// writes writes are done: tests that a read made of several statements
// sees one state of what each write commits whole. The first error of
// either ends both and fails the test; a write's is seen before the next
// read, so a broken writer cannot leave the reads spinning.
func ReadsWhileWrites(tb testing.TB, reads, writes int, write func(i int) error, read func(r int) error) {
	tb.Helper()
	var written atomic.Int64
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				wrote <- nil
				return
			default:
			}
			if err := write(i); err != nil {
				wrote <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			written.Store(int64(i))
		}
	}()
	finish := func() error {
		close(stop)
		return <-wrote
	}
	for r := 0; r < reads || written.Load() < int64(writes); r++ {
		select {
		case err := <-wrote: // the writer ended on its own: an error
			tb.Fatal(err)
		default:
		}
		if err := read(r); err != nil {
			_ = finish()
			tb.Fatalf("read %d: %v", r, err)
		}
	}
	if err := finish(); err != nil {
		tb.Fatal(err)
	}
}
