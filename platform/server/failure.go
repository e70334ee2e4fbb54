package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/pg"
)

// Failure is the status of an error a gRPC edge has no meaning for:
//   - an error that already is a status (a peer's answer) keeps it;
//   - the caller's own cancellation or deadline keeps its code;
//   - a database that cannot be reached is UNAVAILABLE, which tells the
//     client to retry;
//   - anything else is INTERNAL: a retry will not help, so the client must
//     not be told UNAVAILABLE.
//
// The client gets no detail of a server-side failure (it may quote SQL or
// another tenant's keys); the call's log line carries it (logRPC).
func Failure(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case pg.Unreachable(err):
		return &failure{code: codes.Unavailable, msg: "the service's database cannot be reached; retry", cause: err}
	}
	return &failure{code: codes.Internal, msg: "internal error; the server's log has the detail", cause: err}
}

// failure is a status that keeps its cause for the server's log.
type failure struct {
	code  codes.Code
	msg   string
	cause error
}

func (f *failure) Error() string              { return f.msg + ": " + f.cause.Error() }
func (f *failure) Unwrap() error              { return f.cause }
func (f *failure) GRPCStatus() *status.Status { return status.New(f.code, f.msg) }
