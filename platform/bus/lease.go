package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nuid"

	"github.com/retainhq/retain/platform/pg"
)

// DefaultLeaseTTL is how long an exclusive consumer's lease lasts without
// a renewal: the longest a holder that stopped renewing keeps the others
// waiting while its database session lives on (a stalled process, a node
// gone without closing its connections), also when it froze inside a
// batch: the server ends a batch transaction idle that long. A holder that
// died with its session is taken over within a poll.
const DefaultLeaseTTL = 15 * time.Second

// lease is a named lease in Postgres (bus_leases), held by one holder at a
// time until it lapses, is released, or the holder's session ends.
type lease struct {
	pool   *pgxpool.Pool
	name   string
	holder string
	ttl    time.Duration
	// session is the connection the lease was taken and is renewed on,
	// kept while it is held: its backend pid is in the lease row, and a
	// holder whose process died has no session, so the others take the
	// lease over without waiting for it to lapse. Only hold's goroutine
	// uses it.
	session *pgxpool.Conn
	// outage logs the database going away (and coming back) once, not
	// once a poll or renewal.
	outage *pg.OutageLog
	// recheck asks hold for a renewal at once: a batch was fenced out, or
	// is waiting for a renewal to run again (see renewedAfter).
	recheck chan struct{}

	mu sync.Mutex
	// renewed is when the last renewal (or take) that succeeded started.
	renewed time.Time
}

func newLease(pool *pgxpool.Pool, name string, ttl time.Duration, log *slog.Logger) *lease {
	host, _ := os.Hostname()
	return &lease{
		pool: pool, name: name, holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), nuid.Next()), ttl: ttl,
		outage:  pg.NewOutageLog(log, "consumer lease", pool.Ping),
		recheck: make(chan struct{}, 1),
	}
}

// confirmed records a renewal that succeeded, started at start.
func (l *lease) confirmed(start time.Time) {
	l.mu.Lock()
	l.renewed = start
	l.mu.Unlock()
	l.outage.Answered()
}

// renewedAfter reports whether a renewal that started after t has
// succeeded, asking hold for one if not. A batch that failed at t (the
// database away, or fenced out) runs again only then: it runs on a lease
// known to be this holder's after it failed, whatever happened meanwhile.
func (l *lease) renewedAfter(t time.Time) bool {
	l.mu.Lock()
	ok := l.renewed.After(t)
	l.mu.Unlock()
	if !ok {
		select {
		case l.recheck <- struct{}{}:
		default:
		}
	}
	return ok
}

// databaseAway reports whether err, a failed take, failed because the
// database is away (it does not answer a ping), rather than because the
// lease is held or a statement failed.
func (l *lease) databaseAway(ctx context.Context, err error) bool {
	if errors.Is(err, errLeaseHeld) || ctx.Err() != nil {
		return false
	}
	return pg.Away(ctx, err, l.pool.Ping)
}

var (
	// errLeaseHeld: another holder's lease has not lapsed.
	errLeaseHeld = errors.New("lease held by another process")
	// errLeaseLost: the holder stopped because the lease may have passed
	// to another.
	errLeaseLost = errors.New("lease lost")
)

// take takes the lease for a process not holding it (free, lapsed, its
// holder's session gone, or already this holder's) on a session of its
// own, kept while the lease is held; it fails with errLeaseHeld while
// another holder's has neither lapsed nor lost its session. On failure the
// session goes back to the pool: a process standing by keeps no
// connection.
//
// A session that ends while its process lives (a pooler recycling server
// connections, a dropped link) lets another take over early: safe, as the
// holder's batches are fenced and its next renewal is refused. A pid the
// server has reused for another session keeps the lease to its expiry.
//
// The upsert sets holder, a key column of the row (bus migration 0005), so
// it locks the row FOR UPDATE: it waits for the holder's batches in flight
// (the fence), which a takeover must. It waits at most lockWait for them
// and reports errLeaseHeld past it: the poll loop never blocks on a batch
// in flight, a stuck session or an operator's open transaction, and tries
// again at the next poll.
func (l *lease) take(ctx context.Context, lockWait time.Duration) error {
	timeout := strconv.FormatInt(max(lockWait.Milliseconds(), 1), 10)
	// set_config(..., true) lasts for this statement's own transaction
	// only, so the session keeps no lock_timeout; it runs before the
	// insert meets the row.
	err := l.onSession(ctx, `
		INSERT INTO bus_leases AS l (name, holder, expires_at, holder_pid)
		SELECT $1, $2, now() + make_interval(secs => $3), pg_backend_pid()
		FROM set_config('lock_timeout', $4, true)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, holder_pid = excluded.holder_pid
			WHERE l.holder = excluded.holder OR l.expires_at < now()
				OR (l.holder_pid IS NOT NULL AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = l.holder_pid))
		RETURNING holder`, l.name, l.holder, l.ttl.Seconds(), timeout)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "55P03" {
		// The holder's batches (or renewal) hold the row: it is held.
		return errLeaseHeld
	}
	return err
}

