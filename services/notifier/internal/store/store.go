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

// contactColumns are the contacts table's field columns, in the order of
// contacts.Contact.Fields: each field's value, time and event id.
var contactColumns = func() string {
	var cols []string
	for _, f := range contacts.FieldNames {
		cols = append(cols, f, f+"_at", f+"_ev")
	}
	return strings.Join(cols, ", ")
}()

// contactsInput is the rows $1 (tenants), $2 (customers) and $3 (per
// row, the fields' values, times and event ids as JSON arrays) as a CTE u
// with the contacts table's columns.
var contactsInput = func() string {
	var sel []string
	for i, f := range contacts.FieldNames {
		sel = append(sel, fmt.Sprintf("coalesce(u.v[%[1]d], '') AS %[2]s, u.at[%[1]d] AS %[2]s_at, coalesce(u.ev[%[1]d], '') AS %[2]s_ev", i+1, f))
	}
	return fmt.Sprintf(`
		WITH u AS (SELECT u.tenant, u.customer_id, %s
		FROM (SELECT unnest($1::text[]) AS tenant, unnest($2::text[]) AS customer_id,
		             jsonb_array_elements($3::jsonb) AS j) AS r,
		     LATERAL (SELECT r.tenant, r.customer_id,
		             ARRAY(SELECT jsonb_array_elements_text(r.j->'v')) AS v,
		             ARRAY(SELECT nullif(x, '')::timestamptz FROM jsonb_array_elements_text(r.j->'at') AS x) AS at,
		             ARRAY(SELECT jsonb_array_elements_text(r.j->'ev')) AS ev) AS u)`, strings.Join(sel, ", "))
}()

// updateContactsSQL writes merged contacts over stored ones.
var updateContactsSQL = func() string {
	var sets []string
	for _, f := range contacts.FieldNames {
		for _, col := range []string{f, f + "_at", f + "_ev"} {
			sets = append(sets, fmt.Sprintf("%s = u.%s", col, col))
		}
	}
	return contactsInput + `
		UPDATE contacts AS c SET ` + strings.Join(sets, ", ") + `
		FROM u WHERE c.tenant = u.tenant AND c.customer_id = u.customer_id`
}()

// insertContactsSQL stores new contacts; one stored meanwhile is left
// alone (and not counted).
var insertContactsSQL = contactsInput + `
		INSERT INTO contacts (tenant, customer_id, ` + contactColumns + `)
		SELECT tenant, customer_id, ` + contactColumns + ` FROM u
		ON CONFLICT (tenant, customer_id) DO NOTHING`

// ApplyContacts merges updates (each one customer.updated event's fields;
// several may name one customer) into the stored contacts: a contact is
// read, merged (contacts.MergeAll) and written back. The customers' locks
// (LockCustomers), taken first in one order whatever order the batch named
// them in, keep two replicas' batches from merging into the same contact
// at once; the stored rows are locked too (FOR UPDATE), for a replica not
// yet upgraded, which merges in its upsert without those locks (and
// writes only the consent columns it knows: a run it leaves stale is told
// by its run_of, decision 0046), and a contact it stores between the read
// and the insert fails the batch, which is then retried with it.
func ApplyContacts(ctx context.Context, tx pgx.Tx, updates []contacts.Contact) error {
	if len(updates) == 0 {
		return nil
	}
	byKey := map[Key][]contacts.Contact{}
	var keys []Key
	for _, u := range updates {
		k := Key{Tenant: u.Tenant, Customer: u.CustomerID}
		if _, seen := byKey[k]; !seen {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], u)
	}
	slices.SortFunc(keys, CompareKeys)
	if err := LockCustomers(ctx, tx, keys); err != nil {
		return err
	}
	stored, err := loadContactRows(ctx, tx, keys, true)
	if err != nil {
		return err
	}
	var changed, added contactRows
	for _, k := range keys {
		cur, ok := stored[k]
		if !ok {
			added.add(contacts.MergeAll(contacts.Contact{Tenant: k.Tenant, CustomerID: k.Customer}, byKey[k]))
			continue
		}
		if c := contacts.MergeAll(cur, byKey[k]); c != cur { // else a redelivery, or nothing newer
			changed.add(c)
		}
	}
	if _, err := changed.exec(ctx, tx, updateContactsSQL); err != nil {
		return fmt.Errorf("update %d contacts: %w", len(changed.tenants), err)
	}
	n, err := added.exec(ctx, tx, insertContactsSQL)
	if err != nil {
		return fmt.Errorf("insert %d contacts: %w", len(added.tenants), err)
	}
	if n != int64(len(added.tenants)) {
		return fmt.Errorf("insert %d contacts: %d were stored meanwhile (by a replica not yet upgraded?): the batch is retried", len(added.tenants), int64(len(added.tenants))-n)
	}
	return nil
}

