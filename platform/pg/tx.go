package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InTx runs fn in a transaction: committed when fn returns nil, rolled back
// when it returns an error (which InTx returns unchanged, so callers can match
// it with errors.Is/As) or panics (the panic is re-raised after the rollback,
// so the connection goes back to the pool clean).
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return InTxWith(ctx, pool, pgx.TxOptions{}, fn)
}

// InTxWith is InTx with the transaction begun by opts (see IdleBounded).
//
// An error that comes with the transaction's connection failing (it could
// not be opened, or it broke while the transaction ran: the server
// restarted or crashed, the backend was terminated, the link dropped) also
// matches ErrConnectionFailed; its text is unchanged.
func InTxWith(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		if Unreachable(err) {
			err = connectionFailed{err}
		}
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", brokenConn(ctx, conn, err))
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		// The rollback must run even when ctx is already canceled (a canceled
		// ctx is a common reason fn failed); its own error adds nothing to
		// fn's error or panic.
		_ = tx.Rollback(context.WithoutCancel(ctx))
	}()

	if err := fn(tx); err != nil {
		return brokenConn(ctx, conn, err)
	}
	committed = true
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", brokenConn(ctx, conn, err))
	}
	return nil
}

// ErrConnectionFailed is matched (errors.Is) by the error of a
// transaction (InTx, InTxWith) whose connection failed: not the
// statements' fault, and the database may well answer the next one on
// another connection (a restart, a crash's recovery or a terminated
// backend leaves broken connections in the pool). A consumer retries such
// a batch without spending a delivery (decision 0052).
var ErrConnectionFailed = errors.New("database connection failed")

// connectionFailed keeps err's text and adds ErrConnectionFailed to what
// it matches.
type connectionFailed struct{ err error }

func (e connectionFailed) Error() string   { return e.err.Error() }
func (e connectionFailed) Unwrap() []error { return []error{e.err, ErrConnectionFailed} }

// brokenConn marks err as a connection failure when conn closed with it.
// pgx closes a connection on any failure to talk to the server, and on a
// FATAL error from it. Not counted: the caller's own cancellation or
// deadline (pgx closes the connection it interrupts) and the server
// ending a session that idled in its transaction past its limit
// (IdleBounded): the client stalled, not the database.
func brokenConn(ctx context.Context, conn *pgxpool.Conn, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || !conn.Conn().IsClosed() {
		return err
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "25P03" { // idle_in_transaction_session_timeout
		return err
	}
	return connectionFailed{err}
}

// IdleBounded begins a read-committed transaction that the server ends,
// with the session it runs on, once it has waited longer than limit for
// the client's next statement (idle_in_transaction_session_timeout, set
// LOCAL: the connection goes back to the pool without it). A client that
// froze or lost its link with the transaction open (a paused VM, a long
// stall, a partition) then holds its locks no longer than limit, however
// long the TCP connection takes to be noticed dead. It costs nothing per
// transaction: the setting travels in the BEGIN's round trip. The time a
// statement runs does not count, only the waits between statements.
func IdleBounded(limit time.Duration) pgx.TxOptions {
	if limit <= 0 {
		return pgx.TxOptions{}
	}
	ms := max(limit.Milliseconds(), 1)
	return pgx.TxOptions{BeginQuery: fmt.Sprintf("BEGIN; SET LOCAL idle_in_transaction_session_timeout = %d", ms)}
}

// InSnapshot runs fn in a read-only repeatable-read transaction: every
// statement of fn sees one state of the database, so figures read by
// several statements add up (never half of a batch applied meanwhile).
func InSnapshot(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit snapshot: %w", err)
	}
	return nil
}
