package retention

import (
	"encoding/csv"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// retailRow is one order of testdata/online_retail_orders.csv.
type retailRow struct {
	invoice  string
	customer string
	at       time.Time
	pence    int64
}

func loadRetail(t *testing.T) []retailRow {
	t.Helper()
	f, err := os.Open("../../../../testdata/online_retail_orders.csv")
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
	rows := make([]retailRow, 0, len(records)-1)
	for i, rec := range records[1:] {
		when, err := time.Parse(time.DateTime, rec[2])
		if err != nil {
			t.Fatalf("row %d: %v", i+2, err)
		}
		// "139.12" -> 13912 pence, without passing money through a float.
		pounds, pence, ok := strings.Cut(rec[3], ".")
		if !ok || len(pence) != 2 {
			t.Fatalf("row %d: total %q", i+2, rec[3])
		}
		minor, err := strconv.ParseInt(pounds+pence, 10, 64)
		if err != nil {
			t.Fatalf("row %d: total %q: %v", i+2, rec[3], err)
		}
		rows = append(rows, retailRow{invoice: rec[0], customer: rec[1], at: when, pence: minor})
	}
	return rows
}

// TestOnlineRetail computes figures of the UCI Online Retail orders with the
// package and again with plain loops over the rows that share nothing with
// it, and asserts they agree.
func TestOnlineRetail(t *testing.T) {
	rows := loadRetail(t)

	// What the dataset's README promises, so a damaged copy fails loudly.
	var allPence int64
	everyone := map[string]bool{}
	for _, r := range rows {
		allPence += r.pence
		everyone[r.customer] = true
	}
	if len(rows) != 18532 || len(everyone) != 4338 || allPence != 891140790 {
		t.Fatalf("dataset: %d orders, %d customers, %d pence; want 18532, 4338, 891140790", len(rows), len(everyone), allPence)
	}

	orders := make([]Order, len(rows))
	for i, r := range rows {
		orders[i] = Order{ID: r.invoice, Customer: CustomerID(r.customer), At: r.at, TotalMinor: r.pence}
	}
	ledger := NewLedger(orders, nil)
	acts := ledger.Activities()

	q2 := Period{From: time.Date(2011, 4, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2011, 7, 1, 0, 0, 0, 0, time.UTC)}
	w := DefaultWindow

	t.Run("2011-Q2 retention, churn and repeat purchase", func(t *testing.T) {
		got := CountRetention(acts, q2, w)
		gotRepeat := CountRepeat(acts, q2)

		// Independent: the definitions read literally over the rows.
		windowDur := 90 * 24 * time.Hour
		first := map[string]time.Time{}
		for _, r := range rows {
			if f, ok := first[r.customer]; !ok || r.at.Before(f) {
				first[r.customer] = r.at
			}
		}
		inS, inE, ordersInQ := map[string]bool{}, map[string]bool{}, map[string]int{}
		for _, r := range rows {
			if !r.at.Before(q2.From.Add(-windowDur)) && r.at.Before(q2.From) {
				inS[r.customer] = true
			}
			if !r.at.Before(q2.To.Add(-windowDur)) && r.at.Before(q2.To) {
				inE[r.customer] = true
			}
			if !r.at.Before(q2.From) && r.at.Before(q2.To) {
				ordersInQ[r.customer]++
			}
		}
		var want RetentionCounts
		var wantRepeat RepeatCounts
		for c, f := range first {
			isNew := !f.Before(q2.From) && f.Before(q2.To)
			if isNew {
				want.New++
			}
			if inS[c] {
				want.Start++
			}
			if inE[c] {
				want.End++
			}
			switch {
			case inS[c] && inE[c]:
				want.Retained++
			case inS[c]:
				want.Churned++
			case inE[c] && isNew:
				want.NewActiveAtEnd++
			case inE[c]:
				want.Reactivated++
			}
			if n := ordersInQ[c]; n >= 1 {
				wantRepeat.Buyers++
				if n >= 2 {
					wantRepeat.Repeaters++
				}
			}
		}
		if got != want {
			t.Fatalf("retention counts: package %+v, independent %+v", got, want)
		}
		if gotRepeat != wantRepeat {
			t.Fatalf("repeat counts: package %+v, independent %+v", gotRepeat, wantRepeat)
		}
		// CRR computed independently from the independent counts.
		wantCRR := float64(want.End-want.New) * 100 / float64(want.Start)
		if crr, ok := got.CRR().Percent(); !ok || crr != wantCRR {
			t.Fatalf("CRR %v, want %v", crr, wantCRR)
		}

		crr, _ := got.CRR().Percent()
		churn, _ := got.ChurnRate().Percent()
		lpa, _ := got.LostPerAcquired().Percent()
		rep, _ := gotRepeat.Rate().Percent()
		t.Logf("2011-Q2 [2011-04-01, 2011-07-01), W=90d: S=%d E=%d N=%d retained=%d churned=%d reactivated=%d new-active-at-end=%d",
			got.Start, got.End, got.New, got.Retained, got.Churned, got.Reactivated, got.NewActiveAtEnd)
		t.Logf("  CRR=(E-N)/S=%.2f%%  churn rate=%.2f%%  lost per acquired=%.2f%%", crr, churn, lpa)
		t.Logf("  repeat purchase: %d of %d buyers = %.2f%%", gotRepeat.Repeaters, gotRepeat.Buyers, rep)
	})

	t.Run("2011 cohort table", func(t *testing.T) {
		jan, dec := MonthFor(2011, time.January), MonthFor(2011, time.December)
		table, err := Cohorts(ledger.Orders, jan, dec)
		if err != nil {
			t.Fatal(err)
		}

		// Independent: months as year*12+month-1 from the row's fields.
		monthIndex := func(t time.Time) int { return t.Year()*12 + int(t.Month()) - 1 }
		firstMonth := map[string]int{}
		for _, r := range rows {
			m := monthIndex(r.at)
			if f, ok := firstMonth[r.customer]; !ok || m < f {
				firstMonth[r.customer] = m
			}
		}
		lo, hi := 2011*12, 2011*12+11
		members := map[int]int64{}
		for _, m := range firstMonth {
			members[m]++
		}
		active := map[[2]int]map[string]bool{}
		revenue := map[[2]int]int64{}
		for _, r := range rows {
			c, m := firstMonth[r.customer], monthIndex(r.at)
			if c < lo || c > hi || m > hi {
				continue
			}
			k := [2]int{c, m}
			if active[k] == nil {
				active[k] = map[string]bool{}
			}
			active[k][r.customer] = true
			revenue[k] += r.pence
		}

		if len(table.Rows) != 12 {
			t.Fatalf("%d cohorts, want 12", len(table.Rows))
		}
		var b strings.Builder
		fmt.Fprintf(&b, "2011 cohorts: share of the cohort ordering in month k (%%), and revenue per member in month k (GBP)\ncohort   size ")
		for k := range 12 {
			fmt.Fprintf(&b, " %5s", "m"+strconv.Itoa(k))
		}
		for i, row := range table.Rows {
			c := lo + i
			if int(row.Cohort) != c || row.Members != members[c] {
				t.Fatalf("cohort %s: %d members, independent %d", row.Cohort, row.Members, members[c])
			}
			for k := range row.Active {
				key := [2]int{c, c + k}
				if row.Active[k] != int64(len(active[key])) || row.NetMinor[k] != revenue[key] {
					t.Fatalf("cohort %s month +%d: package %d active / %d pence, independent %d / %d",
						row.Cohort, k, row.Active[k], row.NetMinor[k], len(active[key]), revenue[key])
				}
			}
			fmt.Fprintf(&b, "\n%s %5d ", row.Cohort, row.Members)
			for k := range row.Active {
				p, _ := row.Retention(k).Percent()
				fmt.Fprintf(&b, " %5.1f", p)
			}
			fmt.Fprintf(&b, "\n%s       ", strings.Repeat(" ", 7))
			for k := range row.Active {
				rpm, _ := row.RevenuePerMember(k)
				fmt.Fprintf(&b, " %5d", rpm/100)
			}
		}
		t.Log(b.String())
	})

	t.Run("other figures", func(t *testing.T) {
		year := Period{From: time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)}
		end := time.Date(2011, 12, 10, 0, 0, 0, 0, time.UTC)
		life := CountRepeatLifetime(acts, end)
		if life.Buyers != 4338 {
			t.Fatalf("lifetime buyers %d, want 4338", life.Buyers)
		}
		sales := SumSales(ledger.Orders, year)
		ranked := RevenueByCustomer(ledger.Orders, year)
		top, err := Top(ranked, 20)
		if err != nil {
			t.Fatal(err)
		}
		rfm, err := ScoreRFM(CustomerValuesAsOf(ledger.Orders, end), end)
		if err != nil {
			t.Fatal(err)
		}
		lifeRate, _ := life.Rate().Percent()
		aov, _ := sales.AOV()
		opc, _ := sales.OrdersPerCustomer().Value()
		share, _ := top.RevenueShare().Percent()
		t.Logf("lifetime repeat purchase as of 2011-12-10: %d of %d = %.2f%%", life.Repeaters, life.Buyers, lifeRate)
		t.Logf("2011: %d orders, %d customers, revenue GBP %d.%02d, AOV GBP %d.%02d, %.2f orders per customer",
			sales.Orders, sales.Customers, sales.NetMinor/100, sales.NetMinor%100, aov/100, aov%100, opc)
		t.Logf("2011: top 20%% = %d of %d customers hold %.1f%% of revenue", top.Customers, top.Of, share)
		var b strings.Builder
		fmt.Fprintf(&b, "RFM as of 2011-12-10 (%d customers):", len(rfm.Customers))
		for _, s := range rfm.Segments {
			fmt.Fprintf(&b, "\n  %-20s %5d customers  GBP %10d", s.Segment, s.Customers, s.NetMinor/100)
		}
		t.Log(b.String())
	})
}
