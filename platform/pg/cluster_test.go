//go:build unix

package pg_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

// clusterDir returns a fresh directory for a cluster of its own. Not
// t.TempDir: as root the server runs as user postgres, which cannot enter
// t.TempDir's root-only parent; os.MkdirTemp's parent is world-traversable.
func clusterDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "retain-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func startCluster(t *testing.T, opts pg.ClusterOptions) *pg.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pg.StartCluster(ctx, opts)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func settings(t *testing.T, pool *pgxpool.Pool, names ...string) string {
	t.Helper()
	var got []string
	for _, name := range names {
		var v string
		if err := pool.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatalf("setting %s: %v", name, err)
		}
		got = append(got, name+"="+v)
	}
	return strings.Join(got, " ")
}

func readKept(t *testing.T, c *pg.Cluster) string {
	t.Helper()
	var v string
	if err := connect(t, c.URL("kept db")).QueryRow(context.Background(), "SELECT v FROM t").Scan(&v); err != nil {
		t.Fatalf("read back: %v", err)
	}
	return v
}

// One data directory goes through the life of a `retain dev` cluster: initdb
// is the slow part (seconds), so the steps share it.
func TestClusterLifecycle(t *testing.T) {
	lifecycle := t // clusters started in a step stay up for the following steps
	ctx := context.Background()
	dir := clusterDir(t)
	dataDir := filepath.Join(dir, "data")
	cache := t.TempDir()
	var log testenv.SyncBuffer
	first := startCluster(t, pg.ClusterOptions{Dir: dir, Log: &log, InitCacheDir: cache})

	t.Run("throwaway cluster trades durability for speed", func(t *testing.T) {
		got := settings(t, connect(t, first.URL("postgres")), "fsync", "synchronous_commit", "full_page_writes", "listen_addresses")
		if want := "fsync=off synchronous_commit=off full_page_writes=off listen_addresses=127.0.0.1"; got != want {
			t.Fatalf("settings %s, want %s", got, want)
		}
	})

	t.Run("Log receives the initdb output and the server log", func(t *testing.T) {
		for _, want := range []string{"running bootstrap script", "ready to accept connections"} {
			if !strings.Contains(log.String(), want) {
				t.Errorf("Log lacks %q:\n%s", want, log.String())
			}
		}
		if raw, err := os.ReadFile(first.LogPath()); err != nil || !strings.Contains(string(raw), "ready to accept connections") {
			t.Errorf("server log file %s: err %v, content:\n%s", first.LogPath(), err, raw)
		}
	})

	t.Run("a second cluster copies the cached initdb result", func(t *testing.T) {
		var log testenv.SyncBuffer
		other := startCluster(t, pg.ClusterOptions{Dir: clusterDir(t), Log: &log, InitCacheDir: cache})
		if !strings.Contains(log.String(), "copied data directory from initdb cache") {
			t.Fatalf("initdb cache not used:\n%s", log.String())
		}
		if err := other.CreateDatabase(ctx, "works"); err != nil {
			t.Fatalf("cluster from cache: %v", err)
		}
	})

	t.Run("CreateDatabase is idempotent and URL escapes the name", func(t *testing.T) {
		for range 2 {
			if err := first.CreateDatabase(ctx, "kept db"); err != nil {
				t.Fatalf("create database: %v", err)
			}
		}
		pool := connect(t, first.URL("kept db"))
		if _, err := pool.Exec(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('survives')"); err != nil {
			t.Fatalf("write: %v", err)
		}
		pool.Close()
	})

	t.Run("stop is clean and repeatable", func(t *testing.T) {
		for i := range 2 {
			if err := first.Stop(ctx); err != nil {
				t.Fatalf("stop %d: %v", i+1, err)
			}
		}
		if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); !os.IsNotExist(err) {
			t.Fatalf("postmaster.pid still there after stop (err %v)", err)
		}
	})

	var second *pg.Cluster
	t.Run("restart over a stale postmaster.pid keeps data and port", func(t *testing.T) {
		// As after a crash, with the pid since reused by a live process
		// that is not PostgreSQL (this test binary).
		stale := strconv.Itoa(os.Getpid()) + "\n" + dataDir + "\n"
		if err := os.WriteFile(filepath.Join(dataDir, "postmaster.pid"), []byte(stale), 0o600); err != nil {
			t.Fatal(err)
		}
		second = startCluster(lifecycle, pg.ClusterOptions{Dir: dir, Port: first.Port(), Durable: true})
		if second.URL("x") != first.URL("x") {
			t.Fatalf("URL changed with the same port: %s vs %s", second.URL("x"), first.URL("x"))
		}
		if v := readKept(t, second); v != "survives" {
			t.Fatalf("read %q after restart", v)
		}
	})

	t.Run("durable start keeps PostgreSQL's crash safety", func(t *testing.T) {
		got := settings(t, connect(t, second.URL("postgres")), "fsync", "synchronous_commit", "full_page_writes")
		if want := "fsync=on synchronous_commit=on full_page_writes=on"; got != want {
			t.Fatalf("settings %s, want %s", got, want)
		}
	})

	t.Run("stops a server left running on the data directory", func(t *testing.T) {
		// second is never stopped, as when its owner was killed.
		third := startCluster(t, pg.ClusterOptions{Dir: dir})
		if v := readKept(t, third); v != "survives" {
			t.Fatalf("read %q", v)
		}
		if err := third.Stop(ctx); err != nil {
			t.Fatalf("stop: %v", err)
		}
		// The server second started is gone: its owner is told.
		select {
		case <-second.Exited():
			t.Logf("the stopped server exited: %v", second.ExitErr())
		case <-time.After(30 * time.Second):
			t.Fatal("Exited not closed for a server stopped by another start")
		}
	})

	t.Run("quotes the server log when start-up fails", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = busy.Close() }()
		port := busy.Addr().(*net.TCPAddr).Port
		_, err = pg.StartCluster(ctx, pg.ClusterOptions{Dir: dir, Port: port})
		if err == nil || !strings.Contains(err.Error(), "could not bind") {
			t.Fatalf("err = %v, want the server's bind failure quoted", err)
		}
	})
}

