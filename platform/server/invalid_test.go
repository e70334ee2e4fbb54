package server_test

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/server"
)

// TestViolationsReadBackInvalidArgument: what InvalidArgument sends, a
// client reads back in order, through the wire form of the status; the
// message names every field for clients that print only it.
func TestViolationsReadBackInvalidArgument(t *testing.T) {
	sent := []server.FieldViolation{
		{Field: "holdout_percent", Description: "must be 0-90, got 95"},
		{Field: "steps[1].wait.for", Description: "steps[1].wait.for: over a year"},
	}
	err := server.InvalidArgument(sent...)
	wire := status.FromProto(status.Convert(err).Proto()).Err()
	if got := server.Violations(wire); !slices.Equal(got, sent) {
		t.Fatalf("read back %+v, want %+v", got, sent)
	}
	st := status.Convert(wire)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %v", st.Code())
	}
	if want := "invalid request: holdout_percent: must be 0-90, got 95; steps[1].wait.for: over a year"; st.Message() != want {
		t.Fatalf("message %q, want %q", st.Message(), want)
	}
	for _, other := range []error{nil, errors.New("plain"), status.Error(codes.NotFound, "no campaign x")} {
		if got := server.Violations(other); got != nil {
			t.Errorf("Violations(%v) = %+v, want none", other, got)
		}
	}
}

func TestPageSize(t *testing.T) {
	for _, tc := range []struct {
		n    int32
		want int
		bad  string
	}{{0, 100, ""}, {1, 1, ""}, {1000, 1000, ""}, {1001, 0, "1001: must be 0-1000 (0: 100)"}, {-1, 0, "-1: must be 0-1000 (0: 100)"}} {
		got, v := server.PageSize(tc.n, 100, 1000)
		if got != tc.want || (v == nil) != (tc.bad == "") || (v != nil && (v.Field != "page_size" || v.Description != tc.bad)) {
			t.Errorf("PageSize(%d) = %d, %+v; want %d, %q", tc.n, got, v, tc.want, tc.bad)
		}
	}
}
