package churnsignal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
)

// TestRequestValuesTheStoreCannotUse: a NUL in a customer id (which
// Postgres cannot hold in text) and an unknown band are INVALID_ARGUMENT
// naming the field, not INTERNAL.
func TestRequestValuesTheStoreCannotUse(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	tok := s.token(t, "shop", auth.ScopeRead)
	says := func(t *testing.T, err error, field, want string) {
		t.Helper()
		if vs := server.Violations(err); len(vs) != 1 || vs[0].Field != field || !strings.Contains(vs[0].Description, want) {
			t.Errorf("%v, want %s: %s", err, field, want)
		}
	}
	_, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "c-\x00x"}, tok)
	says(t, err, "customer_id", "holds a NUL byte (\\x00) at byte 2")
	_, err = s.client().ListAtRisk(ctx, &churnv1.ListAtRiskRequest{Band: 9}, tok)
	says(t, err, "band", "unknown value 9; valid: RISK_BAND_LOW")
}