func TestStartClusterRefusals(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(t *testing.T) pg.ClusterOptions
		wantErr string
	}{
		{
			name: "a non-empty data directory that is not a cluster",
			setup: func(t *testing.T) pg.ClusterOptions {
				dir := clusterDir(t)
				if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "data", "precious.txt"), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				return pg.ClusterOptions{Dir: dir}
			},
			wantErr: "holds no PostgreSQL cluster",
		},
		{
			name: "missing binaries",
			setup: func(t *testing.T) pg.ClusterOptions {
				return pg.ClusterOptions{Dir: clusterDir(t), BinDir: t.TempDir()}
			},
			wantErr: "initdb not found",
		},
		{
			name:    "no directory",
			setup:   func(t *testing.T) pg.ClusterOptions { return pg.ClusterOptions{} },
			wantErr: "Dir is required",
		},
		{
			name:    "a port out of range",
			setup:   func(t *testing.T) pg.ClusterOptions { return pg.ClusterOptions{Dir: clusterDir(t), Port: 70000} },
			wantErr: "out of range",
		},
	}
	if os.Geteuid() == 0 {
		tests = append(tests, struct {
			name    string
			setup   func(t *testing.T) pg.ClusterOptions
			wantErr string
		}{
			name: "as root, a directory the postgres user cannot reach",
			setup: func(t *testing.T) pg.ClusterOptions {
				return pg.ClusterOptions{Dir: filepath.Join(t.TempDir(), "cluster")}
			},
			wantErr: "is not traversable by OS user postgres",
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pg.StartCluster(ctx, tt.setup(t))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
