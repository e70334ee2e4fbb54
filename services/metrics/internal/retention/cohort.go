package retention

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// CohortCell is one cell of the cohort matrix: the members of Cohort (the
// customers whose first order fell in that month) who ordered in Month, and
// what those orders are worth. The diagonal cell (Month == Cohort) counts
// every member, since each made their first order then: it is the cohort's
// size.
type CohortCell struct {
	Cohort Month
	Month  Month
	// Active is the number of members with at least one order in Month.
	Active int64
	// NetMinor is the net value of the members' orders placed in Month.
	NetMinor int64
}

// CohortRow is one cohort's line of the matrix.
type CohortRow struct {
	Cohort Month
	// Members is the cohort's size.
	Members int64
	// Active[k] and NetMinor[k] describe month Cohort+k.
	Active   []int64
	NetMinor []int64
}

// Retention is the share of the cohort with an order in month Cohort+k.
func (r CohortRow) Retention(k int) Ratio { return Ratio{Num: r.Active[k], Den: r.Members} }

// RevenuePerMember is the net revenue of month Cohort+k divided by the whole
// cohort (not just its active members), rounded to minor units.
func (r CohortRow) RevenuePerMember(k int) (minor int64, ok bool) {
	return AverageMinor(r.NetMinor[k], r.Members)
}

// CohortTable is the triangle of cohorts First..Last, each followed up to
// Last.
type CohortTable struct {
	First, Last Month
	Rows        []CohortRow
}

// AssembleCohorts lays out cells as a table of the cohorts First..Last, each
// with months Cohort..Last. The cells may come from the reference computation
// or from the store's counters; cells outside the triangle, duplicates and
// impossible counts are reported rather than dropped, since they mean the
// counters are wrong.
func AssembleCohorts(first, last Month, cells []CohortCell) (CohortTable, error) {
	if err := ValidateCohortRange(first, last); err != nil {
		return CohortTable{}, err
	}
	t := CohortTable{First: first, Last: last, Rows: make([]CohortRow, last-first+1)}
	for i := range t.Rows {
		c := first + Month(i)
		n := int(last-c) + 1
		t.Rows[i] = CohortRow{Cohort: c, Active: make([]int64, n), NetMinor: make([]int64, n)}
	}
	seen := make(map[[2]Month]bool, len(cells))
	for _, cell := range cells {
		if cell.Cohort < first || cell.Cohort > last || cell.Month < cell.Cohort || cell.Month > last {
			return CohortTable{}, fmt.Errorf("cohort cell %s/%s: outside cohorts %s..%s", cell.Cohort, cell.Month, first, last)
		}
		if seen[[2]Month{cell.Cohort, cell.Month}] {
			return CohortTable{}, fmt.Errorf("cohort cell %s/%s: given twice", cell.Cohort, cell.Month)
		}
		if cell.Active < 0 {
			return CohortTable{}, fmt.Errorf("cohort cell %s/%s: negative count %d", cell.Cohort, cell.Month, cell.Active)
		}
		seen[[2]Month{cell.Cohort, cell.Month}] = true
		row := &t.Rows[cell.Cohort-first]
		k := cell.Month - cell.Cohort
		row.Active[k] = cell.Active
		row.NetMinor[k] = cell.NetMinor
	}
	for i := range t.Rows {
		row := &t.Rows[i]
		row.Members = row.Active[0]
		for k, a := range row.Active {
			if a > row.Members {
				return CohortTable{}, fmt.Errorf("cohort %s: %d active in %s but only %d members", row.Cohort, a, row.Cohort+Month(k), row.Members)
			}
		}
	}
	return t, nil
}

// CohortCells is the reference computation of the cells of cohorts
// first..last from raw orders. Orders must hold every order of every customer
// up to the end of last (earlier orders decide cohorts); orders after last
// are ignored. Cells with no active member are omitted.
func CohortCells(orders []NetOrder, first, last Month) ([]CohortCell, error) {
	if err := ValidateCohortRange(first, last); err != nil {
		return nil, err
	}
	firstOrder := make(map[CustomerID]time.Time)
	for _, o := range orders {
		if f, ok := firstOrder[o.Customer]; !ok || o.At.Before(f) {
			firstOrder[o.Customer] = o.At
		}
	}
	type key struct{ cohort, month Month }
	type acc struct {
		members map[CustomerID]struct{}
		net     int64
	}
	cells := make(map[key]*acc)
	for _, o := range orders {
		cohort, month := MonthOf(firstOrder[o.Customer]), MonthOf(o.At)
		if cohort < first || cohort > last || month > last {
			continue
		}
		k := key{cohort, month}
		a := cells[k]
		if a == nil {
			a = &acc{members: make(map[CustomerID]struct{})}
			cells[k] = a
		}
		a.members[o.Customer] = struct{}{}
		a.net += o.NetMinor()
	}
	out := make([]CohortCell, 0, len(cells))
	for k, a := range cells {
		out = append(out, CohortCell{Cohort: k.cohort, Month: k.month, Active: int64(len(a.members)), NetMinor: a.net})
	}
	slices.SortFunc(out, func(a, b CohortCell) int {
		if c := cmp.Compare(a.Cohort, b.Cohort); c != 0 {
			return c
		}
		return cmp.Compare(a.Month, b.Month)
	})
	return out, nil
}

// Cohorts is the reference cohort table from raw orders.
func Cohorts(orders []NetOrder, first, last Month) (CohortTable, error) {
	cells, err := CohortCells(orders, first, last)
	if err != nil {
		return CohortTable{}, err
	}
	return AssembleCohorts(first, last, cells)
}
