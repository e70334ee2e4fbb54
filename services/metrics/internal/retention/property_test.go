package retention

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// facts is one tenant's raw input as it may arrive: duplicated, conflicting,
// in any order.
type facts struct {
	orders  []Order
	refunds []Refund
	answers []Answer
}

// randomFacts generates a shop whose order instants are drawn from a pool
// that includes the edges of the periods under test (and a nanosecond either
// side), so that random data exercises the window edges too.
func randomFacts(r *rand.Rand, periods []Period, windows []Window) facts {
	var pool []time.Time
	for _, p := range periods {
		for _, w := range windows {
			for _, edge := range []time.Time{p.From, p.To, p.From.Add(-w.Duration()), p.To.Add(-w.Duration())} {
				pool = append(pool, edge.Add(-time.Nanosecond), edge, edge.Add(time.Nanosecond))
			}
		}
	}
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	instant := func() time.Time {
		if r.IntN(4) == 0 {
			return pool[r.IntN(len(pool))]
		}
		return start.Add(time.Duration(r.Int64N(int64(2 * 365 * Day))))
	}
	var f facts
	nCustomers := 60 + r.IntN(60)
	for i := range 400 + r.IntN(400) {
		o := Order{
			ID:         fmt.Sprintf("o%d", i),
			Customer:   CustomerID(fmt.Sprintf("c%03d", r.IntN(nCustomers))),
			At:         instant(),
			TotalMinor: r.Int64N(20000),
		}
		f.orders = append(f.orders, o)
		if r.IntN(20) == 0 { // a conflicting re-send of the same order id
			o2 := o
			o2.At = instant()
			o2.TotalMinor = r.Int64N(20000)
			f.orders = append(f.orders, o2)
		}
		if r.IntN(8) == 0 {
			f.refunds = append(f.refunds, Refund{ID: fmt.Sprintf("r%d", i), OrderID: o.ID, AmountMinor: 1 + r.Int64N(15000)})
		}
	}
	f.refunds = append(f.refunds, Refund{ID: "orphan", OrderID: "nope", AmountMinor: 5})
	for i := range 300 {
		kind, score := SurveyNPS, r.IntN(11)
		if r.IntN(3) == 0 {
			kind, score = SurveyCSAT, 1+r.IntN(5)
		}
		f.answers = append(f.answers, Answer{
			ID: fmt.Sprintf("s%d", i), Customer: CustomerID(fmt.Sprintf("c%03d", r.IntN(nCustomers))),
			At: instant(), Kind: kind, Score: score,
		})
	}
	return f
}

// shuffledWithDuplicates returns the same facts in a random order, with a
// random subset of them sent again.
func (f facts) shuffledWithDuplicates(r *rand.Rand) facts {
	g := facts{
		orders:  slices.Clone(f.orders),
		refunds: slices.Clone(f.refunds),
		answers: slices.Clone(f.answers),
	}
	for _, o := range f.orders {
		if r.IntN(3) == 0 {
			g.orders = append(g.orders, o)
		}
	}
	for _, x := range f.refunds {
		if r.IntN(3) == 0 {
			g.refunds = append(g.refunds, x)
		}
	}
	for _, a := range f.answers {
		if r.IntN(3) == 0 {
			g.answers = append(g.answers, a)
		}
	}
	r.Shuffle(len(g.orders), func(i, j int) { g.orders[i], g.orders[j] = g.orders[j], g.orders[i] })
	r.Shuffle(len(g.refunds), func(i, j int) { g.refunds[i], g.refunds[j] = g.refunds[j], g.refunds[i] })
	r.Shuffle(len(g.answers), func(i, j int) { g.answers[i], g.answers[j] = g.answers[j], g.answers[i] })
	return g
}

// figures is every figure the package computes for one set of facts.
type figures struct {
	Retention   []RetentionCounts
	Repeat      []RepeatCounts
	Lifetime    RepeatCounts
	Sales       []Sales
	Surveys     []SurveyTally
	Cohorts     CohortTable
	RFM         RFM
	Ranked      []CustomerRevenue
	Top         TopCustomers
	Unmatched   []Refund
	Activities  []Activity
	LedgerCount int
}

