// Package pg is Retain's PostgreSQL runtime: a traced connection pool, the
// embedded migrations runner, the transaction helper, and a private cluster
// started from the machine's binaries for `retain dev` and tests.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a connection pool to url and pings the server, so a service
// with a wrong URL or an unreachable database fails at start-up rather than on
// its first event. Queries are traced with OpenTelemetry through the global
// tracer provider (set it up before calling Connect). The pool opens at most
// minConns connections, or pgx's default (4, or the CPU count) if that is
// more, unless the URL sets pool_max_conns: a service whose consumers,
// relay and scheduler hold more transactions at once than the default
// would otherwise queue for connections.
//
// Sessions are named application (pg_stat_activity's application_name)
// unless the URL names them: a lock holder, a slow query or a connection
// count is then traced to its service and pod (HolderOf reports it).
func Connect(ctx context.Context, url string, minConns int, application string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error never echoes the password, but the URL might hold
		// one: do not add the URL to the message.
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set && application != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = application
	}
	if !strings.Contains(url, "pool_max_conns") && cfg.MaxConns < int32(minConns) {
		cfg.MaxConns = int32(minConns)
	}
	// Query parameters stay out of spans: they carry PII (emails, phones).
	cfg.ConnConfig.Tracer = otelpgx.NewTracer()

	target := target(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool %s: %w", target, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, &pingError{target: target, err: err}
	}
	return pool, nil
}

// Target names the database pool connects to, host:port/database (no
// credentials), for messages that must say which.
func Target(pool *pgxpool.Pool) string { return target(pool.Config().ConnConfig) }

func target(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// pingError is a failed first contact. When the server answered with an
// error, that answer is the message: pgx's own lists every attempt, and
// with the default sslmode=prefer the first is always "tls error: server
// refused TLS connection", which sends operators looking at TLS when the
// password was wrong.
type pingError struct {
	target string
	err    error
}

func (e *pingError) Error() string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](e.err); ok {
		return fmt.Sprintf("postgres %s: %s (SQLSTATE %s)", e.target, pgErr.Message, pgErr.Code)
	}
	return fmt.Sprintf("ping postgres %s: %v", e.target, e.err)
}

func (e *pingError) Unwrap() error { return e.err }
