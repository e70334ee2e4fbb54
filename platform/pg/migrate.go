package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrationSet is one component's schema history: files named NNNN_name.sql
// (for example 0001_create_inbox.sql) at the root of FS, numbered from 1
// without gaps. Migrations only go up; a file is never edited once released.
// Each file runs in its own transaction, so statements that cannot run in a
// transaction (CREATE INDEX CONCURRENTLY) are not supported.
type MigrationSet struct {
	// Component names the owner of the tables (a service or a platform
	// package such as "bus"); versions are counted per component, so several
	// components can share one database.
	Component string
	// FS holds the .sql files, in Dir.
	FS fs.FS
	// Dir is the directory of FS holding the files ("migrations" for a
	// //go:embed migrations/*.sql); empty means its root.
	Dir string
}

// Migration is one parsed migration file.
type Migration struct {
	Version int
	Name    string // the part of the file name between NNNN_ and .sql
	File    string
	SQL     string
}

// ErrSchemaTooNew is matched (errors.Is) by the error Migrate returns when the
// database holds a migration newer than this build knows: an older binary
// must not run against a schema it does not understand (for example after a
// rollback of the deployment), so the service refuses to start.
var ErrSchemaTooNew = errors.New("database schema is newer than this build")

// SchemaTooNewError says which component is ahead and by how much.
type SchemaTooNewError struct {
	Component    string
	DBVersion    int // highest version recorded in the database
	KnownVersion int // highest version this build has a file for
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("%v: component %q is at schema version %d in the database but this build knows only up to version %d; refusing to run (deploy a build that includes migration %04d)",
		ErrSchemaTooNew, e.Component, e.DBVersion, e.KnownVersion, e.DBVersion)
}

// Is makes errors.Is(err, ErrSchemaTooNew) true.
func (e *SchemaTooNewError) Is(target error) bool { return target == ErrSchemaTooNew }

// migrationsLockKey is the pg_advisory_lock key serializing Migrate across
// every replica connected to the same database ("RETAIN" in ASCII). Advisory
// locks are scoped to one database, so services with their own databases do
// not wait for each other.
const migrationsLockKey int64 = 0x5245_5441_494E

var (
	migrationFileRE = regexp.MustCompile(`^([0-9]{4,})_([a-z0-9][a-z0-9_]*)\.sql$`)
	componentRE     = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

// Migrations parses and validates the set's files: names must match
// NNNN_name.sql (lower case), versions must start at 1 and have no gaps or
// duplicates. Files not ending in .sql (a README) and directories are ignored.
// Services can call it from a unit test to catch a bad file before any
// database is involved.
func (s MigrationSet) Migrations() ([]Migration, error) {
	if !componentRE.MatchString(s.Component) {
		return nil, fmt.Errorf("migration set component %q: must match %s", s.Component, componentRE)
	}
	if s.FS == nil {
		return nil, fmt.Errorf("migration set %s: FS is nil", s.Component)
	}
	dir := s.Dir
	if dir == "" {
		dir = "."
	}
	entries, err := fs.ReadDir(s.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("migration set %s: read migrations: %w", s.Component, err)
	}
	var (
		migs []Migration
		dirs []string
	)
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
			continue
		}
		if path.Ext(e.Name()) != ".sql" {
			continue
		}
		m := migrationFileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration set %s: file %q: name must look like 0001_create_things.sql (4+ digit version, lower-case name)", s.Component, e.Name())
		}
		version, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("migration set %s: file %q: version: %w", s.Component, e.Name(), err)
		}
		body, err := fs.ReadFile(s.FS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migration set %s: read %s: %w", s.Component, e.Name(), err)
		}
		if strings.TrimSpace(string(body)) == "" {
			return nil, fmt.Errorf("migration set %s: file %q is empty", s.Component, e.Name())
		}
		migs = append(migs, Migration{Version: version, Name: m[2], File: e.Name(), SQL: string(body)})
	}
	if len(migs) == 0 {
		hint := ""
		if len(dirs) > 0 {
			hint = fmt.Sprintf(" (found directories %v: use fs.Sub to point FS at the one holding the .sql files)", dirs)
		}
		return nil, fmt.Errorf("migration set %s: no .sql files at the root of FS%s", s.Component, hint)
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].Version < migs[j].Version })
	for i, m := range migs {
		want := i + 1
		switch {
		case m.Version < want:
			return nil, fmt.Errorf("migration set %s: version %04d is used twice (%s and %s)", s.Component, m.Version, migs[i-1].File, m.File)
		case m.Version > want:
			return nil, fmt.Errorf("migration set %s: version %04d is missing (next file is %s); versions start at 0001 and have no gaps", s.Component, want, m.File)
		}
	}
	return migs, nil
}