func computeFigures(t *testing.T, f facts, periods []Period, windows []Window) figures {
	t.Helper()
	l := NewLedger(f.orders, f.refunds)
	acts := l.Activities()
	var fig figures
	for _, p := range periods {
		for _, w := range windows {
			c := CountRetention(acts, p, w)
			if err := c.Check(); err != nil {
				t.Fatal(err)
			}
			fig.Retention = append(fig.Retention, c)
		}
		fig.Repeat = append(fig.Repeat, CountRepeat(acts, p))
		fig.Sales = append(fig.Sales, SumSales(l.Orders, p))
		fig.Surveys = append(fig.Surveys, TallySurveys(f.answers, p))
	}
	asOf := time.Date(2024, 10, 1, 0, 0, 0, 0, time.UTC)
	fig.Lifetime = CountRepeatLifetime(acts, asOf)
	var err error
	if fig.Cohorts, err = Cohorts(l.Orders, MonthFor(2023, time.January), MonthFor(2024, time.December)); err != nil {
		t.Fatal(err)
	}
	if fig.RFM, err = ScoreRFM(CustomerValuesAsOf(l.Orders, asOf), asOf); err != nil {
		t.Fatal(err)
	}
	fig.Ranked = RevenueByCustomer(l.Orders, periods[0])
	if fig.Top, err = Top(fig.Ranked, 20); err != nil {
		t.Fatal(err)
	}
	fig.Unmatched = l.Unmatched
	fig.Activities = acts
	fig.LedgerCount = len(l.Orders)
	return fig
}

func testPeriods(t *testing.T) ([]Period, []Window) {
	return []Period{
			period(t, "2024-04-01", "2024-07-01"),
			period(t, "2024-01-01", "2025-01-01"),
			period(t, "2023-11-15T12:00:00Z", "2023-12-01T00:00:00.5Z"),
		}, []Window{
			DefaultWindow, WindowDays(30), WindowDays(365), Window(36 * time.Hour),
		}
}

// Shuffling the input and re-sending any part of it changes no figure.
func TestOrderIndependence(t *testing.T) {
	periods, windows := testPeriods(t)
	for seed := range uint64(8) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			base := randomFacts(r, periods, windows)
			want := computeFigures(t, base, periods, windows)
			for range 4 {
				got := computeFigures(t, base.shuffledWithDuplicates(r), periods, windows)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("figures differ after shuffling and duplicating:\n got %+v\nwant %+v", got.Retention, want.Retention)
				}
			}
		})
	}
}

// CountRetention against the definition read literally: for every customer,
// look at every order; no binary search, no Activity helpers.
func TestCountRetentionMatchesTheDefinition(t *testing.T) {
	periods, windows := testPeriods(t)
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 2))
		f := randomFacts(r, periods, windows)
		l := NewLedger(f.orders, f.refunds)
		byCustomer := map[CustomerID][]time.Time{}
		for _, o := range l.Orders {
			byCustomer[o.Customer] = append(byCustomer[o.Customer], o.At)
		}
		for _, p := range periods {
			for _, w := range windows {
				var want RetentionCounts
				for _, orders := range byCustomer {
					var inS, inE, isNew bool
					first := orders[0]
					for _, o := range orders {
						if o.Before(first) {
							first = o
						}
						if !o.Before(p.From.Add(-time.Duration(w))) && o.Before(p.From) {
							inS = true
						}
						if !o.Before(p.To.Add(-time.Duration(w))) && o.Before(p.To) {
							inE = true
						}
					}
					isNew = !first.Before(p.From) && first.Before(p.To)
					if inS {
						want.Start++
						if inE {
							want.Retained++
						} else {
							want.Churned++
						}
					}
					if inE {
						want.End++
						if !inS && !isNew {
							want.Reactivated++
						}
						if isNew {
							want.NewActiveAtEnd++
						}
					}
					if isNew {
						want.New++
					}
				}
				if got := CountRetention(l.Activities(), p, w); got != want {
					t.Fatalf("seed %d, %v, W=%s: got %+v, want %+v", seed, p, time.Duration(w), got, want)
				}
			}
		}
	}
}
