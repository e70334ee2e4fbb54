package metrics_test

import (
	"context"
	"encoding/csv"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// loadOnlineRetail reads testdata/online_retail_orders.csv (UCI Online
// Retail, one row per order) as order.placed events and as the domain's
// orders, money parsed without floats.
func loadOnlineRetail(t testing.TB) ([]*eventsv1.Event, []retention.Order) {
	t.Helper()
	f, err := os.Open("../../testdata/online_retail_orders.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(records[0], ","); got != "InvoiceNo,customer,at,total" {
		t.Fatalf("header %q", got)
	}
	var evs []*eventsv1.Event
	var orders []retention.Order
	for i, rec := range records[1:] {
		at, err := time.Parse(time.DateTime, rec[2])
		if err != nil {
			t.Fatalf("row %d: %v", i+2, err)
		}
		pounds, pence, ok := strings.Cut(rec[3], ".")
		minor, err := strconv.ParseInt(pounds+pence, 10, 64)
		if !ok || len(pence) != 2 || err != nil {
			t.Fatalf("row %d: total %q", i+2, rec[3])
		}
		evs = append(evs, orderEvent(rec[0], rec[0], rec[1], at, minor, "GBP"))
		orders = append(orders, retention.Order{ID: rec[0], Customer: retention.CustomerID(rec[1]), At: at, TotalMinor: minor})
	}
	return evs, orders
}

// TestOnlineRetail loads the 18,532 orders of the UCI Online Retail data set
// through the bus and compares the service's 2011-Q2 retention and repeat
// purchase and its 2011 cohort matrix with the domain's reference
// computation over the same rows (itself checked against plain loops over
// the rows in internal/retention).
func TestOnlineRetail(t *testing.T) {
	s := setup(t)
	evs, orders := loadOnlineRetail(t)
	if len(evs) != 18532 {
		t.Fatalf("%d orders, want 18532", len(evs))
	}
	start := time.Now()
	s.publish(t, "retail", evs)
	s.caughtUp(t)
	t.Logf("%d orders published and projected in %s", len(evs), time.Since(start).Round(time.Millisecond))

	ledger := retention.NewLedger(orders, nil)
	acts := ledger.Activities()
	ctx := context.Background()
	c := s.client(t, "retail")

	q2 := mustPeriod(day("2011-04-01"), day("2011-07-01"))
	got, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: pbPeriod(q2)}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	want := retention.CountRetention(acts, q2, retention.DefaultWindow)
	gotCounts := retention.RetentionCounts{
		Start: got.ActiveAtStart, End: got.ActiveAtEnd, New: got.NewCustomers, Retained: got.Retained,
		Churned: got.Churned, Reactivated: got.Reactivated, NewActiveAtEnd: got.NewActiveAtEnd,
	}
	if gotCounts != want {
		t.Fatalf("2011-Q2 retention: service %+v, reference %+v", gotCounts, want)
	}
	crr, _ := want.CRR().Percent()
	if got.RetentionRate.Percent != crr || !got.RetentionRate.Defined {
		t.Fatalf("2011-Q2 CRR %v, reference %v", got.RetentionRate.Percent, crr)
	}
	t.Logf("2011-Q2: S=%d E=%d N=%d retained=%d churned=%d reactivated=%d CRR=%.2f%% churn=%.2f%%",
		got.ActiveAtStart, got.ActiveAtEnd, got.NewCustomers, got.Retained, got.Churned, got.Reactivated,
		got.RetentionRate.Percent, got.ChurnRate.Percent)

	repeat, err := c.GetRepeatPurchase(ctx, &metricsv1.GetRepeatPurchaseRequest{Period: pbPeriod(q2)}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	if wantRepeat := retention.CountRepeat(acts, q2); repeat.InPeriod.Buyers != wantRepeat.Buyers || repeat.InPeriod.RepeatBuyers != wantRepeat.Repeaters {
		t.Fatalf("2011-Q2 repeat purchase: service %s, reference %+v", dump(repeat.InPeriod), wantRepeat)
	}

	cohorts, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: "2011-01", ToMonth: "2011-12"}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	table, err := retention.Cohorts(ledger.Orders, retention.MonthFor(2011, time.January), retention.MonthFor(2011, time.December))
	if err != nil {
		t.Fatal(err)
	}
	if cohorts.Currency != "GBP" || len(cohorts.Rows) != len(table.Rows) {
		t.Fatalf("cohorts: %s currency, %d rows; want GBP, %d", cohorts.Currency, len(cohorts.Rows), len(table.Rows))
	}
	for i, row := range table.Rows {
		gotRow := cohorts.Rows[i]
		if gotRow.Cohort != row.Cohort.String() || gotRow.Members != row.Members || len(gotRow.Cells) != len(row.Active) {
			t.Fatalf("cohort %s: service %s with %d cells, reference %d members, %d cells", row.Cohort, gotRow.Cohort, len(gotRow.Cells), row.Members, len(row.Active))
		}
		for k, cell := range gotRow.Cells {
			perMember, _ := row.RevenuePerMember(k)
			if cell.Active != row.Active[k] || cell.RevenueMinor != row.NetMinor[k] || cell.RevenuePerMemberMinor != perMember {
				t.Fatalf("cohort %s month +%d: service %s, reference active %d revenue %d per member %d",
					row.Cohort, k, dump(cell), row.Active[k], row.NetMinor[k], perMember)
			}
		}
	}
	jan := cohorts.Rows[0]
	t.Logf("2011-01 cohort: %d members, +1 month %.1f%%, +6 months %.1f%%", jan.Members, jan.Cells[1].Share.Percent, jan.Cells[6].Share.Percent)

	// Loading part of the file again (an import re-run) changes nothing.
	// (Only part: every message of it is a JetStream duplicate, which the
	// publisher learns one message at a time.)
	s.publish(t, "retail", evs[:1000])
	s.caughtUp(t)
	again, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: pbPeriod(q2)}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(again, got) {
		t.Fatalf("after re-import: %s, before %s", dump(again), dump(got))
	}
}
