package pg_test

import (
	"context"
	"errors"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func TestInTx(t *testing.T) {
	ctx := context.Background()
	// One connection: a transaction left open by InTx would block the next.
	pool := connect(t, withParam(t, testenv.Postgres(t), "pool_max_conns", "1"))
	if _, err := pool.Exec(ctx, "CREATE TABLE notes (body text)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	insert := func(body string) func(pgx.Tx) error {
		return func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO notes VALUES ($1)", body)
			return err
		}
	}
	has := func(body string) bool {
		return count(t, pool, "SELECT count(*) FROM notes WHERE body = '"+body+"'") == 1
	}

	t.Run("commits when fn succeeds", func(t *testing.T) {
		if err := pg.InTx(ctx, pool, insert("committed")); err != nil {
			t.Fatalf("InTx: %v", err)
		}
		if !has("committed") {
			t.Fatal("row not committed")
		}
	})

	t.Run("rolls back and returns fn's error unchanged", func(t *testing.T) {
		errBoom := errors.New("boom")
		err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
			if err := insert("rolled back")(tx); err != nil {
				return err
			}
			return errBoom
		})
		if err != errBoom {
			t.Fatalf("err = %v, want errBoom itself", err)
		}
		if has("rolled back") {
			t.Fatal("row of a failed transaction was committed")
		}
	})

	t.Run("rolls back on panic and re-panics", func(t *testing.T) {
		func() {
			defer func() {
				if r := recover(); r != "kaboom" {
					t.Fatalf("recovered %v, want the original panic", r)
				}
			}()
			_ = pg.InTx(ctx, pool, func(tx pgx.Tx) error {
				if err := insert("panicked")(tx); err != nil {
					return err
				}
				panic("kaboom")
			})
			t.Fatal("InTx returned instead of panicking")
		}()
		if has("panicked") {
			t.Fatal("row of a panicked transaction was committed")
		}
		if err := pg.InTx(ctx, pool, insert("after panic")); err != nil {
			t.Fatalf("connection unusable after panic: %v", err)
		}
	})

	t.Run("reports a failed commit", func(t *testing.T) {
		if _, err := pool.Exec(ctx, "CREATE TABLE uniq (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)"); err != nil {
			t.Fatalf("create table: %v", err)
		}
		err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO uniq VALUES (1), (1)")
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "commit transaction") {
			t.Fatalf("err = %v, want a commit failure", err)
		}
	})
}

// TestConnectPoolSize: the pool opens as many connections as the service
// holds transactions at once, unless the URL says how many.
// TestInSnapshot: every statement in the snapshot sees the state of its
// start, whatever commits meanwhile, and it cannot write.
func TestInSnapshot(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, testenv.Postgres(t))
	if _, err := pool.Exec(ctx, "CREATE TABLE tally (n int); INSERT INTO tally VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	err := pg.InSnapshot(ctx, pool, func(tx pgx.Tx) error {
		var before, after int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM tally").Scan(&before); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, "INSERT INTO tally VALUES (2)"); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM tally").Scan(&after); err != nil {
			return err
		}
		if before != 1 || after != 1 {
			t.Errorf("counted %d then %d inside one snapshot, want 1 and 1", before, after)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = pg.InSnapshot(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO tally VALUES (3)")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("a write in a snapshot: %v, want a read-only error", err)
	}
}

func TestConnectPoolSize(t *testing.T) {
	url := testenv.Postgres(t)
	for _, tc := range []struct {
		url      string
		min, max int32
	}{
		{url, 13, 13},
		{url, 1, max(4, int32(runtime.NumCPU()))},
		{withParam(t, url, "pool_max_conns", "2"), 13, 2},
	} {
		pool, err := pg.Connect(context.Background(), tc.url, int(tc.min), "")
		if err != nil {
			t.Fatal(err)
		}
		got := pool.Config().MaxConns
		pool.Close()
		if got != tc.max {
			t.Errorf("Connect(%q, %d): %d connections, want %d", tc.url, tc.min, got, tc.max)
		}
	}
}

// TestConnectNamesSessions: a pool's sessions carry the application name
// given, unless the URL names them itself.
func TestConnectNamesSessions(t *testing.T) {
	url := testenv.Postgres(t)
	ctx := context.Background()
	for _, tc := range []struct{ url, app, want string }{
		{url, "retain-metrics@pod-1", "retain-metrics@pod-1"},
		{withParam(t, url, "application_name", "mine"), "retain-metrics@pod-1", "mine"},
	} {
		pool, err := pg.Connect(ctx, tc.url, 1, tc.app)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = pool.QueryRow(ctx, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&got)
		pool.Close()
		if err != nil || got != tc.want {
			t.Errorf("Connect(%q, %q): application_name %q %v, want %q", tc.url, tc.app, got, err, tc.want)
		}
	}
}

// withParam sets a query parameter of a database URL, which may have no
// query yet (RETAIN_TEST_DATABASE_URL as a user gives it).
func withParam(t *testing.T, dbURL, key, value string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestInTxMarksAConnectionFailure: a transaction whose backend is
// terminated under it fails with an error that matches
// ErrConnectionFailed, keeping its text; a statement that fails, and a
// transaction canceled by its caller, do not.
func TestInTxMarksAConnectionFailure(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, testenv.Postgres(t))

	err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		var pid int32
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		// From another connection, and waited for: the backend ends
		// before the next statement.
		if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1, 5000)", pid); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT 1")
		return err
	})
	if !errors.Is(err, pg.ErrConnectionFailed) || strings.Contains(err.Error(), pg.ErrConnectionFailed.Error()) {
		t.Fatalf("err = %v, want ErrConnectionFailed matched, its own text kept", err)
	}

	err = pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT 1/0")
		return err
	})
	if err == nil || errors.Is(err, pg.ErrConnectionFailed) {
		t.Fatalf("a failed statement: err = %v, want no connection failure", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	err = pg.InTx(cctx, pool, func(tx pgx.Tx) error {
		cancel()
		_, err := tx.Exec(cctx, "SELECT pg_sleep(10)")
		return err
	})
	if err == nil || errors.Is(err, pg.ErrConnectionFailed) {
		t.Fatalf("a canceled transaction: err = %v, want no connection failure", err)
	}
}
