package metrics_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/retainhq/retain/platform/server"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// TestAPeriodBoundAtTheZeroTimeIsOutOfRange: 0001-01-01T00:00:00Z is a
// valid Timestamp, and set: the answer says it is too early, not that the
// bound is missing. The next microsecond is measured.
func TestAPeriodBoundAtTheZeroTimeIsOutOfRange(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	c := s.client(t, "shop")
	zero, now := time.Time{}, time.Now().UTC()
	for _, tc := range []struct {
		field    string
		from, to time.Time
	}{
		{"period.from", zero, now},
		{"period.to", now, zero},
	} {
		_, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: &metricsv1.Period{From: ts(tc.from), To: ts(tc.to)}}, c.creds)
		wantCode(t, err, codes.InvalidArgument)
		want := "0001-01-01T00:00:00Z is before the earliest supported time, 0001-01-01T00:00:00.000001Z"
		if vs := server.Violations(err); len(vs) != 1 || vs[0].Field != tc.field || vs[0].Description != want {
			t.Errorf("%s at the zero time: %v, want %q", tc.field, vs, want)
		}
	}
	if _, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: &metricsv1.Period{From: ts(zero.Add(time.Microsecond)), To: ts(now)}}, c.creds); err != nil {
		t.Errorf("from the earliest supported time: %v", err)
	}
}
