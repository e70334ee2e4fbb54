package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
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
// fact, so its figures are whole again. The attempt's counts stay, as the
// last rebuild's.
func (s *Store) FinishRebuild(ctx context.Context, tenant string) error {
	if _, err := s.pool.Exec(ctx, `
		UPDATE tenant_rebuilds SET started_at = NULL, finished_at = now(), pending = 0, last_error = NULL, failed_at = NULL
		WHERE tenant = $1`, tenant); err != nil {
		return fmt.Errorf("mark the rebuild done: %w", err)
	}
	return nil
}

// FailRebuild records why an attempt of tenant's rebuild failed, for
// GetRebuild to say until an attempt completes it. A tenant no longer
// marked (the failure came before any reset) has no rebuild pending and
// nothing is recorded.
func (s *Store) FailRebuild(ctx context.Context, tenant string, cause error) error {
	if _, err := s.pool.Exec(ctx, `
		UPDATE tenant_rebuilds SET last_error = $2, failed_at = now()
		WHERE tenant = $1 AND started_at IS NOT NULL`, tenant, cause.Error()); err != nil {
		return fmt.Errorf("record the rebuild's failure: %w", err)
	}
	return nil
}

// RebuildProgress is how far an attempt of a rebuild has gone.
type RebuildProgress struct {
	// Replayed, Applied and Rejected are RebuildResult's, so far.
	Replayed, Applied, Rejected int64
	// Pending is how many of the tenant's facts were still on the stream
	// after the last one replayed, when known (an estimate: facts
	// arriving meanwhile count, though the replay leaves them to the live
	// consumer).
	Pending *int64
}

// RecordRebuildProgress records, in tx (a replayed batch's), how far the
// attempt of tenant's rebuild has gone with that batch applied.
func RecordRebuildProgress(ctx context.Context, tx pgx.Tx, tenant string, p RebuildProgress) error {
	if _, err := tx.Exec(ctx, `
		UPDATE tenant_rebuilds SET replayed = $2, applied = $3, rejected = $4, pending = $5, progress_at = now()
		WHERE tenant = $1`, tenant, p.Replayed, p.Applied, p.Rejected, p.Pending); err != nil {
		return fmt.Errorf("record the rebuild's progress: %w", err)
	}
	return nil
}

// RebuildStatus is what is known of a tenant's rebuild, from
// tenant_rebuilds and the holder of its rebuild lock.
type RebuildStatus struct {
	// Since is RebuildState's: when the figures went partial, zero when
	// they are whole.
	Since time.Time
	// AttemptStartedAt is when the current (or last) attempt reset the
	// tenant; zero when it was never rebuilt.
	AttemptStartedAt time.Time
	// Progress is that attempt's, as of ProgressAt.
	Progress   RebuildProgress
	ProgressAt time.Time
	// FinishedAt is when the last rebuild completed, zero while one is
	// pending.
	FinishedAt time.Time
	// LastError is why the last attempt failed, while the rebuild is
	// pending; FailedAt is when.
	LastError string
	FailedAt  time.Time
	// Holder is the session holding the tenant's rebuild lock: whoever
	// runs its rebuild. Nil when nobody does.
	Holder *pg.LockHolder
}

// Rebuilding reports whether the tenant's figures are partial.
func (s RebuildStatus) Rebuilding() bool { return !s.Since.IsZero() }

// RebuildStatus reads what is known of tenant's rebuild.
//
// The row and the lock cannot be read at one instant (pg_locks is not
// under the snapshot), so a rebuild ending between the two reads would
// look abandoned: marked, and nobody holding the lock. Its holder changes
// the row (clears the mark, or records its failure) before it lets go of
// the lock, so a marked row read again unchanged after the lock was seen
// free was left so by a process that stopped; a changed one is read again.
func (s *Store) RebuildStatus(ctx context.Context, tenant string) (RebuildStatus, error) {
	st, err := s.rebuildRow(ctx, tenant)
	for range 5 {
		if err != nil {
			return st, err
		}
		h, held, herr := pg.HolderOf(ctx, s.pool, rebuildLockKey(tenant))
		if herr != nil {
			return st, fmt.Errorf("read the rebuild status: %w", herr)
		}
		if held {
			st.Holder = &h
			return st, nil
		}
		if !st.Rebuilding() {
			return st, nil
		}
		var again RebuildStatus
		if again, err = s.rebuildRow(ctx, tenant); err == nil && again.sameRow(st) {
			return again, nil
		}
		st = again
	}
	return st, err
}

// sameRow reports whether two reads of a tenant_rebuilds row found it
// unchanged: every change sets one of these.
func (s RebuildStatus) sameRow(o RebuildStatus) bool {
	return s.Since.Equal(o.Since) && s.AttemptStartedAt.Equal(o.AttemptStartedAt) && s.ProgressAt.Equal(o.ProgressAt) &&
		s.FinishedAt.Equal(o.FinishedAt) && s.FailedAt.Equal(o.FailedAt)
}

// rebuildRow reads tenant's row of tenant_rebuilds; a tenant never
// rebuilt has none, and zero values.
func (s *Store) rebuildRow(ctx context.Context, tenant string) (RebuildStatus, error) {
	var (
		st                                           RebuildStatus
		since, attempt, progressAt, finished, failed *time.Time
		lastErr                                      *string
	)
	err := s.pool.QueryRow(ctx, `
		SELECT started_at, attempt_started_at, replayed, applied, rejected, pending, progress_at, finished_at, last_error, failed_at
		FROM tenant_rebuilds WHERE tenant = $1`, tenant).Scan(&since, &attempt,
		&st.Progress.Replayed, &st.Progress.Applied, &st.Progress.Rejected, &st.Progress.Pending, &progressAt, &finished, &lastErr, &failed)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("read the rebuild status: %w", err)
	}
	for _, f := range []struct{ from, to *time.Time }{
		{since, &st.Since}, {attempt, &st.AttemptStartedAt}, {progressAt, &st.ProgressAt}, {finished, &st.FinishedAt}, {failed, &st.FailedAt},
	} {
		if f.from != nil {
			*f.to = f.from.UTC()
		}
	}
	if lastErr != nil {
		st.LastError = *lastErr
	}
	return st, nil
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
// held until it is released. The lock belongs to the session, so it goes
// with the process: a tenant marked as being rebuilt whose lock is free has
// nobody rebuilding it (its process stopped half-way). When another session
// holds it, nothing is held and holder names that session.
func (s *Store) TryRebuildLock(ctx context.Context, tenant string) (lock *pg.SessionLock, holder *pg.LockHolder, err error) {
	lock, holder, err = pg.TrySessionLock(ctx, s.pool, rebuildLockKey(tenant))
	if err != nil {
		return nil, nil, fmt.Errorf("rebuild lock: %w", err)
	}
	return lock, holder, nil
}
