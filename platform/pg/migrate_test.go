package pg_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func files(kv ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = &fstest.MapFile{Data: []byte(kv[i+1])}
	}
	return m
}

func TestMigrationSetMigrations(t *testing.T) {
	tests := []struct {
		name    string
		set     pg.MigrationSet
		want    []int
		wantErr string
	}{
		{
			name: "sorts files by version and ignores non-sql files",
			set: pg.MigrationSet{Component: "bus", FS: files(
				"0002_b.sql", "SELECT 2", "0001_a.sql", "SELECT 1", "README.md", "notes")},
			want: []int{1, 2},
		},
		{
			name: "accepts versions wider than four digits",
			set:  pg.MigrationSet{Component: "bus", FS: files("00001_a.sql", "SELECT 1")},
			want: []int{1},
		},
		{
			name:    "rejects a file name without a version",
			set:     pg.MigrationSet{Component: "bus", FS: files("create.sql", "SELECT 1")},
			wantErr: `file "create.sql": name must look like`,
		},
		{
			name:    "rejects a three digit version",
			set:     pg.MigrationSet{Component: "bus", FS: files("001_a.sql", "SELECT 1")},
			wantErr: `file "001_a.sql"`,
		},
		{
			name:    "rejects upper case names",
			set:     pg.MigrationSet{Component: "bus", FS: files("0001_Create.sql", "SELECT 1")},
			wantErr: `file "0001_Create.sql"`,
		},
		{
			name:    "rejects a duplicate version",
			set:     pg.MigrationSet{Component: "bus", FS: files("0001_a.sql", "SELECT 1", "0001_b.sql", "SELECT 1")},
			wantErr: "version 0001 is used twice (0001_a.sql and 0001_b.sql)",
		},
		{
			name:    "rejects a gap",
			set:     pg.MigrationSet{Component: "bus", FS: files("0001_a.sql", "SELECT 1", "0003_c.sql", "SELECT 1")},
			wantErr: "version 0002 is missing (next file is 0003_c.sql)",
		},
		{
			name:    "rejects versions not starting at one",
			set:     pg.MigrationSet{Component: "bus", FS: files("0002_b.sql", "SELECT 1")},
			wantErr: "version 0001 is missing",
		},
		{
			name:    "rejects an empty file",
			set:     pg.MigrationSet{Component: "bus", FS: files("0001_a.sql", " \n")},
			wantErr: `file "0001_a.sql" is empty`,
		},
		{
			name:    "rejects a set without files and points at fs.Sub",
			set:     pg.MigrationSet{Component: "bus", FS: files("migrations/0001_a.sql", "SELECT 1")},
			wantErr: "use fs.Sub",
		},
		{
			name:    "rejects an empty component",
			set:     pg.MigrationSet{FS: files("0001_a.sql", "SELECT 1")},
			wantErr: `component ""`,
		},
		{
			name:    "rejects a nil FS",
			set:     pg.MigrationSet{Component: "bus"},
			wantErr: "FS is nil",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			migs, err := tt.set.Migrations()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			var got []int
			for _, m := range migs {
				got = append(got, m.Version)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("versions = %v, want %v", got, tt.want)
			}
		})
	}
}

func connect(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pg.Connect(context.Background(), url, 0, "")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// untilLockWaiters returns once n sessions of pool's database wait for an
// advisory lock (or after a hang guard, leaving the test to fail on what
// follows): the test ends or lifts a wait once it is under way, not after
// a sleep that a loaded machine can outlast. It runs beside the test too,
// so it does not fail it itself.
func untilLockWaiters(pool *pgxpool.Pool, n int) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var waiting int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting)
		if err == nil && waiting == n {
			return
		}
	}
}

type appliedRow struct {
	Version int
	Name    string
}

