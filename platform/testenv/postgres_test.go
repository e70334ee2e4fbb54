package testenv_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/testenv"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestPostgres(t *testing.T) {
	ctx := context.Background()

	t.Run("gives each call a fresh empty database named after the test", func(t *testing.T) {
		a, b := connect(t, testenv.Postgres(t)), connect(t, testenv.Postgres(t))
		var nameA, nameB string
		if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&nameA); err != nil {
			t.Fatal(err)
		}
		if err := b.QueryRow(ctx, "SELECT current_database()").Scan(&nameB); err != nil {
			t.Fatal(err)
		}
		if nameA == nameB {
			t.Fatalf("both calls got database %s", nameA)
		}
		if !strings.HasPrefix(nameA, "t_testpostgres_gives_each_call") {
			t.Errorf("database %s is not named after the test", nameA)
		}
		var tables int
		if err := a.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables != 0 {
			t.Fatalf("fresh database has %d tables (err %v)", tables, err)
		}
		if _, err := a.Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
			t.Fatal(err)
		}
		if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&tables); err != nil || tables != 0 {
			t.Fatalf("table of one database visible in the other (err %v)", err)
		}
	})

	t.Run("drops the database when the test ends, even with open connections", func(t *testing.T) {
		var name string
		t.Run("user", func(t *testing.T) {
			conn, err := pgx.Connect(ctx, testenv.Postgres(t))
			if err != nil {
				t.Fatal(err)
			}
			// Deliberately left open: DROP ... WITH (FORCE) must cope.
			if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
				t.Fatal(err)
			}
		})
		observer := connect(t, testenv.Postgres(t))
		var exists bool
		if err := observer.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Fatalf("database %s still exists after its test ended", name)
		}
	})
}
