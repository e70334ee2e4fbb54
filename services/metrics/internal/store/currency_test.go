package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// TestQueriesResolveTheCurrencyInTheirSnapshot: a writer commits the first
// order of one fresh tenant after another, as the consumer does, while
// queries of the tenant being written ask for its currency. An answer in
// no currency ("": no orders yet) counts no customers. Resolved in a
// statement of its own, the currency was read before the order's commit
// and the customers after it.
func TestQueriesResolveTheCurrencyInTheirSnapshot(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	month := retention.MonthOf(at)
	var written atomic.Int32
	testenv.ReadsWhileWrites(t, 600, 50, func(i int) error {
		f := Facts{Orders: []Order{{Order: retention.Order{ID: "o", Customer: "c", At: at, TotalMinor: 1000}, Currency: "EUR"}}}
		if err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
			_, err := s.LockAndApplyTenants(ctx, tx, []TenantFacts{{Tenant: fmt.Sprintf("t%d", i), Facts: f}})
			return err
		}); err != nil {
			return err
		}
		written.Store(int32(i))
		return nil
	}, func(r int) error {
		tenant := fmt.Sprintf("t%d", written.Load()+1)
		if r%2 == 0 {
			vs, c, err := s.CustomerValues(ctx, tenant, at.Add(time.Hour), "")
			if err == nil && c == "" && len(vs) > 0 {
				err = fmt.Errorf("RFM of %s in no currency (no orders yet) with %d customers", tenant, len(vs))
			}
			return err
		}
		cells, c, err := s.CohortCells(ctx, tenant, month, month, (month + 1).Start(), "")
		if err == nil && c == "" && len(cells) > 0 {
			err = fmt.Errorf("cohorts of %s in no currency (no orders yet) with cells %+v", tenant, cells)
		}
		return err
	})
}
