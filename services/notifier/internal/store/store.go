// Package store owns the notifier's database: contacts, preferences,
// suppressions, template versions, deliveries and their decision trails.
package store

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/retainhq/retain/platform/pg"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/contacts"
	"github.com/retainhq/retain/services/notifier/internal/policy"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the notifier tables.
var Migrations = pg.MigrationSet{Component: "notifier", FS: migrationFiles, Dir: "migrations"}

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotFound is a missing template, delivery or suppression.
var ErrNotFound = errors.New("not found")

// ErrExists is a template created twice.
var ErrExists = errors.New("already exists")

// upsertContactsSQL applies stamped fields with the same rule as
// contacts.Merge, so concurrent batches commute too.
var upsertContactsSQL = func() string {
	var cols, sel, sets []string
	for i, f := range contacts.FieldNames {
		cols = append(cols, f, f+"_at", f+"_ev")
		sel = append(sel, fmt.Sprintf("coalesce(u.v[%d], '')", i+1), fmt.Sprintf("u.at[%d]", i+1), fmt.Sprintf("coalesce(u.ev[%d], '')", i+1))
		newer := fmt.Sprintf("(excluded.%[1]s_at IS NOT NULL AND (c.%[1]s_at IS NULL OR (excluded.%[1]s_at, excluded.%[1]s_ev, excluded.%[1]s) > (c.%[1]s_at, c.%[1]s_ev, c.%[1]s)))", f)
		for _, col := range []string{f, f + "_at", f + "_ev"} {
			sets = append(sets, fmt.Sprintf("%s = CASE WHEN %s THEN excluded.%s ELSE c.%s END", col, newer, col, col))
		}
	}
	return fmt.Sprintf(`
		INSERT INTO contacts AS c (tenant, customer_id, %s)
		SELECT u.tenant, u.customer_id, %s
		FROM (SELECT unnest($1::text[]) AS tenant, unnest($2::text[]) AS customer_id,
		             jsonb_array_elements($3::jsonb) AS j) AS r,
		     LATERAL (SELECT r.tenant, r.customer_id,
		             ARRAY(SELECT jsonb_array_elements_text(r.j->'v')) AS v,
		             ARRAY(SELECT nullif(x, '')::timestamptz FROM jsonb_array_elements_text(r.j->'at') AS x) AS at,
		             ARRAY(SELECT jsonb_array_elements_text(r.j->'ev')) AS ev) AS u
		ON CONFLICT (tenant, customer_id) DO UPDATE SET %s`,
		strings.Join(cols, ", "), strings.Join(sel, ", "), strings.Join(sets, ",\n"))
}()

// ApplyContacts upserts merged contacts (one per tenant and customer).
func ApplyContacts(ctx context.Context, q Querier, cs []contacts.Contact) error {
	if len(cs) == 0 {
		return nil
	}
	// In key order (bytewise), whatever order the batch named them in: the
	// upsert locks each row it meets, and two replicas' batches meeting
	// the same customers in different orders deadlocked.
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b contacts.Contact) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.CustomerID, b.CustomerID))
	})
	tenants, customers := make([]string, len(cs)), make([]string, len(cs))
	type row struct {
		V  []string `json:"v"`
		At []string `json:"at"`
		Ev []string `json:"ev"`
	}
	rows := make([]row, len(cs))
	for i, c := range cs {
		tenants[i], customers[i] = c.Tenant, c.CustomerID
		for _, f := range c.Fields {
			at := ""
			if !f.At.IsZero() && f.Value != "" {
				at = f.At.UTC().Format(time.RFC3339Nano)
			}
			rows[i].V = append(rows[i].V, f.Value)
			rows[i].At = append(rows[i].At, at)
			rows[i].Ev = append(rows[i].Ev, f.Event)
		}
	}
	js, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, upsertContactsSQL, tenants, customers, js); err != nil {
		return fmt.Errorf("upsert %d contacts: %w", len(cs), err)
	}
	return nil
}

// Contact is a contact as the policy and renderer need it.
type Contact struct {
	Known                                         bool
	Email, Phone, FirstName, LastName, Locale, TZ string
	EmailConsent, SMSConsent                      string
	EmailConsentAt, SMSConsentAt                  time.Time
}

// Key is a tenant and customer.
type Key struct{ Tenant, Customer string }

// CompareKeys orders keys by tenant, then customer, bytewise as the key
// columns compare (COLLATE "C").
func CompareKeys(a, b Key) int {
	return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Customer, b.Customer))
}

