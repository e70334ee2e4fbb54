package retention

import (
	"testing"
	"time"
)

func TestCountRepeat(t *testing.T) {
	p := period(t, "2024-04-01", "2024-07-01")
	acts := []Activity{
		NewActivity("twice-in", []time.Time{at(t, "2024-04-01"), at(t, "2024-06-30")}),
		NewActivity("same-instant-twice", []time.Time{at(t, "2024-05-01"), at(t, "2024-05-01")}),
		NewActivity("once-in-once-before", []time.Time{at(t, "2024-03-31"), at(t, "2024-05-01")}),
		NewActivity("once-in-once-at-to", []time.Time{at(t, "2024-05-01"), at(t, "2024-07-01")}),
		NewActivity("never-in", []time.Time{at(t, "2023-05-01"), at(t, "2023-06-01")}),
	}
	if got, want := CountRepeat(acts, p), (RepeatCounts{Buyers: 4, Repeaters: 2}); got != want {
		t.Fatalf("period: %+v, want %+v", got, want)
	}
	wantPercent(t, "repeat rate", CountRepeat(acts, p).Rate(), 50)

	// Lifetime as of to: every order before to.
	if got, want := CountRepeatLifetime(acts, p.To), (RepeatCounts{Buyers: 5, Repeaters: 4}); got != want {
		t.Fatalf("lifetime: %+v, want %+v", got, want)
	}
	if got, want := CountRepeatLifetime(acts, at(t, "2024-01-01")), (RepeatCounts{Buyers: 1, Repeaters: 1}); got != want {
		t.Fatalf("lifetime as of 2024: %+v, want %+v", got, want)
	}
	wantUndefined(t, "repeat rate of nobody", RepeatCounts{}.Rate())
}

func TestSales(t *testing.T) {
	p := period(t, "2024-04-01", "2024-07-01")
	l := NewLedger([]Order{
		{ID: "1", Customer: "a", At: at(t, "2024-04-01"), TotalMinor: 1000},
		{ID: "2", Customer: "a", At: at(t, "2024-05-01"), TotalMinor: 2001},
		{ID: "3", Customer: "b", At: at(t, "2024-06-01"), TotalMinor: 500},
		{ID: "4", Customer: "c", At: at(t, "2024-07-01"), TotalMinor: 9999}, // at to: outside
	}, []Refund{
		{ID: "r1", OrderID: "2", AmountMinor: 1000},
		{ID: "r2", OrderID: "3", AmountMinor: 800}, // more than the order: capped
	})
	s := SumSales(l.Orders, p)
	want := Sales{Orders: 3, Customers: 2, GrossMinor: 3501, RefundedMinor: 1500, NetMinor: 2001}
	if s != want {
		t.Fatalf("sales %+v, want %+v", s, want)
	}
	if aov, ok := s.AOV(); !ok || aov != 667 { // 2001/3 = 667
		t.Fatalf("AOV %d %v, want 667", aov, ok)
	}
	if v, ok := s.OrdersPerCustomer().Value(); !ok || v != 1.5 {
		t.Fatalf("orders per customer %v %v, want 1.5", v, ok)
	}
	if _, ok := (Sales{}).AOV(); ok {
		t.Fatal("AOV of no orders is defined")
	}
}

func TestAverageMinor(t *testing.T) {
	tests := []struct{ total, n, want int64 }{
		{10, 2, 5}, {5, 2, 3}, {7, 3, 2}, {8, 3, 3}, {-5, 2, -3}, {-7, 3, -2}, {0, 4, 0}, {1, 3, 0},
	}
	for _, tt := range tests {
		if got, ok := AverageMinor(tt.total, tt.n); !ok || got != tt.want {
			t.Errorf("AverageMinor(%d, %d) = %d, want %d", tt.total, tt.n, got, tt.want)
		}
	}
	if _, ok := AverageMinor(10, 0); ok {
		t.Error("AverageMinor over zero is defined")
	}
}

