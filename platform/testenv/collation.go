package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
)

// KeyLocale is the default collation of the database RequireKeysCollateC
// migrates into: a libc locale, as a Debian server's initdb picks, and one
// that every glibc has.
const KeyLocale = "C.UTF-8"

// RequireKeysCollateC fails t unless every text column an index reads (its
// keys, INCLUDE columns, expressions and partial index predicate) has the
// "C" collation after the bus migrations and sets have run in a new
// database whose default collation is KeyLocale (decision 0019). Call it
// from a test of every component with its migration sets: a later
// migration that indexes a text column without COLLATE "C" fails it.
func RequireKeysCollateC(t testing.TB, sets ...pg.MigrationSet) {
	t.Helper()
	for _, c := range KeyColumnsNotC(t, sets...) {
		t.Errorf("%s: collate it \"C\" (text keys compare bytewise whatever the server's locale, decision 0019)", c)
	}
}

// KeyColumnsNotC migrates the bus tables and sets into a new database whose
// default collation is KeyLocale and returns, one line each, the indexed
// text columns whose collation is not "C" (table.column, the index, the
// collation), in order. It fails t if the check cannot run or examines no
// indexed text column at all (a check that passes by seeing nothing).
func KeyColumnsNotC(t testing.TB, sets ...pg.MigrationSet) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// template0: template1 may have been created with another locale.
	url := newDatabase(t, "TEMPLATE template0 ENCODING 'UTF8' LOCALE '"+KeyLocale+"'")
	pool, err := pg.Connect(ctx, url, 2, "retain-test")
	if err != nil {
		t.Fatalf("testenv: connect: %v", err)
	}
	defer pool.Close()
	var collate string
	if err := pool.QueryRow(ctx, "SELECT datcollate FROM pg_database WHERE datname = current_database()").Scan(&collate); err != nil {
		t.Fatalf("testenv: read the database's collation: %v", err)
	}
	if collate != KeyLocale {
		t.Fatalf("testenv: database created with LOCALE %s has collation %q", KeyLocale, collate)
	}
	if err := pg.Migrate(ctx, pool, nil, append([]pg.MigrationSet{bus.Migrations}, sets...)...); err != nil {
		t.Fatalf("testenv: migrate: %v", err)
	}

	// Every (index, column) pair an index reads: its key and INCLUDE
	// columns (indkey), and the columns of its expressions and predicate
	// (the index's dependencies on them). Plus the collation of each index
	// column that is an expression or whose collation COLLATE set apart
	// from its column's.
	// retain_schema_migrations belongs to pg.Migrate, read once at start.
	const query = `
WITH used AS (
	SELECT x.indexrelid, x.indrelid, k.attnum
	FROM pg_index x CROSS JOIN unnest(x.indkey::int2[]) AS k(attnum)
	WHERE k.attnum > 0
	UNION
	SELECT d.objid, d.refobjid, d.refobjsubid::int2
	FROM pg_depend d JOIN pg_index x ON x.indexrelid = d.objid AND x.indrelid = d.refobjid
	WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
), checked AS (
	SELECT t.relname AS tbl, i.relname AS idx, a.attname::text AS what, a.attcollation AS coll
	FROM used
	JOIN pg_class t ON t.oid = used.indrelid
	JOIN pg_class i ON i.oid = used.indexrelid
	JOIN pg_attribute a ON a.attrelid = used.indrelid AND a.attnum = used.attnum
	WHERE t.relnamespace = current_schema()::regnamespace AND a.attcollation <> 0
	UNION ALL
	SELECT t.relname, i.relname, 'index column ' || c.n, c.coll
	FROM pg_index x
	JOIN pg_class t ON t.oid = x.indrelid
	JOIN pg_class i ON i.oid = x.indexrelid
	CROSS JOIN unnest(x.indcollation::oid[], x.indkey::int2[]) WITH ORDINALITY AS c(coll, attnum, n)
	LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = c.attnum AND c.attnum > 0
	WHERE t.relnamespace = current_schema()::regnamespace AND c.coll <> 0
	  AND c.coll IS DISTINCT FROM a.attcollation
)
SELECT tbl, idx, what, coalesce(co.collname, coll::text), coll = 'pg_catalog."C"'::regcollation
FROM checked LEFT JOIN pg_collation co ON co.oid = checked.coll
WHERE tbl <> 'retain_schema_migrations'
ORDER BY tbl, what, idx`
	rows, err := pool.Query(ctx, query)
	if err != nil {
		t.Fatalf("testenv: read the indexes' collations: %v", err)
	}
	var (
		out                       []string
		checked                   int
		table, index, what, collN string
		isC                       bool
	)
	_, err = pgx.ForEachRow(rows, []any{&table, &index, &what, &collN, &isC}, func() error {
		checked++
		if !isC {
			out = append(out, fmt.Sprintf("%s.%s (index %s) has collation %q", table, what, index, collN))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: read the indexes' collations: %v", err)
	}
	if checked == 0 {
		t.Fatalf("testenv: the migrations left no indexed text column to check")
	}
	return out
}
