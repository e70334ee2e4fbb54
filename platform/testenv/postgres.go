package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
)

const (
	// EnvDatabaseURL names a server (any database on it) where the test
	// user may create databases; when set, no private cluster is started.
	EnvDatabaseURL = "RETAIN_TEST_DATABASE_URL"
	// EnvPGDurable=1 keeps fsync on in the private cluster, for benchmarks
	// whose figures must include the cost of durable commits.
	EnvPGDurable = "RETAIN_TEST_PG_DURABLE"
)

// The server is shared by every test of the test binary: starting a cluster
// takes about a second, a database a few milliseconds. This is package state
// by necessity; Main owns its lifetime.
var (
	mainCalled atomic.Bool

	serverOnce    sync.Once
	serverURL     string // admin URL of the server the databases are created on
	serverErr     error
	serverCluster *pg.Cluster
	serverDir     string
)

// Main runs the tests of a package that uses Postgres and then stops the
// private cluster if one was started. Use it as
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if err := stopServer(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Postgres returns the URL of a new, empty database for this test on the
// server from RETAIN_TEST_DATABASE_URL, or else on a private cluster started
// once per test binary from the machine's PostgreSQL binaries. The database is
// dropped when the test ends. Without either a URL or the binaries the test
// fails: integration tests are never skipped silently.
func Postgres(t testing.TB) string {
	t.Helper()
	return newDatabase(t, "")
}

// newDatabase is Postgres with options appended to its CREATE DATABASE
// statement (a template, a locale).
func newDatabase(t testing.TB, options string) string {
	t.Helper()
	if !mainCalled.Load() {
		// Without Main nobody stops the cluster when the binary exits.
		t.Fatal("testenv.Postgres needs the package to have: func TestMain(m *testing.M) { testenv.Main(m) }")
	}
	serverOnce.Do(startServer)
	if serverErr != nil {
		t.Fatalf("testenv: no PostgreSQL for tests: %v", serverErr)
	}

	name := databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Fatalf("testenv: connect to test server: %v", err)
	}
	defer func() { _ = admin.Close(ctx) }()
	if _, err := admin.Exec(ctx, strings.TrimSpace("CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" "+options)); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})

	dbURL, err := pg.DatabaseURL(serverURL, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dbURL
}

func dropDatabase(ctx context.Context, name string) error {
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("drop database %s: connect: %w", name, err)
	}
	defer func() { _ = admin.Close(ctx) }()
	// FORCE: a test that forgot to close its pool must not leak databases.
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func startServer() {
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		if _, err := pg.DatabaseURL(u, "postgres"); err != nil {
			serverErr = fmt.Errorf("%s: %w", EnvDatabaseURL, err)
			return
		}
		serverURL = u
		return
	}
	// Not t.TempDir: when the server runs as the postgres user (tests run
	// as root) its directory must be reachable by that user, and t.TempDir
	// directories are private to root. Under os.TempDir (mode 1777) it is.
	dir, err := os.MkdirTemp("", "retain-testpg-")
	if err != nil {
		serverErr = fmt.Errorf("create cluster directory: %w", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := pg.ClusterOptions{
		Dir:     dir,
		Durable: os.Getenv(EnvPGDurable) == "1",
	}
	// initdb takes seconds (tens under load); every test binary after the
	// first copies its result instead.
	if cache, err := os.UserCacheDir(); err == nil {
		opts.InitCacheDir = filepath.Join(cache, "retain", "pg-initdb")
	}
	c, err := pg.StartCluster(ctx, opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		serverErr = fmt.Errorf("%w (or set %s to the URL of a server where databases may be created)", err, EnvDatabaseURL)
		return
	}
	serverCluster, serverDir, serverURL = c, dir, c.URL("postgres")
}

func stopServer() error {
	if serverCluster == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := serverCluster.Stop(ctx)
	if rmErr := os.RemoveAll(serverDir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove cluster directory: %w", rmErr))
	}
	if err != nil {
		return fmt.Errorf("stop test postgres: %w", err)
	}
	return nil
}

// databaseName derives a unique, valid database name from the test name:
// readable in pg_stat_activity, unique across tests and reruns.
func databaseName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	lastUnderscore := true
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 44 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			lastUnderscore = false
		} else if !lastUnderscore {
			b.WriteByte('_')
			lastUnderscore = true
		}
	}
	var random [5]byte
	_, _ = rand.Read(random[:])
	return strings.TrimSuffix(b.String(), "_") + "_" + hex.EncodeToString(random[:])
}