func applied(t *testing.T, pool *pgxpool.Pool, component string) []appliedRow {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		"SELECT version, name FROM retain_schema_migrations WHERE component = $1 ORDER BY version", component)
	if err != nil {
		t.Fatalf("query applied migrations: %v", err)
	}
	defer rows.Close()
	var got []appliedRow
	for rows.Next() {
		var r appliedRow
		if err := rows.Scan(&r.Version, &r.Name); err != nil {
			t.Fatalf("scan: %v", err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("rows: %v", err)
	}
	return got
}

func count(t *testing.T, pool *pgxpool.Pool, query string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Not idempotent on purpose: applying a file twice fails or double-counts.
var widgets = files(
	"0001_create_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);\nCREATE TABLE applications (n int);\nINSERT INTO applications VALUES (1);",
	"0002_add_widget_name.sql", "ALTER TABLE widgets ADD COLUMN name text NOT NULL DEFAULT '';\nINSERT INTO applications VALUES (2);",
)

func TestMigrate(t *testing.T) {
	ctx := context.Background()

	t.Run("applies every file once and records it", func(t *testing.T) {
		pool := connect(t, testenv.Postgres(t))
		if err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "widgets", FS: widgets}); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		want := []appliedRow{{1, "create_widgets"}, {2, "add_widget_name"}}
		if got := applied(t, pool, "widgets"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("applied = %v, want %v", got, want)
		}
		if _, err := pool.Exec(ctx, "INSERT INTO widgets (id, name) VALUES (1, 'a')"); err != nil {
			t.Fatalf("schema not in place: %v", err)
		}
	})

	t.Run("running again changes nothing and later files apply alone", func(t *testing.T) {
		pool := connect(t, testenv.Postgres(t))
		set := pg.MigrationSet{Component: "widgets", FS: widgets}
		for i := range 3 {
			if err := pg.Migrate(ctx, pool, nil, set); err != nil {
				t.Fatalf("migrate run %d: %v", i+1, err)
			}
		}
		if n := count(t, pool, "SELECT count(*) FROM applications"); n != 2 {
			t.Fatalf("files applied %d times in total, want 2", n)
		}

		next := fstest.MapFS{"0003_widget_color.sql": {Data: []byte("ALTER TABLE widgets ADD COLUMN color text;\nINSERT INTO applications VALUES (3);")}}
		for k, v := range widgets {
			next[k] = v
		}
		if err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "widgets", FS: next}); err != nil {
			t.Fatalf("migrate with a new file: %v", err)
		}
		if n := count(t, pool, "SELECT count(*) FROM applications"); n != 3 {
			t.Fatalf("files applied %d times in total, want 3", n)
		}
	})

	t.Run("concurrent replicas apply each file once", func(t *testing.T) {
		url := testenv.Postgres(t)
		const replicas = 4
		pools := make([]*pgxpool.Pool, replicas)
		for i := range pools {
			pools[i] = connect(t, url)
		}
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, pool := range pools {
			wg.Go(func() {
				<-start
				errs[i] = pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "widgets", FS: widgets})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		}
		if n := count(t, pools[0], "SELECT count(*) FROM applications"); n != 2 {
			t.Fatalf("files applied %d times in total, want 2", n)
		}
		if n := count(t, pools[0], "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"); n != 0 {
			t.Fatalf("%d advisory locks still held after Migrate", n)
		}
	})

	t.Run("refuses a database schema newer than the code", func(t *testing.T) {
		pool := connect(t, testenv.Postgres(t))
		three := fstest.MapFS{"0003_widget_color.sql": {Data: []byte("ALTER TABLE widgets ADD COLUMN color text;")}}
		for k, v := range widgets {
			three[k] = v
		}
		if err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "widgets", FS: three}); err != nil {
			t.Fatalf("migrate newer build: %v", err)
		}

		err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "widgets", FS: widgets})
		if !errors.Is(err, pg.ErrSchemaTooNew) {
			t.Fatalf("err = %v, want ErrSchemaTooNew", err)
		}
		tooNew, ok := errors.AsType[*pg.SchemaTooNewError](err)
		if !ok {
			t.Fatalf("err = %T, want *SchemaTooNewError", err)
		}
		if tooNew.Component != "widgets" || tooNew.DBVersion != 3 || tooNew.KnownVersion != 2 {
			t.Fatalf("err = %+v, want widgets at 3, known 2", tooNew)
		}
		for _, want := range []string{`"widgets"`, "version 3", "up to version 2"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not mention %s", err.Error(), want)
			}
		}
	})

	t.Run("a failing file leaves nothing half applied", func(t *testing.T) {
		pool := connect(t, testenv.Postgres(t))
		broken := files(
			"0001_ok.sql", "CREATE TABLE first (id int);",
			"0002_broken.sql", "CREATE TABLE second (id int);\nINSERT INTO second VALUES (1);\nSELECT 1/0;",
		)
		err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "half", FS: broken})
		if err == nil || !strings.Contains(err.Error(), "0002_broken.sql") {
			t.Fatalf("err = %v, want a failure naming 0002_broken.sql", err)
		}
		if got := applied(t, pool, "half"); fmt.Sprint(got) != fmt.Sprint([]appliedRow{{1, "ok"}}) {
			t.Fatalf("applied = %v, want only 0001", got)
		}
		if n := count(t, pool, "SELECT count(*) FROM pg_tables WHERE tablename = 'second'"); n != 0 {
			t.Fatal("table from the failed file exists")
		}

		fixed := files(
			"0001_ok.sql", "CREATE TABLE first (id int);",
			"0002_broken.sql", "CREATE TABLE second (id int);",
		)
		if err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "half", FS: fixed}); err != nil {
			t.Fatalf("migrate after fixing the file: %v", err)
		}
		if got := len(applied(t, pool, "half")); got != 2 {
			t.Fatalf("%d versions applied after the fix, want 2", got)
		}
	})

	t.Run("refuses a released file that was renamed", func(t *testing.T) {
		pool := connect(t, testenv.Postgres(t))
		if err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "widgets", FS: widgets}); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		renamed := files(
			"0001_create_widgets.sql", "SELECT 1",
			"0002_something_else.sql", "SELECT 1",
		)
		err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "widgets", FS: renamed})
		if err == nil || !strings.Contains(err.Error(), `version 0002 was applied as "add_widget_name"`) {
			t.Fatalf("err = %v, want a rename refusal", err)
		}
	})

	t.Run("components share a database with separate versions", func(t *testing.T) {
		pool := connect(t, testenv.Postgres(t))
		bus := pg.MigrationSet{Component: "bus", FS: files("0001_inbox.sql", "CREATE TABLE inbox (id text);")}
		svc := pg.MigrationSet{Component: "widgets", FS: widgets}
		if err := pg.Migrate(ctx, pool, nil, bus, svc); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if got := len(applied(t, pool, "bus")); got != 1 {
			t.Fatalf("bus versions = %d, want 1", got)
		}
		if got := len(applied(t, pool, "widgets")); got != 2 {
			t.Fatalf("widgets versions = %d, want 2", got)
		}
	})

	t.Run("refuses a component listed twice", func(t *testing.T) {
		pool := connect(t, testenv.Postgres(t))
		set := pg.MigrationSet{Component: "widgets", FS: widgets}
		if err := pg.Migrate(ctx, pool, nil, set, set); err == nil || !strings.Contains(err.Error(), "listed twice") {
			t.Fatalf("err = %v, want a duplicate component refusal", err)
		}
	})

	t.Run("waiting for the lock says who holds it and honours the context", func(t *testing.T) {
		url := testenv.Postgres(t)
		holder := connect(t, url)
		conn, err := holder.Acquire(ctx)
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		defer conn.Release()
		var pid int
		// Same key as Migrate: another replica is migrating.
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1)) l", int64(0x5245_5441_494E)).Scan(&pid); err != nil {
			t.Fatalf("lock: %v", err)
		}
		var logs testenv.SyncBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		// The wait is cut short once Migrate is blocked on the lock: a
		// deadline could end it before it got there on a loaded machine.
		waitCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { untilLockWaiters(holder, 1); cancel() }()
		err = pg.Migrate(waitCtx, connect(t, url), log, pg.MigrationSet{Component: "widgets", FS: widgets})
		if err == nil || !strings.Contains(err.Error(), "advisory lock held by pid "+strconv.Itoa(pid)) {
			t.Fatalf("err = %v, want a lock wait failure naming pid %d", err, pid)
		}
		if out := logs.String(); !strings.Contains(out, "waiting for the migration lock") || !strings.Contains(out, "pid "+strconv.Itoa(pid)) {
			t.Fatalf("log %q: want a line saying the lock is waited for, held by pid %d", out, pid)
		}

		// Once the holder is done, the wait ends and the files applied are named.
		// The session of the wait cut short can wait a moment longer: it
		// must be gone for the waiter seen next to be this Migrate.
		untilLockWaiters(holder, 0)
		var after testenv.SyncBuffer
		unlocked := make(chan struct{})
		go func() {
			defer close(unlocked)
			untilLockWaiters(holder, 1)
			_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(0x5245_5441_494E))
		}()
		err = pg.Migrate(ctx, connect(t, url), slog.New(slog.NewTextHandler(&after, nil)), pg.MigrationSet{Component: "widgets", FS: widgets})
		// The unlock's Exec can still be reading its answer: conn goes back
		// to the pool (deferred) only once it is done with it.
		<-unlocked
		if err != nil {
			t.Fatal(err)
		}
		out := after.String()
		for _, want := range []string{"waiting for the migration lock", "migration lock taken", `msg="migration applied" component=widgets file=0001_`} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
	})
}
