package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
// before the consent runs (decision 0046) has no run. Its grant counts
// from its latest report, as it did, and a sync repeating it is no news; a
// new grant after a revocation counts from then.
func TestContactsFromBeforeConsentRunsKeepTheirConsent(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	if _, err := pool.Exec(ctx, `INSERT INTO contacts (tenant, customer_id, email, email_at, email_ev, email_consent, email_consent_at, email_consent_ev)
		VALUES ('acme', 'c', 'c@example.com', $1, 'e0', 'granted', $1, 'e0')`, hour(0)); err != nil {
		t.Fatal(err)
	}
	wantConsent(t, pool, "granted", hour(0))
	report(t, pool, 1, contacts.ConsentGranted)
	wantConsent(t, pool, "granted", hour(0))
	report(t, pool, 2, contacts.ConsentRevoked)
	wantConsent(t, pool, "revoked", hour(2))
	report(t, pool, 3, contacts.ConsentGranted)
	report(t, pool, 4, contacts.ConsentGranted)
	wantConsent(t, pool, "granted", hour(3))
}

// TestConsentReportedByAReplicaNotYetUpgraded: during a rolling upgrade a
// replica from before decision 0046 writes the shop's latest report over
// a run this one stored, and leaves the run as it was. The shop revoked
// and granted again through it, which left only the grant: that cannot be
// told from a repeat, so the run (granted from hour 1) goes on, through
// later syncs repeating it too (contacts.consentFields). A revocation
// written so counts from itself.
func TestConsentReportedByAReplicaNotYetUpgraded(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	report(t, pool, 1, contacts.ConsentGranted)
	wantConsent(t, pool, "granted", hour(1))
	// The upsert of a replica from before migration 0005: the newer report
	// replaces the latest report's columns, the only ones it knows.
	for _, r := range []struct {
		h int
		v string
	}{{3, contacts.ConsentRevoked}, {4, contacts.ConsentGranted}} {
		if _, err := pool.Exec(ctx, `UPDATE contacts SET email_consent = $1, email_consent_at = $2, email_consent_ev = $3
			WHERE tenant = 'acme' AND customer_id = 'c' AND ($2, $3, $1) > (email_consent_at, email_consent_ev, email_consent)`,
			r.v, hour(r.h), fmt.Sprint("e", r.h)); err != nil {
			t.Fatal(err)
		}
	}
	wantConsent(t, pool, "granted", hour(1))
	report(t, pool, 5, contacts.ConsentGranted)
	wantConsent(t, pool, "granted", hour(1))
	if _, err := pool.Exec(ctx, `UPDATE contacts SET email_consent = 'revoked', email_consent_at = $1, email_consent_ev = 'e6'
		WHERE tenant = 'acme' AND customer_id = 'c'`, hour(6)); err != nil {
		t.Fatal(err)
	}
	wantConsent(t, pool, "revoked", hour(6))
	report(t, pool, 7, contacts.ConsentGranted)
	wantConsent(t, pool, "granted", hour(7))
}

// hour is h hours into the consent tests' day.
func hour(h int) time.Time { return time.Date(2026, 11, 1, h, 0, 0, 0, time.UTC) }

// report applies the shop's report of email consent v at hour h, event
// eh, to customer c of acme, as a customer.updated of its own.
func report(t *testing.T, pool *pgxpool.Pool, h int, v string) {
	t.Helper()
	ctx := context.Background()
	c := contacts.Contact{Tenant: "acme", CustomerID: "c"}
	c.Fields[contacts.Email] = contacts.Field{Value: "c@example.com", At: hour(h), Event: fmt.Sprint("e", h)}
	f := contacts.Field{Value: v, At: hour(h), Event: fmt.Sprint("e", h)}
	c.Fields[contacts.EmailConsent], c.Fields[contacts.EmailConsentSince] = f, f
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return ApplyContacts(ctx, tx, []contacts.Contact{c}) }); err != nil {
		t.Fatal(err)
	}
}

// wantConsent checks the email consent of customer c of acme and when it
// took its value.
func wantConsent(t *testing.T, pool *pgxpool.Pool, want string, at time.Time) {
	t.Helper()
	cs, err := LoadContacts(context.Background(), pool, []Key{{Tenant: "acme", Customer: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := cs[Key{Tenant: "acme", Customer: "c"}]; c.EmailConsent != want || !c.EmailConsentAt.Equal(at) || c.Email != "c@example.com" {
		t.Fatalf("%+v, want consent %s at %v", c, want, at)
	}
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
