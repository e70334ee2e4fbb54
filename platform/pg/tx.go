package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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
func InTxWith(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
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
		return err
	}
	committed = true
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
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
