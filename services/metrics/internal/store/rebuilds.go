package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
)

// RebuildState is where a tenant's rebuilds stand (tenant_rebuilds).
type RebuildState struct {
	// Since is when the tenant's figures went partial: set by ResetTenant,
	// zero once FinishRebuild ran (or when the tenant was never rebuilt).
	Since time.Time
	// Starts counts the tenant's resets: an answer read between two
	// states with the same Starts and no Since read no rebuild's rows.
	Starts int64
}

// Rebuilding reports whether the tenant's figures are partial.
func (r RebuildState) Rebuilding() bool { return !r.Since.IsZero() }

// RebuildState reads where tenant's rebuilds stand.
func (s *Store) RebuildState(ctx context.Context, tenant string) (RebuildState, error) {
	var (
		r     RebuildState
		since *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT started_at, starts FROM tenant_rebuilds WHERE tenant = $1`, tenant).Scan(&since, &r.Starts)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read the rebuild state: %w", err)
	}
	if since != nil {
		r.Since = since.UTC()
	}
	return r, nil
}

// FinishRebuild marks tenant's rebuild done: its replay has applied every
// fact, so its figures are whole again.
func (s *Store) FinishRebuild(ctx context.Context, tenant string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE tenant_rebuilds SET started_at = NULL WHERE tenant = $1`, tenant); err != nil {
		return fmt.Errorf("mark the rebuild done: %w", err)
	}
	return nil
}

// UnfinishedRebuilds lists the tenants whose figures are partial: being
// rebuilt, or left half-way by a process that stopped.
func (s *Store) UnfinishedRebuilds(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant FROM tenant_rebuilds WHERE started_at IS NOT NULL ORDER BY tenant`)
	if err != nil {
		return nil, fmt.Errorf("list unfinished rebuilds: %w", err)
	}
	ts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list unfinished rebuilds: %w", err)
	}
	return ts, nil
}

// rebuildLockKey is the session advisory lock held by whoever runs a
// tenant's rebuild, in any replica. It is not the tenant's write lock
// (tenantLockKey), which the replay's batches take in turn.
func rebuildLockKey(tenant string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("retain-metrics-rebuild/"))
	_, _ = h.Write([]byte(tenant))
	return int64(h.Sum64())
}

// TryRebuildLock takes tenant's rebuild lock on a connection of its own,
// held until release is called. The lock belongs to the session, so it goes
// with the process: a tenant marked as being rebuilt whose lock is free has
// nobody rebuilding it (its process stopped half-way). ok is false, and
// nothing is held, when another session holds it.
func (s *Store) TryRebuildLock(ctx context.Context, tenant string) (release func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("rebuild lock: %w", err)
	}
	key := rebuildLockKey(tenant)
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, false, fmt.Errorf("rebuild lock: %w", err)
		}
		return nil, false, nil
	}
	return func() {
		// Unlocked even when the rebuild ended with its context; a
		// connection that cannot unlock is closed, which unlocks.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, true, nil
}
