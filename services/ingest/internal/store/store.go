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
	"github.com/retainhq/retain/services/ingest/event"
	"github.com/retainhq/retain/services/ingest/internal/commit"
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
// the log, in the consumer runner's transaction, with what each was used
// for: its content fingerprint, type and when the stream stored it.
func (l *Log) Record(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	ids := make([]string, len(ds))
	fps := make([]string, len(ds))
	types := make([]string, len(ds))
	at := make([]*time.Time, len(ds))
	for i, d := range ds {
		ids[i], types[i] = d.ID, d.Type
		if !d.Timestamp.IsZero() {
			at[i] = &d.Timestamp
		}
		fps[i] = event.StoredFingerprint(d.Header.Get(event.HeaderFingerprint), d.Data)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ingest_log (msg_id, fingerprint, event_type, accepted_at)
		SELECT id, NULLIF(fp, ''), NULLIF(type, ''), at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS r(id, fp, type, at)
		ON CONFLICT DO NOTHING`, ids, fps, types, at); err != nil {
		return fmt.Errorf("record %d ids in the ingest log: %w", len(ids), err)
	}
	return nil
}

// Known returns which of msgIDs are in the log and what each was used for.
// Ids logged before fingerprints were have an empty Entry.Fingerprint.
func (l *Log) Known(ctx context.Context, msgIDs []string) (map[string]commit.Entry, error) {
	rows, err := l.pool.Query(ctx, `SELECT msg_id, coalesce(fingerprint, ''), coalesce(event_type, ''), accepted_at
		FROM ingest_log WHERE msg_id = ANY($1::text[])`, msgIDs)
	if err != nil {
		return nil, fmt.Errorf("look up %d ids in the ingest log: %w", len(msgIDs), err)
	}
	defer rows.Close()
	known := make(map[string]commit.Entry)
	for rows.Next() {
		var id string
		var e commit.Entry
		var at *time.Time
		if err := rows.Scan(&id, &e.Fingerprint, &e.Type, &at); err != nil {
			return nil, fmt.Errorf("look up ids in the ingest log: %w", err)
		}
		if at != nil {
			e.AcceptedAt = *at
		}
		known[id] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up ids in the ingest log: %w", err)
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