func TestCohorts(t *testing.T) {
	jan, feb, mar := MonthFor(2024, time.January), MonthFor(2024, time.February), MonthFor(2024, time.March)
	l := NewLedger([]Order{
		// January cohort: a, b, c.
		{ID: "1", Customer: "a", At: at(t, "2024-01-05"), TotalMinor: 100},
		{ID: "2", Customer: "a", At: at(t, "2024-01-20"), TotalMinor: 100},
		{ID: "3", Customer: "b", At: at(t, "2024-01-31T23:59:59Z"), TotalMinor: 300},
		{ID: "4", Customer: "c", At: at(t, "2024-01-10"), TotalMinor: 50},
		{ID: "5", Customer: "a", At: at(t, "2024-02-01"), TotalMinor: 1000}, // a back in Feb
		{ID: "6", Customer: "c", At: at(t, "2024-03-31T23:59:59Z"), TotalMinor: 10},
		// February cohort: d (her refund takes the month to 0).
		{ID: "7", Customer: "d", At: at(t, "2024-02-14"), TotalMinor: 400},
		// December 2023 customer: outside the cohorts, even ordering in range.
		{ID: "8", Customer: "e", At: at(t, "2023-12-31"), TotalMinor: 1},
		{ID: "9", Customer: "e", At: at(t, "2024-02-02"), TotalMinor: 1},
		// After the last month: ignored.
		{ID: "10", Customer: "b", At: at(t, "2024-04-01"), TotalMinor: 5},
	}, []Refund{{ID: "r", OrderID: "7", AmountMinor: 400}})

	table, err := Cohorts(l.Orders, jan, mar)
	if err != nil {
		t.Fatal(err)
	}
	want := []CohortRow{
		{Cohort: jan, Members: 3, Active: []int64{3, 1, 1}, NetMinor: []int64{550, 1000, 10}},
		{Cohort: feb, Members: 1, Active: []int64{1, 0}, NetMinor: []int64{0, 0}},
		{Cohort: mar, Members: 0, Active: []int64{0}, NetMinor: []int64{0}},
	}
	if len(table.Rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(table.Rows), len(want))
	}
	for i, w := range want {
		g := table.Rows[i]
		if g.Cohort != w.Cohort || g.Members != w.Members || !equalInts(g.Active, w.Active) || !equalInts(g.NetMinor, w.NetMinor) {
			t.Errorf("row %s = %+v, want %+v", w.Cohort, g, w)
		}
	}
	jr := table.Rows[0]
	wantPercent(t, "Jan cohort month 1", jr.Retention(1), 100.0/3)
	if rpm, ok := jr.RevenuePerMember(1); !ok || rpm != 333 {
		t.Errorf("Jan cohort revenue per member in month 1 = %d, want 333", rpm)
	}
	wantUndefined(t, "empty March cohort", table.Rows[2].Retention(0))
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAssembleCohortsRejectsBadCells(t *testing.T) {
	jan, feb := MonthFor(2024, time.January), MonthFor(2024, time.February)
	tests := []struct {
		name        string
		first, last Month
		cells       []CohortCell
	}{
		{"inverted range", feb, jan, nil},
		{"more than ten years", jan, jan + MaxCohortMonths, nil},
		{"cell before its cohort", jan, feb, []CohortCell{{Cohort: feb, Month: jan, Active: 1}}},
		{"cell after the last month", jan, feb, []CohortCell{{Cohort: jan, Month: feb + 1, Active: 1}}},
		{"cell twice", jan, feb, []CohortCell{{Cohort: jan, Month: jan, Active: 1}, {Cohort: jan, Month: jan, Active: 1}}},
		{"more active than members", jan, feb, []CohortCell{{Cohort: jan, Month: jan, Active: 1}, {Cohort: jan, Month: feb, Active: 2}}},
		{"negative count", jan, feb, []CohortCell{{Cohort: jan, Month: jan, Active: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := AssembleCohorts(tt.first, tt.last, tt.cells); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if _, err := AssembleCohorts(jan, jan+MaxCohortMonths-1, nil); err != nil {
		t.Fatalf("ten years: %v", err)
	}
}

func TestMonth(t *testing.T) {
	m := MonthOf(time.Date(2011, 12, 31, 23, 59, 59, 0, time.UTC))
	if m.String() != "2011-12" || (m+1).String() != "2012-01" || (m-12).String() != "2010-12" {
		t.Fatalf("month arithmetic: %s %s %s", m, m+1, m-12)
	}
	if got := MonthOf(time.Date(2012, 1, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600))); got.String() != "2011-12" {
		t.Fatalf("month of a CET instant is %s, want the UTC month 2011-12", got)
	}
	if p := m.Period(); !p.From.Equal(at(t, "2011-12-01")) || !p.To.Equal(at(t, "2012-01-01")) {
		t.Fatalf("period of %s: %+v", m, p)
	}
}

func TestWindowAndPeriodValidation(t *testing.T) {
	for _, w := range []Window{0, -DefaultWindow, Window(23 * time.Hour), MaxWindow + 1} {
		if w.Validate() == nil {
			t.Errorf("window %s accepted", time.Duration(w))
		}
	}
	for _, w := range []Window{MinWindow, DefaultWindow, WindowDays(365), MaxWindow} {
		if err := w.Validate(); err != nil {
			t.Errorf("window %s: %v", time.Duration(w), err)
		}
	}
	d := at(t, "2024-01-01")
	for _, p := range []Period{{From: d, To: d}, {From: d.Add(time.Second), To: d}, {To: d}, {From: d}} {
		if p.Validate() == nil {
			t.Errorf("period %+v accepted", p)
		}
	}
}

func TestSoFar(t *testing.T) {
	now := at(t, "2026-11-24T14:03:00Z")
	q4 := period(t, "2026-10-01", "2027-01-01")
	if got, err := q4.SoFar(now); err != nil || !got.From.Equal(q4.From) || !got.To.Equal(now) {
		t.Errorf("this quarter so far: %+v, %v", got, err)
	}
	q3 := period(t, "2026-07-01", "2026-10-01")
	if got, err := q3.SoFar(now); err != nil || got != q3 {
		t.Errorf("a past quarter: %+v, %v", got, err)
	}
	for _, p := range []Period{period(t, "2027-01-01", "2027-04-01"), {From: now, To: now.Add(Day)}} {
		if _, err := p.SoFar(now); err == nil {
			t.Errorf("period %+v starting at or after now accepted", p)
		}
	}
	this := MonthFor(2026, time.November)
	if first, last, err := CohortRangeSoFar(this-11, this+13, now); err != nil || first != this-11 || last != this {
		t.Errorf("cohorts to a future month: %s..%s, %v", first, last, err)
	}
	if first, last, err := CohortRangeSoFar(this-11, this-1, now); err != nil || first != this-11 || last != this-1 {
		t.Errorf("past cohorts: %s..%s, %v", first, last, err)
	}
	if _, _, err := CohortRangeSoFar(this+1, this+2, now); err == nil {
		t.Error("cohorts from next month accepted")
	}
}

func TestSurveys(t *testing.T) {
	p := period(t, "2024-04-01", "2024-05-01")
	in := at(t, "2024-04-10")
	answers := []Answer{
		{ID: "1", Customer: "a", At: in, Kind: SurveyNPS, Score: 10},
		{ID: "2", Customer: "a", At: in, Kind: SurveyNPS, Score: 9}, // same customer again: counts
		{ID: "2", Customer: "a", At: in, Kind: SurveyNPS, Score: 9}, // same answer again: does not
		{ID: "3", Customer: "b", At: in, Kind: SurveyNPS, Score: 8},
		{ID: "4", Customer: "c", At: in, Kind: SurveyNPS, Score: 7},
		{ID: "5", Customer: "d", At: in, Kind: SurveyNPS, Score: 6},
		{ID: "6", Customer: "e", At: in, Kind: SurveyNPS, Score: 0},
		{ID: "7", Customer: "f", At: p.To, Kind: SurveyNPS, Score: 0},                     // at to: outside
		{ID: "8", Customer: "f", At: p.From.Add(-time.Second), Kind: SurveyNPS, Score: 0}, // before: outside
		{ID: "9", Customer: "g", At: in, Kind: SurveyNPS, Score: 11},                      // invalid
		{ID: "10", Customer: "a", At: in, Kind: SurveyCSAT, Score: 5},
		{ID: "11", Customer: "b", At: in, Kind: SurveyCSAT, Score: 4},
		{ID: "12", Customer: "c", At: in, Kind: SurveyCSAT, Score: 3},
		{ID: "13", Customer: "d", At: in, Kind: SurveyCSAT, Score: 1},
		{ID: "14", Customer: "d", At: in, Kind: SurveyCSAT, Score: 0}, // invalid
		{ID: "15", Customer: "d", At: in, Kind: 0, Score: 5},          // unknown kind
	}
	got := TallySurveys(answers, p)
	want := SurveyTally{
		NPS:     NPSTally{Promoters: 2, Passives: 2, Detractors: 2},
		CSAT:    CSATTally{Satisfied: 2, Answers: 4},
		Ignored: 3,
	}
	if got != want {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
	wantPercent(t, "NPS", got.NPS.NPS(), 0)
	wantPercent(t, "CSAT", got.CSAT.CSAT(), 50)

	all := NPSTally{}
	for score := 0; score <= 10; score++ {
		if err := all.Add(score, 1); err != nil {
			t.Fatal(err)
		}
	}
	if all != (NPSTally{Promoters: 2, Passives: 2, Detractors: 7}) {
		t.Fatalf("classes of 0..10: %+v", all)
	}
	wantPercent(t, "NPS of one answer per score", all.NPS(), -500.0/11)
	wantPercent(t, "all promoters", NPSTally{Promoters: 3}.NPS(), 100)
	wantPercent(t, "all detractors", NPSTally{Detractors: 3}.NPS(), -100)
	wantUndefined(t, "NPS of no answers", NPSTally{}.NPS())
	wantUndefined(t, "CSAT of no answers", CSATTally{}.CSAT())
}
