package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/notifier/internal/contacts"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestContactsDoNotDeadlock: the contacts consumers of two replicas apply
// batches naming the same customers in different orders (each batch lists
// its customers as their events came), many times over; the customers'
// locks and rows are taken in key order whatever the batch's order, so
// neither waits on the other in a cycle (SQLSTATE 40P01).
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

// TestContactsFromBeforeConsentRunsKeepTheirConsent: a contact stored
// before the consent runs (decision 0046; or by a replica not yet
// upgraded) has no since. Its grant counts from its latest report, as it
// did, and a sync repeating it is no news; a new grant after a revocation
// counts from then.
func TestContactsFromBeforeConsentRunsKeepTheirConsent(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	stored := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := pool.Exec(ctx, `INSERT INTO contacts (tenant, customer_id, email, email_at, email_ev, email_consent, email_consent_at, email_consent_ev)
		VALUES ('acme', 'c', 'c@example.com', $1, 'e0', 'granted', $1, 'e0')`, stored); err != nil {
		t.Fatal(err)
	}
	report := func(h int, v string) {
		t.Helper()
		c := contacts.Contact{Tenant: "acme", CustomerID: "c"}
		f := contacts.Field{Value: v, At: stored.Add(time.Duration(h) * time.Hour), Event: fmt.Sprint("e", h)}
		c.Fields[contacts.EmailConsent], c.Fields[contacts.EmailConsentSince] = f, f
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return ApplyContacts(ctx, tx, []contacts.Contact{c}) }); err != nil {
			t.Fatal(err)
		}
	}
	consent := func(want string, at time.Time) {
		t.Helper()
		cs, err := LoadContacts(ctx, pool, []Key{{Tenant: "acme", Customer: "c"}})
		if err != nil {
			t.Fatal(err)
		}
		if c := cs[Key{Tenant: "acme", Customer: "c"}]; c.EmailConsent != want || !c.EmailConsentAt.Equal(at) || c.Email != "c@example.com" {
			t.Fatalf("%+v, want consent %s at %v", c, want, at)
		}
	}
	consent("granted", stored)
	report(1, contacts.ConsentGranted)
	consent("granted", stored)
	report(2, contacts.ConsentRevoked)
	consent("revoked", stored.Add(2*time.Hour))
	report(3, contacts.ConsentGranted)
	report(4, contacts.ConsentGranted)
	consent("granted", stored.Add(3*time.Hour))
}

// TestContactStoredMeanwhileFailsTheBatch: a replica not yet upgraded
// merges without the customers' locks; when it stores a new customer
// between this batch's read and insert, the insert leaves its row alone
// and the batch fails (to be retried with it), rather than overwrite it.
func TestContactStoredMeanwhileFailsTheBatch(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	old, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = old.Rollback(ctx) }()
	if _, err := old.Exec(ctx, `INSERT INTO contacts (tenant, customer_id, locale, locale_at, locale_ev) VALUES ('acme', 'c', 'fa-IR', now(), 'e-old')`); err != nil {
		t.Fatal(err)
	}
	c := contacts.Contact{Tenant: "acme", CustomerID: "c"}
	c.Fields[contacts.Email] = contacts.Field{Value: "c@example.com", At: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Event: "e-new"}
	done := make(chan error, 1)
	go func() {
		done <- pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return ApplyContacts(ctx, tx, []contacts.Contact{c}) })
	}()
	testenv.WaitFor(t, "the batch's insert to wait for the other row", func() bool {
		var n int
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return n > 0
	})
	if err := old.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stored meanwhile") {
		t.Fatalf("batch: %v", err)
	}
	cs, err := LoadContacts(ctx, pool, []Key{{Tenant: "acme", Customer: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cs[Key{Tenant: "acme", Customer: "c"}]; got.Locale != "fa-IR" {
		t.Fatalf("the other replica's contact was overwritten: %+v", got)
	}
}
