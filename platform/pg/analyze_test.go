package pg_test

import (
	"context"
	"testing"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func TestGrowthAnalyzerRefreshesAtDoublingCounts(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, testenv.Postgres(t))
	if _, err := pool.Exec(ctx, "CREATE TABLE facts (id int PRIMARY KEY, body text); CREATE TABLE other (id int)"); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	grow := func(to int) {
		t.Helper()
		if _, err := pool.Exec(ctx, "INSERT INTO facts SELECT g, 'x' FROM generate_series(1, $1) g ON CONFLICT DO NOTHING", to); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	// reltuples is -1 until the first ANALYZE, then the row count it saw.
	believed := func(table string) int {
		return count(t, pool, "SELECT reltuples::int FROM pg_class WHERE relname = '"+table+"'")
	}
	a := pg.NewGrowthAnalyzer(pool, nil, "facts (id)", "other")

	grow(1500)
	a.Applied(999)
	a.Wait()
	if n := believed("facts"); n != -1 {
		t.Fatalf("analyzed before 1,000 rows applied: reltuples %d", n)
	}
	a.Applied(1)
	a.Wait()
	if n := believed("facts"); n != 1500 {
		t.Fatalf("at 1,000 rows applied: reltuples %d, want 1500", n)
	}
	if n := believed("other"); n != 0 {
		t.Fatalf("every target is analyzed: other's reltuples %d, want 0", n)
	}

	t.Run("not again before the count doubles", func(t *testing.T) {
		grow(3000)
		a.Applied(999) // 1,999 in all
		a.Wait()
		if n := believed("facts"); n != 1500 {
			t.Fatalf("analyzed again at 1,999 rows applied: reltuples %d", n)
		}
		a.Applied(1)
		a.Wait()
		if n := believed("facts"); n != 3000 {
			t.Fatalf("at 2,000 rows applied: reltuples %d, want 3000", n)
		}
	})

	t.Run("the next threshold is twice the count that crossed one", func(t *testing.T) {
		grow(6000)
		a.Applied(3000) // 5,000: crosses 4,000, next at 10,000
		a.Wait()
		if n := believed("facts"); n != 6000 {
			t.Fatalf("at 5,000 rows applied: reltuples %d, want 6000", n)
		}
		grow(9000)
		a.Applied(4999)
		a.Wait()
		if n := believed("facts"); n != 6000 {
			t.Fatalf("analyzed at 9,999 rows applied: reltuples %d", n)
		}
	})
}
