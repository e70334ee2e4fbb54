package score

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/services/churnsignal/internal/model"
)

var asOf = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func daysAgo(n int) time.Time { return asOf.Add(-time.Duration(n) * day) }

// only returns weights with every indicator but code switched off.
func only(code string) Weights {
	w := DefaultWeights()
	ws := map[string]*float64{CodePurchaseOutlook: &w.PurchaseOutlook, CodeOverdue: &w.Overdue, CodeSupportTickets: &w.SupportTickets, CodePriceComplaints: &w.PriceComplaints, CodeSentiment: &w.Sentiment}
	for c, p := range ws {
		if c != code {
			*p = 0
		}
	}
	return w
}

// described is a reason with its sentence as of asOf.
type described struct {
	Reason
	Description string
}

func reason(t *testing.T, r Result, code string) described {
	t.Helper()
	for _, x := range r.Reasons {
		if x.Code == code {
			return described{x, x.Describe(asOf)}
		}
	}
	t.Fatalf("no %s reason in %+v", code, r.Reasons)
	return described{}
}

func orders(ds ...int) Features {
	f := Features{AsOf: asOf}
	seen := map[int]bool{}
	for _, d := range ds {
		t := daysAgo(d)
		f.Orders++
		if !seen[d] {
			seen[d] = true
			f.PurchaseDays++
		}
		if f.FirstOrder.IsZero() || t.Before(f.FirstOrder) {
			f.FirstOrder = t
		}
		if t.After(f.LastOrder) {
			f.LastOrder = t
		}
	}
	return f
}

func TestHistory(t *testing.T) {
	f := orders(100, 60, 60, 30)
	s, ok := f.History()
	if !ok || s != (model.Summary{X: 2, Tx: 70.0 / 7, T: 100.0 / 7}) {
		t.Fatalf("History() = %+v, %v", s, ok)
	}
	if _, ok := (Features{AsOf: asOf}).History(); ok {
		t.Fatal("History without orders: ok")
	}
}

