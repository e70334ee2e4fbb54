package pg

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unreachable reports whether err says the database could not be reached
// or went away (a failed connect, a broken connection, a server shutting
// down, starting up or out of connection slots) rather than that a
// statement failed: the edge of a service answers UNAVAILABLE (retry)
// for it rather than an internal error.
// The caller's own cancellation or deadline is not counted as one. A
// connection lost mid-statement may surface as neither: callers that must
// know for sure also ping the database.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	_, ok := errors.AsType[net.Error](err)
	return ok
}

// Away reports whether err failed because the database is away: an error
// of an unreachable database (Unreachable), or any error while it does
// not answer ping (NotAnswering).
func Away(ctx context.Context, err error, ping func(context.Context) error) bool {
	return Unreachable(err) || NotAnswering(ctx, ping)
}

// pingBound bounds the ping that decides whether the database answers.
const pingBound = 5 * time.Second

// NotAnswering reports whether the database does not answer ping within a
// few seconds: the test of "the database is away" where an error's kind
// cannot tell (a connection lost mid-statement), shared by the consumers'
// hold (decision 0018) and OutageLog.
func NotAnswering(ctx context.Context, ping func(context.Context) error) bool {
	pctx, cancel := context.WithTimeout(ctx, pingBound)
	defer cancel()
	return ping(pctx) != nil
}
