package retention

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// CustomerRevenue is a customer's net revenue over some range.
type CustomerRevenue struct {
	Customer CustomerID
	NetMinor int64
	Orders   int64
}

// RevenueByCustomer sums the net value of the orders placed in p, one entry
// per customer with at least one order in p, ranked (see Rank).
func RevenueByCustomer(orders []NetOrder, p Period) []CustomerRevenue {
	byCustomer := make(map[CustomerID]*CustomerRevenue)
	for _, o := range orders {
		if !p.Contains(o.At) {
			continue
		}
		r := byCustomer[o.Customer]
		if r == nil {
			r = &CustomerRevenue{Customer: o.Customer}
			byCustomer[o.Customer] = r
		}
		r.NetMinor += o.NetMinor()
		r.Orders++
	}
	out := make([]CustomerRevenue, 0, len(byCustomer))
	for _, r := range byCustomer {
		out = append(out, *r)
	}
	Rank(out)
	return out
}

// compareRank is the one order of every customer ranking: revenue
// descending, then customer id ascending, so that ties (several customers
// with exactly the same revenue) still have one stable order and pages never
// repeat or skip anyone.
func compareRank(a, b CustomerRevenue) int {
	if c := cmp.Compare(b.NetMinor, a.NetMinor); c != 0 {
		return c
	}
	return cmp.Compare(a.Customer, b.Customer)
}

// Rank sorts customers by revenue descending, then customer id ascending.
func Rank(rs []CustomerRevenue) { slices.SortFunc(rs, compareRank) }

// TopCustomers is the top share of customers by revenue and what they are
// worth: the 80/20 check.
type TopCustomers struct {
	// Customers is the size of the top group: ceil(n x percent / 100).
	Customers int64
	// Of is n, every customer with an order in the range.
	Of int64
	// TopNetMinor is the revenue of the top group; AllNetMinor of everyone.
	TopNetMinor int64
	AllNetMinor int64
}

// RevenueShare is the top group's share of revenue.
func (t TopCustomers) RevenueShare() Ratio { return Ratio{Num: t.TopNetMinor, Den: t.AllNetMinor} }

// Top returns the top percent of ranked customers (as ranked by Rank) and
// their share of revenue. The percent is taken to 0.01% (basis points) and the
// group size rounds up, so that "top 20%" of 7 customers is 2 customers and
// any positive percent of a non-empty list holds at least one customer.
func Top(ranked []CustomerRevenue, percent float64) (TopCustomers, error) {
	if math.IsNaN(percent) || percent <= 0 || percent > 100 {
		return TopCustomers{}, fmt.Errorf("top percent %v: must be in (0, 100]", percent)
	}
	bp := int64(math.Round(percent * 100))
	if bp == 0 {
		return TopCustomers{}, fmt.Errorf("top percent %v: must be at least 0.01", percent)
	}
	n := int64(len(ranked))
	k := (n*bp + 9999) / 10000
	t := TopCustomers{Customers: k, Of: n}
	for i, r := range ranked {
		if int64(i) < k {
			t.TopNetMinor += r.NetMinor
		}
		t.AllNetMinor += r.NetMinor
	}
	return t, nil
}

// RankCursor marks the last customer of a page: keyset pagination over the
// ranking, which a store can answer with an index seek and which stays
// stable when customers before the cursor change.
type RankCursor struct {
	NetMinor int64
	Customer CustomerID
}

// RankAfter is how many ranked customers come up to the cursor, it
// included (0 when after is nil): the rank before the page after it,
// whether or not the cursor's customer is still in the ranking.
func RankAfter(ranked []CustomerRevenue, after *RankCursor) int {
	if after == nil {
		return 0
	}
	c := CustomerRevenue{Customer: after.Customer, NetMinor: after.NetMinor}
	n, found := slices.BinarySearchFunc(ranked, c, compareRank)
	if found {
		n++
	}
	return n
}

// PageAfter returns up to limit ranked customers that come after the cursor
// (from the start when after is nil), and the cursor of the next page, nil
// on the last page.
func PageAfter(ranked []CustomerRevenue, after *RankCursor, limit int) ([]CustomerRevenue, *RankCursor) {
	start := RankAfter(ranked, after)
	if limit <= 0 || start >= len(ranked) {
		return nil, nil
	}
	end := min(start+limit, len(ranked))
	page := ranked[start:end]
	if end == len(ranked) {
		return page, nil
	}
	last := page[len(page)-1]
	return page, &RankCursor{NetMinor: last.NetMinor, Customer: last.Customer}
}