// extend renews the lease while the row names this holder, on the
// holder's session (a new one if the last broke, which the row then
// records); errLeaseHeld if it no longer does (another process took it).
// It changes expires_at and holder_pid only, so it locks the row FOR NO
// KEY UPDATE, which the holder's own batches' fences (FOR KEY SHARE) do
// not block: it waits for no batch, however long, nor for a contender
// queued behind them (decision 0036). It waits as long as ctx allows for
// a takeover or release in progress, which ends in a round trip.
func (l *lease) extend(ctx context.Context) error {
	return l.onSession(ctx, `
		UPDATE bus_leases SET expires_at = now() + make_interval(secs => $3), holder_pid = pg_backend_pid()
		WHERE name = $1 AND holder = $2
		RETURNING holder`, l.name, l.holder, l.ttl.Seconds())
}

// onSession runs a statement returning the lease's holder on the holder's
// session, taking one from the pool if it has none, and gives the session
// back on failure. No row is errLeaseHeld.
func (l *lease) onSession(ctx context.Context, sql string, args ...any) error {
	if l.session == nil {
		c, err := l.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("bus: lease %s: %w", l.name, err)
		}
		l.session = c
	}
	var holder string
	err := l.session.QueryRow(ctx, sql, args...).Scan(&holder)
	if err == nil {
		return nil
	}
	l.endSession()
	if errors.Is(err, pgx.ErrNoRows) {
		return errLeaseHeld
	}
	return fmt.Errorf("bus: lease %s: %w", l.name, err)
}

// currentHolder names the holder the lease row records now, for a log
// line ("" if it cannot be read: a plain read waits on no row lock).
func (l *lease) currentHolder(ctx context.Context) string {
	var holder string
	_ = l.pool.QueryRow(ctx, `SELECT holder FROM bus_leases WHERE name = $1`, l.name).Scan(&holder)
	return holder
}

// endSession gives the holder's session back to the pool (which closes it
// if it broke).
func (l *lease) endSession() {
	if l.session != nil {
		l.session.Release()
		l.session = nil
	}
}