// contactRows are contacts as contactsInput's arguments.
type contactRows struct {
	tenants, customers []string
	rows               []contactRow
}

type contactRow struct {
	V  []string `json:"v"`
	At []string `json:"at"`
	Ev []string `json:"ev"`
}

func (r *contactRows) add(c contacts.Contact) {
	r.tenants, r.customers = append(r.tenants, c.Tenant), append(r.customers, c.CustomerID)
	var row contactRow
	for _, f := range c.Fields {
		at := ""
		if !f.At.IsZero() && f.Value != "" {
			at = f.At.UTC().Format(time.RFC3339Nano)
		}
		row.V = append(row.V, f.Value)
		row.At = append(row.At, at)
		row.Ev = append(row.Ev, f.Event)
	}
	r.rows = append(r.rows, row)
}

// exec runs sql with the rows and returns the rows it affected.
func (r *contactRows) exec(ctx context.Context, tx pgx.Tx, sql string) (int64, error) {
	if len(r.rows) == 0 {
		return 0, nil
	}
	js, err := json.Marshal(r.rows)
	if err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, sql, r.tenants, r.customers, js)
	return tag.RowsAffected(), err
}

// loadContactRows reads the stored contacts of keys with every field's
// stamp; lock: for update, in key order. Key order is byte order
// (CompareKeys; COLLATE "C", as the key columns already are, decision
// 0019), whatever the database's locale: the order in which this batch's
// insert and the upsert of a replica not yet upgraded (fed keys sorted in
// Go) meet the rows, so none waits for another's rows in a cycle.
func loadContactRows(ctx context.Context, q Querier, keys []Key, lock bool) (map[Key]contacts.Contact, error) {
	ts, cs := split(keys)
	forUpdate := ""
	if lock {
		forUpdate = ` ORDER BY tenant COLLATE "C", customer_id COLLATE "C" FOR UPDATE`
	}
	rows, err := q.Query(ctx, `
		SELECT tenant, customer_id, `+contactColumns+`
		FROM contacts WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`+forUpdate, ts, cs)
	if err != nil {
		return nil, fmt.Errorf("load contacts: %w", err)
	}
	defer rows.Close()
	out := map[Key]contacts.Contact{}
	var ats [contacts.NumFields]*time.Time
	for rows.Next() {
		var c contacts.Contact
		dest := []any{&c.Tenant, &c.CustomerID}
		for i := range c.Fields {
			dest = append(dest, &c.Fields[i].Value, &ats[i], &c.Fields[i].Event)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("load contacts: %w", err)
		}
		for i, at := range ats {
			c.Fields[i].At = time.Time{}
			if at != nil && c.Fields[i].Value != "" {
				c.Fields[i].At = at.UTC()
			}
		}
		out[Key{Tenant: c.Tenant, Customer: c.CustomerID}] = c
	}
	return out, rows.Err()
}

// Contact is a contact as the policy and renderer need it.
type Contact struct {
	Known                                         bool
	Email, Phone, FirstName, LastName, Locale, TZ string
	EmailConsent, SMSConsent                      string
	// EmailConsentAt and SMSConsentAt are when the shop's consent took its
	// value (contacts.Contact.ConsentAt), which a preference is compared
	// with.
	EmailConsentAt, SMSConsentAt time.Time
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
	rows, err := loadContactRows(ctx, q, keys, false)
	if err != nil {
		return nil, err
	}
	out := make(map[Key]Contact, len(rows))
	for k, c := range rows {
		out[k] = Contact{Known: true, Email: c.Get(contacts.Email), Phone: c.Get(contacts.Phone), FirstName: c.Get(contacts.FirstName),
			LastName: c.Get(contacts.LastName), Locale: c.Get(contacts.Locale), TZ: c.Get(contacts.TimeZone),
			EmailConsent: c.Get(contacts.EmailConsent), EmailConsentAt: c.ConsentAt(contacts.EmailConsent),
			SMSConsent: c.Get(contacts.SMSConsent), SMSConsentAt: c.ConsentAt(contacts.SMSConsent)}
	}
	return out, nil
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
