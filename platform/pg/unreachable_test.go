package pg_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func TestUnreachable(t *testing.T) {
	// A real failed connect: a port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, connectErr := pgx.Connect(ctx, "postgres://u@"+addr+"/db?sslmode=disable")
	if connectErr == nil {
		t.Fatal("connect to a closed port succeeded")
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"failed connect, wrapped", fmt.Errorf("begin transaction: %w", connectErr), true},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, true},
		{"server starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"unique violation", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505"}), false},
		{"statement timeout", &pgconn.PgError{Code: "57014"}, false},
		{"our deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{"our cancellation", context.Canceled, false},
		{"a handler's own error", errors.New("template not found"), false},
		{"nil", nil, false},
	} {
		if got := pg.Unreachable(tc.err); got != tc.want {
			t.Errorf("%s: Unreachable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestConnectNamesTheServersAnswer: when the server refuses the session,
// Connect's error is the server's reason with its SQLSTATE, not pgx's list
// of attempts that opens with sslmode=prefer's TLS refusal.
func TestConnectNamesTheServersAnswer(t *testing.T) {
	url, err := pg.DatabaseURL(testenv.Postgres(t), "no_such_database")
	if err != nil {
		t.Fatal(err)
	}
	// libpq's default, as in a URL an operator writes: TLS is tried first.
	url = strings.Replace(url, "sslmode=disable", "sslmode=prefer", 1)
	_, err = pg.Connect(context.Background(), url, 1, "")
	if err == nil {
		t.Fatal("connected to a database that does not exist")
	}
	msg := err.Error()
	if !strings.Contains(msg, `database "no_such_database" does not exist (SQLSTATE 3D000)`) || strings.Contains(msg, "tls") {
		t.Fatalf("error %q: want the server's reason and no TLS noise", msg)
	}
	if _, ok := errors.AsType[*pgconn.PgError](err); !ok {
		t.Fatalf("error %q does not wrap the server's PgError", msg)
	}
}