func TestPurchaseOutlook(t *testing.T) {
	params := model.Params{R: 0.25, Alpha: 4.4, A: 0.8, B: 2.4}
	pop := Population{Model: &params, TypicalGapDays: 30, HorizonWeeks: 13}
	w := only(CodePurchaseOutlook)
	t.Run("no model, no outlook", func(t *testing.T) {
		r := Compute(orders(200, 10), Population{}, w)
		if r.Score != 0 || len(r.Reasons) != 0 || r.Derived.Prediction != nil {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("falls as the customer goes silent", func(t *testing.T) {
		active := Compute(orders(100, 80, 60, 40, 20, 5), pop, w)
		silent := Compute(orders(400, 380, 360, 340, 320, 300), pop, w)
		if !(silent.Score > active.Score) {
			t.Fatalf("silent %d <= active %d", silent.Score, active.Score)
		}
		if !(silent.Derived.Prediction.ExpectedPurchases < active.Derived.Prediction.ExpectedPurchases) {
			t.Fatal("expected purchases not lower for the silent customer")
		}
		if silent.Score > int(w.PurchaseOutlook) {
			t.Fatalf("score %d above the weight %v", silent.Score, w.PurchaseOutlook)
		}
		d := reason(t, silent, CodePurchaseOutlook).Description
		if !strings.Contains(d, "in the next 13 weeks") || !strings.Contains(d, "at their past pace") {
			t.Fatalf("description %q", d)
		}
	})
	t.Run("f is exp(-E/Eref)", func(t *testing.T) {
		f := orders(50, 20)
		r := Compute(f, pop, w)
		s, _ := f.History()
		e := params.ExpectedPurchases(s, 13)
		eref := 13 * params.R / params.Alpha
		want := w.PurchaseOutlook * math.Exp(-e/eref)
		if math.Abs(r.Exact-want) > 1e-9 {
			t.Fatalf("exact %v, want %v", r.Exact, want)
		}
	})
	t.Run("one-time buyer", func(t *testing.T) {
		r := Compute(orders(20), pop, w)
		if d := reason(t, r, CodePurchaseOutlook).Description; !strings.Contains(d, "no repeat order yet") {
			t.Fatalf("description %q", d)
		}
	})
}

func TestOverdue(t *testing.T) {
	pop := Population{TypicalGapDays: 30}
	w := only(CodeOverdue)
	tests := []struct {
		name    string
		f       Features
		wantGap float64
		wantF   float64
		desc    string
	}{
		// Own gaps 30, 30, 30 and the prior's 3 x 30: 30 days.
		{"on time", orders(120, 90, 60, 30), 30, 0, ""},
		{"three gaps late", orders(180, 150, 120, 90), 30, 2.0 / 3, "90 days since the last order, usually orders every 30 days"},
		// Own gaps 10, 10 and the prior's 3 x 30: (20+90)/5 = 22.
		{"fast buyer shrunk to the tenant", orders(64, 54, 44), 22, 1 - 22.0/44, "44 days since the last order, usually orders every 22 days"},
		{"one-time buyer uses the tenant's gap", orders(60), 30, 0.5, "60 days since the first and only order; customers typically reorder every 30 days"},
		{"no orders", Features{AsOf: asOf}, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compute(tt.f, pop, w)
			if math.Abs(r.Derived.TypicalGapDays-tt.wantGap) > 1e-9 {
				t.Fatalf("gap %v, want %v", r.Derived.TypicalGapDays, tt.wantGap)
			}
			if want := 100 * tt.wantF * w.Overdue / 100; math.Abs(r.Exact-want) > 1e-9 {
				t.Fatalf("exact %v, want %v", r.Exact, want)
			}
			if tt.desc != "" && reason(t, r, CodeOverdue).Description != tt.desc {
				t.Fatalf("description %q, want %q", reason(t, r, CodeOverdue).Description, tt.desc)
			}
		})
	}
}

func ticket(openedDaysAgo int, cat TicketCategory, resolvedDaysAgo int) Ticket {
	tk := Ticket{OpenedAt: daysAgo(openedDaysAgo), Category: cat}
	if resolvedDaysAgo >= 0 {
		tk.ResolvedAt = daysAgo(resolvedDaysAgo)
	}
	return tk
}

func TestSupportTickets(t *testing.T) {
	w := only(CodeSupportTickets)
	tests := []struct {
		name           string
		tickets        []Ticket
		n30, n90, open int
		u              float64
		desc           string
	}{
		{"none", nil, 0, 0, 0, 0, ""},
		{"three recent, one open", []Ticket{ticket(3, 2, 1), ticket(10, 1, -1), ticket(20, 3, 15)}, 3, 3, 1, 3.5, "3 tickets in 30 days, 1 still open"},
		{"older ones count half", []Ticket{ticket(5, 2, 4), ticket(60, 2, 50)}, 1, 2, 0, 1.5, "1 ticket in 30 days (2 in 90)"},
		{"old and still open", []Ticket{ticket(200, 2, -1)}, 0, 0, 1, 0.5, "1 open ticket"},
		{"resolved after as of is open", []Ticket{ticket(5, 2, -5)}, 1, 1, 1, 1.5, "1 ticket in 30 days, 1 still open"},
		{"after as of is ignored", []Ticket{ticket(-2, 2, -1)}, 0, 0, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Features{AsOf: asOf, Tickets: tt.tickets}
			r := Compute(f, Population{}, w)
			d := r.Derived
			if d.Tickets30 != tt.n30 || d.Tickets90 != tt.n90 || d.OpenTickets != tt.open {
				t.Fatalf("30/90/open = %d/%d/%d, want %d/%d/%d", d.Tickets30, d.Tickets90, d.OpenTickets, tt.n30, tt.n90, tt.open)
			}
			if want := w.SupportTickets * (1 - math.Exp(-tt.u/1.5)); math.Abs(r.Exact-want) > 1e-9 {
				t.Fatalf("exact %v, want %v", r.Exact, want)
			}
			if tt.desc != "" && reason(t, r, CodeSupportTickets).Description != tt.desc {
				t.Fatalf("description %q, want %q", reason(t, r, CodeSupportTickets).Description, tt.desc)
			}
		})
	}
}

func TestPriceComplaints(t *testing.T) {
	w := only(CodePriceComplaints)
	renewal := time.Date(2026, 3, 13, 0, 0, 0, 0, time.UTC) // 12 days after asOf
	tests := []struct {
		name    string
		tickets []Ticket
		renewal time.Time
		u       float64
		desc    string
	}{
		{"other categories do not count", []Ticket{ticket(3, 2, -1)}, time.Time{}, 0, ""},
		{"recent billing ticket", []Ticket{ticket(3, CategoryBillingPricing, 1)}, time.Time{}, 1, "1 ticket about billing or price in 30 days"},
		{"older billing ticket counts half", []Ticket{ticket(45, CategoryBillingPricing, 40)}, time.Time{}, 0.5, "1 ticket about billing or price in 90 days"},
		{"too old", []Ticket{ticket(100, CategoryBillingPricing, 90)}, time.Time{}, 0, ""},
		{"before the renewal counts double", []Ticket{ticket(3, CategoryBillingPricing, 1), ticket(60, CategoryBillingPricing, 50)}, renewal, 2.5, "1 ticket about billing or price in 30 days (2 in 90), 15 days before the renewal on 2026-03-13"},
		{"long before the renewal counts once", []Ticket{ticket(3, CategoryBillingPricing, 1)}, renewal.AddDate(0, 2, 0), 1, "1 ticket about billing or price in 30 days"},
		{"after the renewal counts once", []Ticket{ticket(3, CategoryBillingPricing, 1)}, asOf.AddDate(0, 0, -10), 1, "1 ticket about billing or price in 30 days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compute(Features{AsOf: asOf, Tickets: tt.tickets, RenewalDate: tt.renewal}, Population{}, w)
			if want := w.PriceComplaints * (1 - math.Exp(-tt.u)); math.Abs(r.Exact-want) > 1e-9 {
				t.Fatalf("exact %v, want %v", r.Exact, want)
			}
			if tt.desc != "" && reason(t, r, CodePriceComplaints).Description != tt.desc {
				t.Fatalf("description %q, want %q", reason(t, r, CodePriceComplaints).Description, tt.desc)
			}
		})
	}
}

