package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

// TestAdmitSeveralWeighsOnlyEntriesNearTheBatch admits several entrants of
// a long-lived customer of a campaign entered once per 30 days, whose
// entries lie far outside the gap of the batch, before and after it, but
// for one within the gap of the newest entrant (later than it, not the
// last) and one exactly a gap before the oldest, beside a customer of another shop with the same ids whose
// entry would keep out the first one's oldest entrant: the entrants enter
// as they would against every entry of their own shop's customer.
func TestAdmitSeveralWeighsOnlyEntriesNearTheBatch(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	const day = 24 * time.Hour
	const gap = 30 * day
	base := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	at := func(days int) time.Time { return base.Add(time.Duration(days) * day) }
	var entries []Enrollment
	enter := func(tenant string, days ...int) {
		for _, d := range days {
			entries = append(entries, Enrollment{Tenant: tenant, CampaignID: "detractors", Version: 1, CustomerID: "c1", Key: fmt.Sprintf("event:%d", d),
				Anchor: at(d), EnteredAt: at(d), AttributionUntil: at(d + 45), GoalEvent: domain.EventOrderPlaced, Status: domain.StatusCompleted})
		}
	}
	for d := -400; d <= -100; d += 30 {
		enter("shop", d)
	}
	enter("shop", -80, 35, 200) // a gap before the oldest entrant; within the gap of the newest; the last (of the member row)
	enter("other", -48)
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := InsertEnrollments(ctx, tx, entries); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO campaign_members VALUES ('shop', 'detractors', 'c1', true, $1, $2), ('other', 'detractors', 'c1', false, $3, 1)`,
			at(200), len(entries)-1, at(-48))
		return err
	}); err != nil {
		t.Fatal(err)
	}

	entrant := func(tenant string, days int) Entrant {
		return Entrant{Tenant: tenant, CampaignID: "detractors", CustomerID: "c1", Key: fmt.Sprintf("event:%d", days), Anchor: at(days)}
	}
	// Out of time order, as a batch may hold them.
	batch := []Entrant{entrant("shop", 10), entrant("shop", -45), entrant("other", 12), entrant("shop", -50), entrant("other", 10)}
	var got []string
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		admitted, err := Admit(ctx, tx, []Admission{{Gap: gap, Entrants: batch}})
		for _, e := range admitted {
			got = append(got, fmt.Sprintf("%s %s holdout=%t", e.Tenant, e.Key, e.Holdout))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	// shop: -50 is 30 days from the entry at -80 (far enough); -45 is
	// within 30 days of -50, admitted before it; 10 within 30 days of the
	// entry at 35. other: 10 is far from -48, 12 near 10.
	want := []string{"other event:10 holdout=false", "shop event:-50 holdout=true"}
	if !slices.Equal(got, want) {
		t.Errorf("admitted %q, want %q", got, want)
	}
	for tenant, want := range map[string]string{"shop": fmt.Sprintf("%d %s", len(entries)-1+1, at(200)), "other": fmt.Sprintf("2 %s", at(10))} {
		var n int
		var last time.Time
		if err := pool.QueryRow(ctx, `SELECT entries, last_entered_at FROM campaign_members WHERE tenant = $1`, tenant).Scan(&n, &last); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%d %s", n, last.UTC()); got != want {
			t.Errorf("%s's member row: %s entries and the last, want %s", tenant, got, want)
		}
	}
}