// LoadContacts returns the contacts of keys (missing ones are not Known).
func LoadContacts(ctx context.Context, q Querier, keys []Key) (map[Key]Contact, error) {
	ts, cs := split(keys)
	rows, err := q.Query(ctx, `
		SELECT tenant, customer_id, email, phone, first_name, last_name, locale, time_zone,
		       email_consent, coalesce(email_consent_at, 'epoch'), sms_consent, coalesce(sms_consent_at, 'epoch')
		FROM contacts WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, ts, cs)
	if err != nil {
		return nil, fmt.Errorf("load contacts: %w", err)
	}
	out := map[Key]Contact{}
	for rows.Next() {
		var k Key
		c := Contact{Known: true}
		if err := rows.Scan(&k.Tenant, &k.Customer, &c.Email, &c.Phone, &c.FirstName, &c.LastName, &c.Locale, &c.TZ,
			&c.EmailConsent, &c.EmailConsentAt, &c.SMSConsent, &c.SMSConsentAt); err != nil {
			return nil, fmt.Errorf("load contacts: %w", err)
		}
		if c.EmailConsent == "" {
			c.EmailConsentAt = time.Time{}
		}
		if c.SMSConsent == "" {
			c.SMSConsentAt = time.Time{}
		}
		out[k] = c
	}
	return out, rows.Err()
}

func split(keys []Key) ([]string, []string) {
	ts, cs := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ts[i], cs[i] = k.Tenant, k.Customer
	}
	return ts, cs
}

// PrefKey names one preference.
type PrefKey struct {
	Key
	Channel  notifierv1.Channel
	Category notifierv1.Category
}

// LoadPrefs returns the stored preferences of the customers.
func LoadPrefs(ctx context.Context, q Querier, keys []Key) (map[PrefKey]policy.Pref, error) {
	ts, cs := split(keys)
	rows, err := q.Query(ctx, `
		SELECT tenant, customer_id, channel, category, subscribed, updated_at, source
		FROM preferences WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, ts, cs)
	if err != nil {
		return nil, fmt.Errorf("load preferences: %w", err)
	}
	out := map[PrefKey]policy.Pref{}
	for rows.Next() {
		var k PrefKey
		var ch, cat int16
		var p policy.Pref
		if err := rows.Scan(&k.Tenant, &k.Customer, &ch, &cat, &p.Subscribed, &p.At, &p.Source); err != nil {
			return nil, fmt.Errorf("load preferences: %w", err)
		}
		k.Channel, k.Category = notifierv1.Channel(ch), notifierv1.Category(cat)
		out[k] = p
	}
	return out, rows.Err()
}

// SetPref stores one preference (the latest write wins).
func SetPref(ctx context.Context, q Querier, k PrefKey, p policy.Pref, requestID string) error {
	_, err := q.Exec(ctx, `
		INSERT INTO preferences (tenant, customer_id, channel, category, subscribed, source, request_id, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (tenant, customer_id, channel, category) DO UPDATE SET
			subscribed = excluded.subscribed, source = excluded.source, request_id = excluded.request_id, updated_at = excluded.updated_at
		WHERE preferences.updated_at <= excluded.updated_at`,
		k.Tenant, k.Customer, int16(k.Channel), int16(k.Category), p.Subscribed, p.Source, requestID, p.At)
	if err != nil {
		return fmt.Errorf("set preference: %w", err)
	}
	return nil
}

// SuppKey names one suppressed address.
type SuppKey struct {
	Tenant  string
	Channel notifierv1.Channel
	Address string
}

// LoadSuppressions returns the reasons of the listed addresses among keys.
func LoadSuppressions(ctx context.Context, q Querier, keys []SuppKey) (map[SuppKey]string, error) {
	ts, chs, as := make([]string, len(keys)), make([]int16, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ts[i], chs[i], as[i] = k.Tenant, int16(k.Channel), NormalizeAddress(k.Channel, k.Address)
	}
	rows, err := q.Query(ctx, `
		SELECT tenant, channel, address, reason FROM suppressions
		WHERE (tenant, channel, address) IN (SELECT * FROM unnest($1::text[], $2::smallint[], $3::text[]))`, ts, chs, as)
	if err != nil {
		return nil, fmt.Errorf("load suppressions: %w", err)
	}
	out := map[SuppKey]string{}
	for rows.Next() {
		var k SuppKey
		var ch int16
		var reason string
		if err := rows.Scan(&k.Tenant, &ch, &k.Address, &reason); err != nil {
			return nil, fmt.Errorf("load suppressions: %w", err)
		}
		k.Channel = notifierv1.Channel(ch)
		out[k] = reason
	}
	return out, rows.Err()
}

// NormalizeAddress is the form addresses are compared in: email
// lower-cased, phone numbers without spaces, dashes and parentheses.
func NormalizeAddress(ch notifierv1.Channel, a string) string {
	a = strings.TrimSpace(a)
	if ch == notifierv1.Channel_CHANNEL_SMS {
		return strings.Map(func(r rune) rune {
			if r == ' ' || r == '-' || r == '(' || r == ')' || r == '.' {
				return -1
			}
			return r
		}, a)
	}
	return strings.ToLower(a)
}

// customerLockKey is the advisory lock key of customer c of tenant t, in
// SQL: LockCustomers and ClaimDueCustomers must take the same.
const customerLockKey = `hashtextextended(t || '/' || c, 0)`

// LockCustomers serialises policy decisions per customer for the rest of
// tx (across replicas), so two requests cannot both take the cap's last
// slot. Keys are locked in sorted order to avoid deadlocks.
func LockCustomers(ctx context.Context, tx pgx.Tx, keys []Key) error {
	ts, cs := split(keys)
	_, err := tx.Exec(ctx, `
		SELECT pg_advisory_xact_lock(`+customerLockKey+`)
		FROM (SELECT DISTINCT t, c FROM unnest($1::text[], $2::text[]) AS u(t, c) ORDER BY 1, 2) AS s`, ts, cs)
	if err != nil {
		return fmt.Errorf("lock customers: %w", err)
	}
	return nil
}

// LoadCapTimes returns, per customer, when their marketing messages since
// `since` took a cap slot.
func LoadCapTimes(ctx context.Context, q Querier, keys []Key, since time.Time) (map[Key][]time.Time, error) {
	ts, cs := split(keys)
	rows, err := q.Query(ctx, `
		SELECT tenant, customer_id, cap_at FROM deliveries
		WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND cap_at > $3`, ts, cs, since)
	if err != nil {
		return nil, fmt.Errorf("load frequency cap: %w", err)
	}
	out := map[Key][]time.Time{}
	for rows.Next() {
		var k Key
		var at time.Time
		if err := rows.Scan(&k.Tenant, &k.Customer, &at); err != nil {
			return nil, fmt.Errorf("load frequency cap: %w", err)
		}
		out[k] = append(out[k], at)
	}
	return out, rows.Err()
}