func TestSentiment(t *testing.T) {
	w := only(CodeSentiment)
	nps := func(score, ago int) Answer { return Answer{Kind: SurveyNPS, Score: score, AnsweredAt: daysAgo(ago)} }
	csat := func(score, ago int) Answer { return Answer{Kind: SurveyCSAT, Score: score, AnsweredAt: daysAgo(ago)} }
	tests := []struct {
		name    string
		answers []Answer
		f       float64
		desc    string
	}{
		{"none", nil, 0, ""},
		{"promoter", []Answer{nps(10, 0)}, 0, ""},
		{"passive today", []Answer{nps(7, 0)}, 0.35, "NPS 7 (passive), today"},
		{"detractor 6", []Answer{nps(6, 0)}, 0.7, "NPS 6 (detractor), today"},
		{"detractor 0", []Answer{nps(0, 0)}, 1, "NPS 0 (detractor), today"},
		{"latest and mean", []Answer{nps(9, 40), nps(6, 0)}, 0.7*0.7 + 0.3*0.35, "NPS 6 (detractor), mean 7.5 over 2 answers, today"},
		{"a half-life later", []Answer{nps(6, 180)}, 0.35, "NPS 6 (detractor), 180 days ago"},
		{"csat 2", []Answer{csat(2, 0)}, 0.75, "CSAT 2 of 5, today"},
		{"the worse survey counts", []Answer{nps(7, 0), csat(1, 0)}, 1, "NPS 7 (passive), today; CSAT 1 of 5, today"},
		{"after as of is ignored", []Answer{nps(0, -1)}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compute(Features{AsOf: asOf, Answers: tt.answers}, Population{}, w)
			if want := w.Sentiment * tt.f; math.Abs(r.Exact-want) > 1e-9 {
				t.Fatalf("exact %v, want %v", r.Exact, want)
			}
			if tt.desc != "" && reason(t, r, CodeSentiment).Description != tt.desc {
				t.Fatalf("description %q, want %q", reason(t, r, CodeSentiment).Description, tt.desc)
			}
		})
	}
	t.Run("class boundaries", func(t *testing.T) {
		for s, want := range map[int]string{0: "detractor", 6: "detractor", 7: "passive", 8: "passive", 9: "promoter", 10: "promoter"} {
			if got := NPSClass(s); got != want {
				t.Errorf("NPSClass(%d) = %s, want %s", s, got, want)
			}
		}
		for v, want := range map[float64]float64{1: 1, 2: 0.75, 3: 0.35, 4: 0, 5: 0, 2.5: 0.55} {
			if got := csatRisk(v); math.Abs(got-want) > 1e-12 {
				t.Errorf("csatRisk(%v) = %v, want %v", v, got, want)
			}
		}
	})
}

