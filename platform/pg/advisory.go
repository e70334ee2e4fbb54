package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SessionLock is a session advisory lock held on a pool connection of its
// own. It belongs to the session, not to a transaction: it is held until
// Release, and it goes with the connection, so a process that stops (or
// loses its connection) lets it go. Other processes can tell who holds it
// (HolderOf), which is how Migrate names the replica it waits for and how a
// job left half-way is told from one still running.
type SessionLock struct {
	conn *pgxpool.Conn
	key  int64
}

// LockHolder is the session holding an advisory lock, as pg_stat_activity
// shows it. The zero value is a holder that could not be seen (gone
// meanwhile).
type LockHolder struct {
	// PID is the holder's Postgres backend process id (pg_backend_pid).
	PID int32
	// Application is the session's application_name, "" when unset.
	Application string
	// Address is the client's address, "" for a local socket or when
	// hidden (see ConnectedAt).
	Address string
	// ConnectedAt is when the session started; zero when Postgres hides
	// it, and the address, from this role (another role's session).
	ConnectedAt time.Time
}

// String names the holder for a log line or an error:
// "pid 4242 (metrics, from 10.1.2.3, connected 2026-03-02T12:00:00Z)".
func (h LockHolder) String() string {
	if h.PID == 0 {
		return "another session"
	}
	app, from := h.Application, h.Address
	if app == "" {
		app = "no application name"
	}
	if h.ConnectedAt.IsZero() {
		return "pid " + strconv.Itoa(int(h.PID)) + " (" + app + "; its address and start are hidden from this role)"
	}
	if from == "" {
		from = "a local socket"
	}
	return "pid " + strconv.Itoa(int(h.PID)) + " (" + app + ", from " + from + ", connected " + h.ConnectedAt.UTC().Format(time.RFC3339) + ")"
}

// TrySessionLock takes the session advisory lock key on a connection
// acquired from pool, when it is free. When another session holds it,
// nothing is held and the holder is returned instead (its zero value when it
// cannot be seen).
func TrySessionLock(ctx context.Context, pool *pgxpool.Pool, key int64) (*SessionLock, *LockHolder, error) {
	l, holder, err := try(ctx, pool, key)
	if err != nil || holder == nil {
		return l, nil, err
	}
	l.conn.Release()
	return nil, holder, nil
}

// WaitSessionLock takes the session advisory lock key on a connection
// acquired from pool, waiting for it until ctx is done when another session
// holds it; waiting, when not nil, is told who that is before the wait.
func WaitSessionLock(ctx context.Context, pool *pgxpool.Pool, key int64, waiting func(LockHolder)) (*SessionLock, error) {
	l, holder, err := try(ctx, pool, key)
	if err != nil || holder == nil {
		return l, err
	}
	if waiting != nil {
		waiting(*holder)
	}
	if _, err := l.conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		// A wait cut short may leave the session in any state: the
		// connection goes rather than back to the pool.
		_ = l.conn.Hijack().Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("wait for the advisory lock held by %s: %w", holder, err)
	}
	return l, nil
}

// try takes the lock on a connection of its own if it is free. When it is
// not, holder names who holds it and the connection is returned unlocked.
func try(ctx context.Context, pool *pgxpool.Pool, key int64) (l *SessionLock, holder *LockHolder, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("take advisory lock: acquire a connection: %w", err)
	}
	var free bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&free); err != nil {
		conn.Release()
		return nil, nil, fmt.Errorf("take advisory lock: %w", err)
	}
	l = &SessionLock{conn: conn, key: key}
	if free {
		return l, nil, nil
	}
	// Gone meanwhile or not to be seen: "another session".
	h, _, _ := HolderOf(ctx, conn, key)
	return l, &h, nil
}

// Conn is the connection holding the lock, for work done under it.
func (l *SessionLock) Conn() *pgx.Conn { return l.conn.Conn() }

// Release unlocks and returns the connection to the pool. It unlocks also
// when ctx is done (the work under the lock ended with it); a connection
// that cannot unlock is closed instead, which unlocks, rather than go back
// to the pool still holding the lock.
func (l *SessionLock) Release(ctx context.Context) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", l.key); err != nil {
		_ = l.conn.Hijack().Close(uctx)
		return
	}
	l.conn.Release()
}

// Querier is what reads a row: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// HolderOf names the session holding the advisory lock key in the current
// database; ok is false when none does. Of a holder this role may not
// look at (another role's session) Postgres shows the pid and application
// name only.
func HolderOf(ctx context.Context, q Querier, key int64) (h LockHolder, ok bool, err error) {
	// A bigint key is (classid, objid) = its (high, low) 32 bits, read as
	// unsigned oids.
	var (
		app, addr *string
		since     *time.Time
	)
	err = q.QueryRow(ctx, `
		SELECT l.pid, a.application_name, host(a.client_addr), a.backend_start
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND l.classid::bigint = $1 AND l.objid::bigint = $2
		LIMIT 1`,
		int64(uint64(key)>>32), int64(uint32(key))).Scan(&h.PID, &app, &addr, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return LockHolder{}, false, nil
	}
	if err != nil {
		return LockHolder{}, false, fmt.Errorf("find the advisory lock's holder: %w", err)
	}
	if app != nil {
		h.Application = *app
	}
	if addr != nil {
		h.Address = *addr
	}
	if since != nil {
		h.ConnectedAt = since.UTC()
	}
	return h, true, nil
}
