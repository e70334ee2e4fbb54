package importer

import (
	"os"
	"testing"

	"github.com/retainhq/retain/services/ingest/event"
)

// TestImportOnlineRetailOrders imports the UCI Online Retail orders (see
// testdata/README.md) with the mapping from the `retain import` docs and checks
// the figures published with the data set.
func TestImportOnlineRetailOrders(t *testing.T) {
	f, err := os.Open("../../../../testdata/online_retail_orders.csv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })

	opts := ordersOptions(t)
	opts.Now = testNow
	r, err := NewCSVReader(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	var (
		orders    int
		totalGBP  int64
		customers = map[string]bool{}
		ids       = map[string]bool{}
	)
	for r.Next() {
		row := r.Row()
		if row.Err != nil {
			t.Fatalf("%v", row.Err)
		}
		ev := row.Event
		if errs := event.Validate(ev, testNow); len(errs) != 0 {
			t.Fatalf("line %d does not validate: %v", row.Line, errs)
		}
		o := ev.GetOrderPlaced()
		if o.GetTotal().GetCurrency() != "GBP" {
			t.Fatalf("line %d: currency %q", row.Line, o.GetTotal().GetCurrency())
		}
		orders++
		totalGBP += o.GetTotal().GetAmountMinor()
		customers[o.GetCustomerId()] = true
		ids[ev.GetId()] = true
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if orders != 18532 {
		t.Errorf("orders = %d, want 18532", orders)
	}
	if len(ids) != orders {
		t.Errorf("%d distinct ids for %d orders", len(ids), orders)
	}
	if len(customers) != 4338 {
		t.Errorf("customers = %d, want 4338", len(customers))
	}
	if totalGBP != 891140790 {
		t.Errorf("total = %d pence, want 891140790 (GBP 8,911,407.90)", totalGBP)
	}
}