// TestCombination checks the noisy-OR and the apportionment on random
// evidence: 0 <= score <= 100, contributions add up to the score, reasons
// are largest first, and the input order of tickets and answers does not
// matter.
func TestCombination(t *testing.T) {
	params := model.Params{R: 0.25, Alpha: 4.4, A: 0.8, B: 2.4}
	pop := Population{Model: &params, TypicalGapDays: 30, HorizonWeeks: 13}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var ds []int
		for range rng.IntN(6) {
			ds = append(ds, rng.IntN(500))
		}
		f := orders(ds...)
		for range rng.IntN(6) {
			f.Tickets = append(f.Tickets, ticket(rng.IntN(200), TicketCategory(1+rng.IntN(5)), rng.IntN(3)-1))
		}
		for range rng.IntN(4) {
			f.Answers = append(f.Answers, Answer{Kind: SurveyKind(1 + rng.IntN(2)), Score: rng.IntN(11), AnsweredAt: daysAgo(rng.IntN(400))})
		}
		if rng.IntN(2) == 0 {
			f.RenewalDate = daysAgo(rng.IntN(60) - 30).Truncate(day)
		}
		r := Compute(f, pop, DefaultWeights())
		if r.Exact < 0 || r.Exact > 100 || r.Score != int(math.Round(r.Exact)) {
			t.Fatalf("#%d: score %d exact %v", i, r.Score, r.Exact)
		}
		sum := 0
		for k, x := range r.Reasons {
			sum += x.Contribution
			if x.Contribution <= 0 || x.Describe(asOf) == "" {
				t.Fatalf("#%d: reason %+v", i, x)
			}
			if k > 0 && x.Contribution > r.Reasons[k-1].Contribution {
				t.Fatalf("#%d: reasons not largest first: %+v", i, r.Reasons)
			}
		}
		if sum != r.Score {
			t.Fatalf("#%d: contributions add up to %d, score %d: %+v", i, sum, r.Score, r.Reasons)
		}
		// Reversed inputs, same result.
		g := f
		g.Tickets = reversed(f.Tickets)
		g.Answers = reversed(f.Answers)
		if r2 := Compute(g, pop, DefaultWeights()); r2.Exact != r.Exact || len(r2.Reasons) != len(r.Reasons) {
			t.Fatalf("#%d: order changed the result: %+v vs %+v", i, r, r2)
		} else {
			for k := range r.Reasons {
				if r.Reasons[k] != r2.Reasons[k] {
					t.Fatalf("#%d: order changed a reason: %+v vs %+v", i, r.Reasons[k], r2.Reasons[k])
				}
			}
		}
	}
}

func reversed[T any](xs []T) []T {
	out := make([]T, len(xs))
	for i, x := range xs {
		out[len(xs)-1-i] = x
	}
	return out
}

