package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestSaveModelKeepsPinsAndNewerFits: fits run for seconds, so another can
// be stored while one runs. An automatic fit never replaces a pinned
// model (`retain churn refit --as-of` pinned it meanwhile); no fit
// replaces one that started after it; a manual live refit does replace a
// pinned model, which is how a pin is lifted.
func TestSaveModelKeepsPinsAndNewerFits(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, store.Migrations)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	save := func(m store.Model, automatic bool) bool {
		t.Helper()
		stored, err := store.SaveModel(ctx, pool, "shop", m, automatic)
		if err != nil {
			t.Fatal(err)
		}
		return stored
	}
	current := func() store.Model {
		t.Helper()
		m, ok, err := store.LoadModel(ctx, pool, "shop")
		if err != nil || !ok {
			t.Fatalf("load model: %v, %t", err, ok)
		}
		return m
	}
	if !save(store.Model{FittedAt: t0, AsOf: t0, Orders: 100}, true) {
		t.Fatal("the first model was not stored")
	}
	pinned := store.Model{FittedAt: t0.Add(2 * time.Minute), AsOf: t0.Add(-24 * time.Hour), Pinned: true, Orders: 90}
	if !save(pinned, false) {
		t.Fatal("a pin was not stored")
	}
	// An automatic fit that started before the pin, or after it, ends now.
	for _, started := range []time.Time{t0.Add(time.Minute), t0.Add(3 * time.Minute)} {
		if save(store.Model{FittedAt: started, AsOf: started, Orders: 150}, true) {
			t.Errorf("an automatic fit started at %s replaced the pinned model", started.Format(time.TimeOnly))
		}
	}
	if m := current(); !m.Pinned || m.Orders != 90 {
		t.Fatalf("stored %+v, want the pinned model", m)
	}
	// A manual live refit lifts the pin; one that started earlier does not
	// replace it.
	live := store.Model{FittedAt: t0.Add(5 * time.Minute), AsOf: t0.Add(5 * time.Minute), Orders: 160}
	if !save(live, false) {
		t.Fatal("a manual live refit did not replace the pinned model")
	}
	if save(store.Model{FittedAt: t0.Add(4 * time.Minute), AsOf: t0.Add(4 * time.Minute), Orders: 155}, false) {
		t.Error("a fit that started before the stored one replaced it")
	}
	if m := current(); m.Pinned || m.Orders != 160 {
		t.Fatalf("stored %+v, want the manual live refit", m)
	}
}
