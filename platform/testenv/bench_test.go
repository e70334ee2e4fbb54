package testenv_test

import (
	"context"
	"testing"

	"github.com/retainhq/retain/platform/testenv"
)

// TestRawStoreKeyCollatesC: the raw baseline's key compares bytewise like
// every service key, even where a table of an older run was left with the
// database's default collation.
func TestRawStoreKeyCollatesC(t *testing.T) {
	pool := testenv.MigratedPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_raw (id text COLLATE "POSIX" PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	testenv.RawStore(t, pool)
	var coll string
	if err := pool.QueryRow(ctx, `
		SELECT c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
		WHERE a.attrelid = 'bench_raw'::regclass AND a.attname = 'id'`).Scan(&coll); err != nil {
		t.Fatal(err)
	}
	if coll != "C" {
		t.Errorf("bench_raw.id collates %q, want \"C\"", coll)
	}
}
