package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A real connect failure: nothing listens on port 1.
	_, connErr := pgx.Connect(ctx, "postgres://retain@127.0.0.1:1/retain?connect_timeout=5")
	if connErr == nil {
		t.Fatal("connected to port 1")
	}
	peer := status.Error(codes.FailedPrecondition, "template welcome is not in the notifier")

	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"database unreachable: retry", fmt.Errorf("list campaigns: %w", connErr), codes.Unavailable},
		{"anything else: internal", errors.New(`column "x" does not exist`), codes.Internal},
		{"caller's cancellation", fmt.Errorf("query: %w", context.Canceled), codes.Canceled},
		{"caller's deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"a peer's status is kept", peer, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Failure(tt.err)
			if status.Code(got) != tt.want {
				t.Fatalf("code = %v (%v), want %v", status.Code(got), got, tt.want)
			}
		})
	}
	if got := Failure(peer); status.Convert(got).Message() != "template welcome is not in the notifier" {
		t.Errorf("peer's message changed: %v", got)
	}
	if !errors.Is(Failure(fmt.Errorf("q: %w", connErr)), connErr) {
		t.Error("the cause is not kept for the log")
	}
}
