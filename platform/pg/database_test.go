package pg_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func TestDatabaseURL(t *testing.T) {
	tests := []struct {
		name, server, want, wantErr string
	}{
		{name: "replaces the database and keeps parameters", server: "postgres://u:p@h:5432/postgres?sslmode=disable", want: "postgres://u:p@h:5432/t_x?sslmode=disable"},
		{name: "adds a missing database", server: "postgresql://h", want: "postgresql://h/t_x"},
		{name: "rejects keyword strings without quoting them", server: "host=h password=secret", wantErr: "must look like"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pg.DatabaseURL(tt.server, "t_x")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("got %q, %v; want an error containing %q and no secret", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DatabaseURL = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCreateDatabaseAt(t *testing.T) {
	ctx := context.Background()
	server := testenv.Postgres(t)
	// Unique: RETAIN_TEST_DATABASE_URL servers are shared between runs.
	name := "svc_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var url string
	for i := range 2 {
		got, err := pg.CreateDatabaseAt(ctx, server, name)
		if err != nil {
			t.Fatalf("create %d: %v", i+1, err)
		}
		url = got
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("connect to drop %s: %v", name, err)
			return
		}
		defer func() { _ = conn.Close(ctx) }()
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	var db string
	if err := connect(t, url).QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != name {
		t.Fatalf("current_database = %q (err %v), want %s", db, err, name)
	}
}