// fence locks the lease row FOR KEY SHARE in tx if this holder's lease is
// current, and fails with errLeaseLost otherwise. Every batch of an
// exclusive consumer starts with it: a takeover (a change of holder, a key
// column of the row: bus migration 0005) locks the row FOR UPDATE, so it
// waits for the batches in flight, and a batch that starts after it finds
// the lease gone, so two processes never apply batches at once. The
// holder's renewals change no key column and take a lock this one does not
// conflict with: they never wait for its batches (decision 0036). A holder
// that froze mid-batch does not keep the takeover waiting past its lease:
// the server ends a batch idle for LeaseTTL (batchIdleLimit).
func (l *lease) fence(ctx context.Context, tx pgx.Tx) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM bus_leases WHERE name = $1 AND holder = $2 AND expires_at > now() FOR KEY SHARE`,
		l.name, l.holder).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("bus: %w: %s is no longer held by this process", errLeaseLost, l.name)
	}
	if err != nil {
		return fmt.Errorf("bus: lease %s: %w", l.name, err)
	}
	return nil
}

// release gives the lease up at once (a clean shutdown), so that another
// process need not wait for it to lapse.
func (l *lease) release(ctx context.Context) error {
	if _, err := l.pool.Exec(ctx, `DELETE FROM bus_leases WHERE name = $1 AND holder = $2`, l.name, l.holder); err != nil {
		return fmt.Errorf("bus: release lease %s: %w", l.name, err)
	}
	return nil
}

// hold runs fn while this process holds the lease: it waits for the lease
// (trying every poll), calls fn with a context cancelled as soon as the
// lease may have passed to another process (with cause errLeaseLost), and
// starts over when fn returns before ctx is done. It returns when ctx is
// done, releasing the lease.
//
// onState hears of each change: the lease taken (held, nil err), refused
// (errLeaseHeld) or lost, or a failure that is no database outage. An
// outage is logged once when it starts and once when it ends.
func (l *lease) hold(ctx context.Context, poll time.Duration, onState func(held bool, err error), fn func(context.Context)) {
	refused, away := false, false
	for ctx.Err() == nil {
		if away {
			// The holder, if there is one, holds its batches through the
			// outage and renews within a poll of the database answering
			// (renew). Taking the lease first would make it hand them
			// back, a delivery spent on each message: so wait for the
			// database to answer, and two polls more, before contending.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := l.pool.Ping(pctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					l.outage.Failed(err, "holder", l.holder)
				}
				if sleepCtx(ctx, poll) != nil {
					break
				}
				continue
			}
			away = false
			l.outage.Answered()
			if sleepCtx(ctx, 2*poll) != nil {
				break
			}
		}
		start := time.Now()
		err := l.take(ctx, poll)
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case l.databaseAway(ctx, err):
				l.outage.Failed(err, "holder", l.holder)
				away = true
			default:
				l.outage.Answered()
				if !(refused && errors.Is(err, errLeaseHeld)) {
					onState(false, err)
				}
			}
			refused = errors.Is(err, errLeaseHeld)
			if sleepCtx(ctx, poll) != nil {
				break
			}
			continue
		}
		refused = false
		l.confirmed(start)
		onState(true, nil)
		hctx, cancel := context.WithCancelCause(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			fn(hctx)
		}()
		if err := l.renew(ctx, poll, start, done); err != nil {
			onState(false, err)
		}
		cancel(errLeaseLost)
		<-done
		l.endSession()
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := l.release(rctx); err != nil {
		onState(false, err)
	}
}

// renew renews the lease taken at start until fn ends (done), ctx is done
// (nil), or the lease may have passed to another process (an error
// wrapping errLeaseLost): a renewal refused, or none confirmed for two
// thirds of the ttl while the database answers.
//
// The lease is safe until two thirds of the ttl after the start of the
// last renewal that succeeded: it lapses a whole ttl after the database
// ran that renewal, which came after start. A renewal that failed is
// tried again within a second, while the lease is still safe.
//
// Past that, while the database does not answer, fn keeps running and
// renewals are tried every poll: the workers' batches fail and are held
// (decision 0018). Nobody can take the lease over while the database is
// away for every process, so when it answers the holder renews it and
// applies its held batches, spending none of their attempts. Should
// another process have taken it (only this holder was cut off, or it
// got there first), nothing was lost: no batch commits unfenced, a held
// batch runs again only after a renewal that started after it failed
// (renewedAfter), and the renewal refused ends fn, which hands the
// batches back (decision 0025).
func (l *lease) renew(ctx context.Context, poll time.Duration, start time.Time, done <-chan struct{}) error {
	renewEvery := l.ttl / 3
	safeUntil, wait, away := start.Add(2*l.ttl/3), renewEvery, false
	for {
		next := wait
		if !away {
			next = min(wait, time.Until(safeUntil))
		}
		t := time.NewTimer(next)
		select {
		case <-done:
			t.Stop()
			return nil
		case <-l.recheck:
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			return nil
		}
		start := time.Now()
		deadline := safeUntil
		if !start.Before(deadline) {
			deadline = start.Add(renewEvery)
		}
		rctx, rcancel := context.WithDeadline(ctx, deadline)
		err := l.extend(rctx)
		rcancel()
		switch {
		case err == nil:
			l.confirmed(start)
			safeUntil, wait, away = start.Add(2*l.ttl/3), renewEvery, false
		case errors.Is(err, errLeaseHeld):
			l.outage.Answered()
			return fmt.Errorf("%w: another process took it", errLeaseLost)
		case time.Now().Before(safeUntil):
			wait = min(renewEvery, time.Second)
		case l.databaseAway(ctx, err):
			l.outage.Failed(err, "holder", l.holder)
			wait, away = min(renewEvery, poll), true
		case ctx.Err() != nil:
			return nil
		default:
			return fmt.Errorf("%w: no renewal confirmed in %s: %w", errLeaseLost, 2*l.ttl/3, err)
		}
	}
}