// Migrate brings every set's schema up to date. It holds a Postgres advisory
// lock for the whole run, so replicas starting together migrate one after the
// other and the later ones find nothing left to do. Each file is applied in
// its own transaction together with its row in retain_schema_migrations, so a
// failing file leaves no trace and the next start retries it. Before applying
// anything Migrate checks every set and refuses (ErrSchemaTooNew) when the
// database is ahead of this build. log (nil: none) says when the lock is
// waited for and by whom it is held, and which files were applied: a start
// queued behind another replica's long migration is otherwise silent.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, sets ...MigrationSet) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	plans := make([][]Migration, len(sets))
	seen := make(map[string]bool, len(sets))
	for i, s := range sets {
		if seen[s.Component] {
			return fmt.Errorf("migrate: component %q is listed twice", s.Component)
		}
		seen[s.Component] = true
		migs, err := s.Migrations()
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		plans[i] = migs
	}

	var waitFrom time.Time
	lock, err := WaitSessionLock(ctx, pool, migrationsLockKey, func(holder LockHolder) {
		waitFrom = time.Now()
		log.Info("waiting for the migration lock: another process is migrating this database", "holder", holder.String())
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !waitFrom.IsZero() {
		log.Info("migration lock taken", "waited", time.Since(waitFrom).Round(time.Millisecond))
	}
	defer lock.Release(ctx)
	conn := lock.Conn()

	// Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can
	// still fail on the catalog's unique index.
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS retain_schema_migrations (
	component  text        NOT NULL,
	version    integer     NOT NULL,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (component, version)
)`); err != nil {
		return fmt.Errorf("migrate: create retain_schema_migrations: %w", err)
	}

	applied := make([]map[int]string, len(sets))
	for i, s := range sets {
		got, err := appliedVersions(ctx, conn, s.Component)
		if err != nil {
			return err
		}
		if err := checkApplied(s.Component, plans[i], got); err != nil {
			return err
		}
		applied[i] = got
	}

	for i, s := range sets {
		for _, m := range plans[i] {
			if _, done := applied[i][m.Version]; done {
				continue
			}
			start := time.Now()
			if err := applyMigration(ctx, conn, s.Component, m); err != nil {
				return err
			}
			log.Info("migration applied", "component", s.Component, "file", m.File, "duration", time.Since(start).Round(time.Millisecond))
		}
	}
	return nil
}

func appliedVersions(ctx context.Context, conn *pgx.Conn, component string) (map[int]string, error) {
	rows, err := conn.Query(ctx, "SELECT version, name FROM retain_schema_migrations WHERE component = $1", component)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: read applied versions: %w", component, err)
	}
	got := make(map[int]string)
	var (
		version int
		name    string
	)
	_, err = pgx.ForEachRow(rows, []any{&version, &name}, func() error {
		got[version] = name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate %s: read applied versions: %w", component, err)
	}
	return got, nil
}

// checkApplied refuses a database that is ahead of the files, or whose
// history disagrees with them (a file renamed or renumbered after release,
// usually two branches that picked the same number).
func checkApplied(component string, migs []Migration, applied map[int]string) error {
	known := migs[len(migs)-1].Version
	highest := 0
	for v := range applied {
		highest = max(highest, v)
	}
	if highest > known {
		return &SchemaTooNewError{Component: component, DBVersion: highest, KnownVersion: known}
	}
	for _, m := range migs {
		if name, ok := applied[m.Version]; ok && name != m.Name {
			return fmt.Errorf("migrate %s: version %04d was applied as %q but the file is now %s; released migrations must not be renamed or renumbered",
				component, m.Version, name, m.File)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, conn *pgx.Conn, component string, m Migration) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %s: begin: %w", component, m.File, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// No arguments: pgx sends the file with the simple protocol, which allows
	// several statements in one call.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return fmt.Errorf("migrate %s: apply %s: %w", component, m.File, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO retain_schema_migrations (component, version, name) VALUES ($1, $2, $3)",
		component, m.Version, m.Name); err != nil {
		return fmt.Errorf("migrate %s: record %s: %w", component, m.File, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %s: commit %s: %w", component, m.File, err)
	}
	return nil
}
