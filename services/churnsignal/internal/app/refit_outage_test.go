package app

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/testenv"
)

// TestScheduledRefitOutageLoggedOnce: while the database is away, every
// round of the refit loop fails each tenant waiting for a check. That is
// one line for the outage and one when it ends, not a line per tenant per
// round (QA: "scheduled refit failed" every minute for the whole outage).
func TestScheduledRefitOutageLoggedOnce(t *testing.T) {
	ctx := context.Background()
	e, pool, logs := loggedShop(t)
	tenants := []string{"a", "b", "c"}
	for _, tenant := range tenants {
		e.deferCheck(tenant)
	}
	end := testenv.DatabaseOutage(t, pool)
	for range 3 {
		e.checkGrowth(ctx)
		if got := e.pendingTenants(); len(got) != len(tenants) {
			t.Fatalf("tenants waiting for a check after a failed round: %v, want %v", got, tenants)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "scheduled refits: database unreachable"); n != 1 || strings.Contains(out, "scheduled refit failed") {
		t.Fatalf("%d outage lines for three rounds of three tenants, want 1 and no per-tenant failure:\n%s", n, out)
	}
	end()
	e.checkGrowth(ctx)
	logs.WaitFor(t, "scheduled refits: database answers again")
}