func TestNoisyOr(t *testing.T) {
	// Two indicators at full strength: 1 - (1-0.7)(1-0.35) = 80.5 -> 81
	// (rounded half away from zero), apportioned by -ln(0.3) : -ln(0.65).
	w := DefaultWeights()
	w.Overdue, w.PriceComplaints, w.Sentiment = 0, 0, 0
	comps := []component{{code: "a", f: 1, w: 70}, {code: "b", f: 1, w: 35}}
	r := combine(comps, Derived{})
	if r.Score != 81 || math.Abs(r.Exact-80.5) > 1e-9 {
		t.Fatalf("score %d exact %v", r.Score, r.Exact)
	}
	la, lb := -math.Log(0.3), -math.Log(0.65)
	if got, want := r.Reasons[0].Exact, 80.5*la/(la+lb); math.Abs(got-want) > 1e-9 {
		t.Fatalf("exact share %v, want %v", got, want)
	}
	if r.Reasons[0].Contribution+r.Reasons[1].Contribution != 81 || r.Reasons[0].Code != "a" {
		t.Fatalf("reasons %+v", r.Reasons)
	}
	if r := combine([]component{{code: "a", w: 70}}, Derived{}); r.Score != 0 || r.Reasons != nil {
		t.Fatalf("all zero: %+v", r)
	}
}

// TestIssueExample is the issue's example of a readable high risk.
func TestIssueExample(t *testing.T) {
	params := model.Params{R: 0.25, Alpha: 4.4, A: 0.8, B: 2.4}
	pop := Population{Model: &params, TypicalGapDays: 30, HorizonWeeks: 13}
	f := orders(305, 275, 245, 215, 185, 155, 125, 95)
	f.Tickets = []Ticket{ticket(2, CategoryBillingPricing, -1), ticket(12, 3, 10), ticket(25, 2, 20)}
	f.Answers = []Answer{{Kind: SurveyNPS, Score: 6, AnsweredAt: daysAgo(5)}}
	r := Compute(f, pop, DefaultWeights())
	if PlainBand(r.Score, DefaultWeights()) != BandHigh {
		t.Fatalf("score %d not high: %+v", r.Score, r.Reasons)
	}
	var descs []string
	for _, x := range r.Reasons {
		descs = append(descs, x.Describe(asOf))
	}
	text := strings.Join(descs, "; ")
	for _, want := range []string{"3 tickets in 30 days", "1 ticket about billing or price in 30 days", "NPS 6 (detractor)", "95 days since the last order, usually orders every 30 days"} {
		if !strings.Contains(text, want) {
			t.Errorf("reasons %q lack %q", text, want)
		}
	}
	t.Logf("score %d: %s", r.Score, text)
}

func TestNextBand(t *testing.T) {
	w := DefaultWeights() // medium at 40, high at 70, hysteresis 5
	tests := []struct {
		prev  Band
		score int
		want  Band
	}{
		{BandUnspecified, 0, BandLow},
		{BandUnspecified, 39, BandLow},
		{BandUnspecified, 40, BandMedium},
		{BandUnspecified, 70, BandHigh},
		{BandLow, 39, BandLow},
		{BandLow, 40, BandMedium},
		{BandLow, 69, BandMedium},
		{BandLow, 70, BandHigh},
		{BandMedium, 36, BandMedium},
		{BandMedium, 35, BandMedium},
		{BandMedium, 34, BandLow},
		{BandMedium, 69, BandMedium},
		{BandMedium, 70, BandHigh},
		{BandHigh, 66, BandHigh},
		{BandHigh, 65, BandHigh},
		{BandHigh, 64, BandMedium},
		{BandHigh, 35, BandMedium},
		{BandHigh, 34, BandLow},
	}
	for _, tt := range tests {
		if got := NextBand(tt.prev, tt.score, w); got != tt.want {
			t.Errorf("NextBand(%s, %d) = %s, want %s", tt.prev, tt.score, got, tt.want)
		}
	}
	t.Run("a score hovering at a boundary does not flap", func(t *testing.T) {
		band, changes := BandMedium, 0
		for i, s := range []int{69, 70, 69, 71, 68, 70, 66, 65, 70, 64, 66, 69, 70} {
			next := NextBand(band, s, w)
			if next != band {
				changes++
				t.Logf("step %d: %d -> %s", i, s, next)
			}
			band = next
		}
		// medium -> high at 70, high -> medium at 64, medium -> high at 70.
		if changes != 3 {
			t.Fatalf("%d band changes, want 3", changes)
		}
	})
}

