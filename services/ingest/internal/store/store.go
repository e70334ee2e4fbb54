// Package store owns the ingest service's database: the ingest log.
package store

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the ingest tables.
var Migrations = pg.MigrationSet{Component: "ingest", FS: migrationFiles, Dir: "migrations"}

// Log is the ingest log.
type Log struct {
	pool *pgxpool.Pool
}

// NewLog returns the log stored in pool's database.
func NewLog(pool *pgxpool.Pool) *Log { return &Log{pool: pool} }

// Record is the bus handler that writes the ids of a batch of facts into
// the log, in the consumer runner's transaction.
func (l *Log) Record(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ingest_log (msg_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, ids); err != nil {
		return fmt.Errorf("record %d ids in the ingest log: %w", len(ids), err)
	}
	return nil
}

// Known returns which of msgIDs are in the log.
func (l *Log) Known(ctx context.Context, msgIDs []string) (map[string]bool, error) {
	rows, err := l.pool.Query(ctx, `SELECT msg_id FROM ingest_log WHERE msg_id = ANY($1::text[])`, msgIDs)
	if err != nil {
		return nil, fmt.Errorf("look up %d ids in the ingest log: %w", len(msgIDs), err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up ids in the ingest log: %w", err)
	}
	known := make(map[string]bool, len(ids))
	for _, id := range ids {
		known[id] = true
	}
	return known, nil
}

// Prune deletes ids logged before cutoff, at most limit at a time so a large
// backlog does not hold one long transaction.
func (l *Log) Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	tag, err := l.pool.Exec(ctx, `DELETE FROM ingest_log WHERE msg_id IN (
		SELECT msg_id FROM ingest_log WHERE logged_at < $1 LIMIT $2)`, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("prune ingest log: %w", err)
	}
	return tag.RowsAffected(), nil
}
