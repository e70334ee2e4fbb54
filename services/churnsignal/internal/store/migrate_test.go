package store_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// TestHeldRowsKeptByTheIndexOutsideTheAlter: migration 0008 marks the rows
// held before 0007 as still held. It reads them by the partial index of
// 0006, not by a scan of every score, and not in 0007's transaction,
// whose ALTER TABLE holds the table's strongest lock until it ends: on a
// big shop that lock blocked reads and writes of every score for up to a
// minute. The database stands as 0007 left it, held_from never analyzed.
func TestHeldRowsKeptByTheIndexOutsideTheAlter(t *testing.T) {
	ctx := context.Background()
	migs, err := store.Migrations.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var keep *pg.Migration
	upTo7 := fstest.MapFS{}
	for i, m := range migs {
		if m.Version <= 7 {
			upTo7[m.File] = &fstest.MapFile{Data: []byte(m.SQL)}
		}
		if m.Version == 7 && strings.Contains(m.SQL, "\nUPDATE ") {
			t.Errorf("%s updates rows in the transaction of its ALTER TABLE", m.File)
		}
		if m.Version == 8 {
			keep = &migs[i]
		}
	}
	if keep == nil {
		t.Fatal("no migration 0008")
	}
	pool := testenv.MigratedPool(t, pg.MigrationSet{Component: store.Migrations.Component, FS: upTo7})
	// 20,000 scores, 20 held (by code before 0007: no held_changes).
	if _, err := pool.Exec(ctx, `
		INSERT INTO churn_scores (tenant_id, customer_id, band, band_changes, held_from)
		SELECT 'shop', 'c-' || lpad(i::text, 6, '0'), 1, 3, CASE WHEN i % 1000 = 0 THEN 0 END
		FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}

	// The file as the runner runs it (one transaction), its UPDATE
	// explained instead.
	explained := strings.Replace(keep.SQL, "UPDATE churn_scores", "EXPLAIN UPDATE churn_scores", 1)
	if explained == keep.SQL {
		t.Fatalf("%s updates no churn_scores", keep.File)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	results, err := conn.Conn().PgConn().Exec(ctx, explained).ReadAll()
	if _, rbErr := conn.Exec(ctx, "ROLLBACK"); rbErr != nil {
		t.Fatal(rbErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for _, r := range results {
		for _, row := range r.Rows {
			plan = append(plan, string(row[0]))
		}
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "Seq Scan") || !strings.Contains(text, "churn_scores_held") {
		t.Errorf("%s reads the scores by\n%s\nwant the partial index churn_scores_held", keep.File, text)
	}

	if err := pg.Migrate(ctx, pool, nil, store.Migrations); err != nil {
		t.Fatal(err)
	}
	var held, kept int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE held_from IS NOT NULL), count(*) FILTER (WHERE held_changes = band_changes)
		FROM churn_scores`).Scan(&held, &kept); err != nil {
		t.Fatal(err)
	}
	if held != 20 || kept != held {
		t.Errorf("after 0008: %d rows held, %d of them still counting, want 20 and 20", held, kept)
	}
}