func TestWeightsCheck(t *testing.T) {
	if err := DefaultWeights().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*Weights)
		fields []string
	}{
		{"weights out of range", func(w *Weights) { w.Sentiment, w.Overdue = 120, -1 }, []string{CodeOverdue, CodeSentiment}},
		{"not a number", func(w *Weights) { w.PurchaseOutlook = math.NaN() }, []string{CodePurchaseOutlook}},
		{"the most a weight may be", func(w *Weights) { w.SupportTickets = MaxWeight }, nil},
		{"thresholds not ordered", func(w *Weights) { w.MediumAt = 80 }, []string{"high_at"}},
		{"thresholds out of range", func(w *Weights) { w.MediumAt, w.HighAt = 0, 101 }, []string{"medium_at", "high_at"}},
		{"hysteresis as wide as the gap", func(w *Weights) { w.MediumAt, w.HighAt, w.Hysteresis = 40, 50, 10 }, []string{"hysteresis"}},
		{"negative hysteresis", func(w *Weights) { w.Hysteresis = -1 }, []string{"hysteresis"}},
		{"no hysteresis", func(w *Weights) { w.Hysteresis = 0 }, nil},
		{"narrow bands", func(w *Weights) { w.MediumAt, w.HighAt, w.Hysteresis = 1, 100, 0 }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := DefaultWeights()
			tt.change(&w)
			var fields []string
			for _, e := range w.Check() {
				fields = append(fields, e.Field)
				if e.Problem == "" {
					t.Errorf("%s without a problem", e.Field)
				}
			}
			if strings.Join(fields, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("fields %v, want %v (%v)", fields, tt.fields, w.Validate())
			}
			if (w.Validate() == nil) != (tt.fields == nil) {
				t.Fatalf("Validate() = %v", w.Validate())
			}
		})
	}
}

// TestEvidenceAges: a day of silence changes the sentence ("96 days" for
// "95 days", "6 days ago") but not the evidence, which is what a rescoring
// compares; numbers change evidence only when their shown value does.
func TestEvidenceAges(t *testing.T) {
	params := model.Params{R: 0.25, Alpha: 4.4, A: 0.8, B: 2.4}
	pop := Population{Model: &params, TypicalGapDays: 30, HorizonWeeks: 13}
	f := orders(305, 275, 245, 215, 185, 155, 125, 95)
	f.Answers = []Answer{{Kind: SurveyNPS, Score: 6, AnsweredAt: daysAgo(5)}}
	g := f
	g.AsOf = asOf.Add(day)
	today, tomorrow := Compute(f, pop, DefaultWeights()), Compute(g, pop, DefaultWeights())
	for _, code := range []string{CodeOverdue, CodeSentiment} {
		a, b := reason(t, today, code), reason(t, tomorrow, code)
		if a.Evidence != b.Evidence {
			t.Errorf("%s evidence changed with a day: %+v -> %+v", code, a.Evidence, b.Evidence)
		}
		if got := a.Reason.Describe(g.AsOf); got != b.Reason.Describe(g.AsOf) {
			t.Errorf("%s: stored today, read tomorrow %q; computed tomorrow %q", code, got, b.Reason.Describe(g.AsOf))
		}
	}
	if d := reason(t, today, CodeOverdue).Reason.Describe(g.AsOf); !strings.HasPrefix(d, "96 days since the last order") {
		t.Errorf("overdue read a day later: %q", d)
	}
	if d := reason(t, today, CodeSentiment).Reason.Describe(g.AsOf); d != "NPS 6 (detractor), 6 days ago" {
		t.Errorf("sentiment read a day later: %q", d)
	}
	// Rounded as shown: a change below the shown precision is no change.
	for _, v := range []float64{0.0123, 0.0949, 0.095, 0.0951, 1.04, 1.05, 2.449, 17.35} {
		if got, want := fmtCount(roundCount(v)), fmtCount(v); got != want {
			t.Errorf("count %v shows %q, rounded %q", v, want, got)
		}
		if got, want := fmtNum(round1(v)), fmtNum(v); got != want && math.Abs(v*10-math.Round(v*10)) != 0.5 {
			t.Errorf("number %v shows %q, rounded %q", v, want, got)
		}
	}
}
