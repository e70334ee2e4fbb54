package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/notifier/internal/contacts"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestContactsDoNotDeadlock: the contacts consumers of two replicas apply
// batches naming the same customers in different orders (each batch lists
// its customers as their events came), many times over; the upsert meets
// the rows in key order whatever the batch's order, so neither waits on
// the other in a cycle (SQLSTATE 40P01).
func TestContactsDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	const customers, rounds = 300, 40
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	apply := func(reverse bool, offset int) func(pgx.Tx, int) error {
		return func(tx pgx.Tx, r int) error {
			cs := make([]contacts.Contact, 0, customers)
			for i := range customers {
				c := contacts.Contact{Tenant: "acme", CustomerID: fmt.Sprintf("c-%d", i)}
				c.Fields[contacts.Locale] = contacts.Field{Value: fmt.Sprintf("l%d", r), At: at.Add(time.Duration(2*r+offset) * time.Second), Event: fmt.Sprintf("e-%d-%d", r, offset)}
				cs = append(cs, c)
			}
			if reverse {
				slices.Reverse(cs)
			}
			return ApplyContacts(ctx, tx, cs)
		}
	}
	testenv.ConcurrentTx(t, pool, rounds, apply(false, 0), apply(true, 1))
}
