// Package score turns what is known about a customer into an explainable
// churn risk score from 0 to 100. It is pure: no I/O, no clock (the instant
// of evaluation is part of the input), so the same evidence always gives the
// same score and reasons.
//
// # Indicators
//
// Each indicator i measures one warning sign as a strength f_i in [0, 1]:
//
//   - purchase_outlook: the BG/NBD model's expected purchases E in the
//     horizon against what a typical new customer of the tenant is expected
//     to buy in it (Eref = H·r/α): f = exp(-E/Eref), 1 for a customer
//     expected to buy nothing, 0.37 for one expected to buy like a new
//     customer. Monotone in E, which on CDNOW ranks churn better than days
//     since the last purchase (the model package's note), while P(alive) and
//     P(no purchase) alone do not.
//   - overdue: days since the last order against the customer's typical gap
//     between purchase days (their mean gap shrunk toward the tenant's
//     median gap by 3 pseudo-gaps): q = days/gap, f = (q-1)/q for q > 1.
//   - support_tickets: tickets opened in the last 30 days, half weight for
//     those 31-90 days old, plus half weight per ticket still open:
//     f = 1-exp(-u/1.5).
//   - price_complaints: billing/pricing tickets in the last 90 days (half
//     weight after 30 days), doubled when opened in the 30 days before a
//     known renewal date: f = 1-exp(-u).
//   - sentiment: latest and mean NPS (detractor 0.7-1, passive 0.35,
//     promoter 0) and CSAT (1: 1, 2: 0.75, 3: 0.35, 4-5: 0), 70% latest and
//     30% mean, halved every 180 days of the latest answer's age; the worse
//     of the two surveys counts.
//
// # Combination
//
// Weight w_i is the most points indicator i can reach on its own. The
// indicators combine like independent causes (noisy-OR):
//
//	score = 100 · (1 - Π (1 - w_i·f_i/100))
//
// so any one strong sign can raise the risk to its weight, several together
// compound, and the score never exceeds 100. With the default weights
// (outlook 70, overdue 20, tickets 35, price 30, sentiment 40) purchase
// silence alone reaches 76 (HIGH), and the model dominates the purchase
// side because it ranks best: on CDNOW the overdue indicator is largely
// redundant with the BG/NBD, and a larger weight lowers the AUC. Each reason's contribution is
// its share of the score in proportion to -ln(1 - w_i·f_i/100), the
// indicator's term in the log of the product; contributions are whole points
// apportioned by largest remainder, so they add up exactly to the score.
package score

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/retainhq/retain/services/churnsignal/internal/model"
)

// Reason codes, stable across versions (they are part of the API).
const (
	CodePurchaseOutlook = "purchase_outlook"
	CodeOverdue         = "overdue"
	CodeSupportTickets  = "support_tickets"
	CodePriceComplaints = "price_complaints"
	CodeSentiment       = "sentiment"
)

// Band is a coarse risk level.
type Band int

// Bands, numbered as retain.churn.v1.RiskBand.
const (
	BandUnspecified Band = iota
	BandLow
	BandMedium
	BandHigh
)

func (b Band) String() string {
	switch b {
	case BandLow:
		return "low"
	case BandMedium:
		return "medium"
	case BandHigh:
		return "high"
	}
	return "unspecified"
}

// TicketCategory mirrors retain.events.v1.TicketCategory; only billing and
// pricing matters to the score.
type TicketCategory int

// CategoryBillingPricing is TICKET_CATEGORY_BILLING_PRICING.
const CategoryBillingPricing TicketCategory = 1

// SurveyKind mirrors retain.events.v1.SurveyKind.
type SurveyKind int

// Survey kinds.
const (
	SurveyNPS  SurveyKind = 1
	SurveyCSAT SurveyKind = 2
)

// Ticket is one support ticket. ResolvedAt is zero while it is open.
type Ticket struct {
	OpenedAt   time.Time
	Category   TicketCategory
	ResolvedAt time.Time
}

// Answer is one survey answer.
type Answer struct {
	Kind       SurveyKind
	Score      int
	AnsweredAt time.Time
}

// Money is an amount in minor units.
type Money struct {
	AmountMinor int64
	Currency    string
}

// Features is what is known about a customer as of AsOf. The loader passes
// only evidence from before AsOf; the scorer ignores anything later anyway.
type Features struct {
	AsOf time.Time
	// Orders counts orders; PurchaseDays the distinct UTC calendar days they
	// were placed on (same-day orders are one purchase, as in the BG/NBD).
	Orders       int
	PurchaseDays int
	// FirstOrder and LastOrder are the first and last order instants.
	FirstOrder, LastOrder time.Time
	// MeanOrderValue is for display only: the score does not use it.
	MeanOrderValue Money
	Tickets        []Ticket
	Answers        []Answer
	// RenewalDate is the date from the customer's traits (midnight UTC),
	// zero when unknown.
	RenewalDate time.Time
}

// Population is what the tenant's model says about customers in general.
type Population struct {
	// Model is the fitted BG/NBD, nil before the first fit.
	Model *model.Params
	// TypicalGapDays is the tenant's median gap between purchase days, the
	// typical gap of customers with a single purchase day (0: default).
	TypicalGapDays float64
	// HorizonWeeks is the prediction horizon H.
	HorizonWeeks float64
}

// DefaultTypicalGapDays is used before any tenant statistics exist.
const DefaultTypicalGapDays = 30

// DefaultHorizonWeeks is a quarter.
const DefaultHorizonWeeks = 13

// Weights tune the score per tenant. A weight is the most points (0-95) its
// indicator can reach on its own.
type Weights struct {
	PurchaseOutlook float64
	Overdue         float64
	SupportTickets  float64
	PriceComplaints float64
	Sentiment       float64
	// Bands: a score enters MEDIUM at MediumAt and HIGH at HighAt, and leaves
	// a band only when it falls Hysteresis points below its entry threshold.
	MediumAt, HighAt, Hysteresis int
}

// DefaultWeights are used for tenants without a weights row.
func DefaultWeights() Weights {
	return Weights{
		PurchaseOutlook: 70,
		Overdue:         20,
		SupportTickets:  35,
		PriceComplaints: 30,
		Sentiment:       40,
		MediumAt:        40,
		HighAt:          70,
		Hysteresis:      5,
	}
}

// MaxWeight is the most points one indicator may reach on its own: below
// 100 so that no single sign makes a customer certain to leave, and every
// indicator keeps a finite term in the apportionment of the score.
const MaxWeight = 95

// FieldError is one invalid setting of Weights, named as in the API
// (retain.churn.v1.Weights).
type FieldError struct {
	Field   string
	Problem string
}

// FieldErrors are every invalid setting of a Weights.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = e.Field + ": " + e.Problem
	}
	return "churn weights: " + strings.Join(parts, "; ")
}

// Check returns every setting outside its range; nil when w is valid.
func (w Weights) Check() FieldErrors {
	var bad FieldErrors
	for _, f := range []struct {
		name string
		v    float64
	}{{CodePurchaseOutlook, w.PurchaseOutlook}, {CodeOverdue, w.Overdue}, {CodeSupportTickets, w.SupportTickets}, {CodePriceComplaints, w.PriceComplaints}, {CodeSentiment, w.Sentiment}} {
		if !(f.v >= 0 && f.v <= MaxWeight) {
			bad = append(bad, FieldError{f.name, fmt.Sprintf("%v: must be 0-%d points", f.v, MaxWeight)})
		}
	}
	n := len(bad)
	if w.MediumAt < 1 || w.MediumAt > 99 {
		bad = append(bad, FieldError{"medium_at", fmt.Sprintf("%d: must be 1-99", w.MediumAt)})
	}
	switch {
	case w.HighAt < 2 || w.HighAt > 100:
		bad = append(bad, FieldError{"high_at", fmt.Sprintf("%d: must be 2-100", w.HighAt)})
	case w.HighAt <= w.MediumAt:
		bad = append(bad, FieldError{"high_at", fmt.Sprintf("%d: must be above medium_at (%d)", w.HighAt, w.MediumAt)})
	}
	thresholdsOK := len(bad) == n
	// A band is left only below its entry threshold minus the hysteresis:
	// at or beyond the gap between thresholds (or medium_at) a customer
	// could never fall from HIGH to MEDIUM (or from MEDIUM to LOW). Against
	// invalid thresholds that says nothing more.
	switch {
	case w.Hysteresis < 0:
		bad = append(bad, FieldError{"hysteresis", fmt.Sprintf("%d: must not be negative", w.Hysteresis)})
	case thresholdsOK && (w.Hysteresis >= w.MediumAt || w.Hysteresis >= w.HighAt-w.MediumAt):
		bad = append(bad, FieldError{"hysteresis", fmt.Sprintf("%d: must be below medium_at (%d) and below high_at - medium_at (%d)", w.Hysteresis, w.MediumAt, w.HighAt-w.MediumAt)})
	}
	return bad
}

// Validate reports weights outside their ranges (a FieldErrors).
func (w Weights) Validate() error {
	if bad := w.Check(); bad != nil {
		return bad
	}
	return nil
}

// Reason is one indicator's share of a score.
type Reason struct {
	Code string
	// Contribution is whole points; the contributions of a Result add up to
	// its Score.
	Contribution int
	// Exact is the unrounded share.
	Exact float64
	// Evidence is what the reason's sentence says (see Describe).
	Evidence Evidence
}

// Evidence is what a reason's sentence is made of: numbers rounded to the
// precision the sentence shows and instants rather than ages ("the last
// order on 2025-11-26", not "95 days ago"). So a stored reason only changes
// when its sentence would change other than by the passing of time, which
// lets a rescoring pass leave it alone, and the sentence is rendered as of
// whatever instant it is read at. Each code uses some of the fields; the
// JSON names are the stored form.
type Evidence struct {
	// purchase_outlook: expected purchases in the horizon and those of a
	// typical new customer; the past pace is rendered from RepeatDays and
	// FirstOrder as of the reading.
	Expected     float64 `json:"expected,omitzero"`
	Reference    float64 `json:"reference,omitzero"`
	HorizonWeeks float64 `json:"horizon_weeks,omitzero"`
	// RepeatDays: purchase days after the first (purchase_outlook,
	// overdue); FirstOrder and LastOrder: the days of the first and last
	// orders (midnight UTC).
	RepeatDays int       `json:"repeat_days,omitzero"`
	FirstOrder time.Time `json:"first_order,omitzero"`
	LastOrder  time.Time `json:"last_order,omitzero"`
	// overdue: the usual gap between purchase days.
	GapDays float64 `json:"gap_days,omitzero"`
	// support_tickets (all tickets) and price_complaints (billing/pricing
	// ones): opened in the last 30 and 90 days; tickets still open.
	Tickets30   int `json:"tickets_30d,omitzero"`
	Tickets90   int `json:"tickets_90d,omitzero"`
	OpenTickets int `json:"open_tickets,omitzero"`
	// price_complaints: BeforeRenewal when a billing ticket was opened in the
	// 30 days before RenewalDate, RenewalLead days before it at the closest.
	BeforeRenewal bool      `json:"before_renewal,omitzero"`
	RenewalLead   int       `json:"renewal_lead_days,omitzero"`
	RenewalDate   time.Time `json:"renewal_date,omitzero"`
	// sentiment: the surveys that carry risk.
	NPS  SurveyEvidence `json:"nps,omitzero"`
	CSAT SurveyEvidence `json:"csat,omitzero"`
}

// SurveyEvidence is a survey's latest answer, when it was given, and the
// mean over Answers answers (one decimal).
type SurveyEvidence struct {
	Latest  int       `json:"latest"`
	Answers int       `json:"answers"`
	Mean    float64   `json:"mean"`
	At      time.Time `json:"at"`
}

// Derived is the evidence as the scorer read it, for display.
type Derived struct {
	// History is the BG/NBD summary (valid when HasOrders).
	History           model.Summary
	HasOrders         bool
	DaysSinceLast     int
	TypicalGapDays    float64
	Tickets30         int
	Tickets90         int
	OpenTickets       int
	BillingTickets90  int
	LatestNPS         *int
	MeanNPS           *float64
	LatestCSAT        *int
	MeanCSAT          *float64
	Prediction        *model.Score // nil without a model
	ExpectedReference float64      // Eref, 0 without a model
}

// Result is a scored customer.
type Result struct {
	// Score is 0-100, the rounded Exact.
	Score int
	// Exact orders customers with the same Score.
	Exact float64
	// Reasons holds every indicator with a non-zero contribution, largest
	// first.
	Reasons []Reason
	Derived Derived
}

const day = 24 * time.Hour

// gapPrior is how many of the tenant's typical gaps are mixed into a
// customer's own mean gap. Few repeat purchases say little about a rhythm,
// and on CDNOW a weaker prior ranks worse: with 1 pseudo-gap the combined
// AUC is lower (measured with the earlier outlook form Eref/(Eref+E): 0.7707
// with 1 pseudo-gap, 0.7718 with 3 at overdue weight 20; TestCDNOWRanking
// logs the current figures).
const gapPrior = 3

// utcDay is midnight UTC of t's UTC calendar day.
func utcDay(t time.Time) time.Time { return time.Unix(civilDay(t)*86400, 0).UTC() }

// civilDay numbers t's UTC calendar day.
func civilDay(t time.Time) int64 {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// History is the BG/NBD summary of f as of f.AsOf: repeat purchase days,
// weeks from the first to the last purchase day and to AsOf's day.
func (f Features) History() (model.Summary, bool) {
	if f.PurchaseDays == 0 {
		return model.Summary{}, false
	}
	first, last, end := civilDay(f.FirstOrder), civilDay(f.LastOrder), civilDay(f.AsOf)
	if end < last {
		end = last
	}
	return model.Summary{X: f.PurchaseDays - 1, Tx: float64(last-first) / 7, T: float64(end-first) / 7}, true
}

type component struct {
	code string
	f    float64
	w    float64
	ev   Evidence
}

// Compute scores f against the tenant's population and weights.
func Compute(f Features, pop Population, w Weights) Result {
	if pop.HorizonWeeks <= 0 {
		pop.HorizonWeeks = DefaultHorizonWeeks
	}
	if pop.TypicalGapDays <= 0 {
		pop.TypicalGapDays = DefaultTypicalGapDays
	}
	var d Derived
	comps := []component{
		purchaseOutlook(f, pop, w, &d),
		overdue(f, pop, w, &d),
		supportTickets(f, w, &d),
		priceComplaints(f, w, &d),
		sentiment(f, w, &d),
	}
	return combine(comps, d)
}

func combine(comps []component, d Derived) Result {
	// A pass combines every customer's indicators: the work stays in a few
	// small slices, sorted by index, and the reasons (which carry their
	// evidence) are allocated once and never moved.
	n := len(comps)
	survive, sumL := 1.0, 0.0
	ls := make([]float64, n)
	for i, c := range comps {
		p := clamp01(c.w * c.f / 100)
		if p >= 1 {
			p = 1 - 1e-12
		}
		ls[i] = -math.Log1p(-p)
		survive *= 1 - p
		sumL += ls[i]
	}
	exact := 100 * (1 - survive)
	res := Result{Exact: exact, Score: int(math.Round(exact)), Derived: d}
	if sumL == 0 {
		return res
	}
	// Largest remainder: floor every share, then hand the missing points to
	// the largest fractional parts (ties in the fixed component order).
	pts, frac, order := make([]int, n), make([]float64, n), make([]int, n)
	given := 0
	for i := range comps {
		e := float64(res.Score) * ls[i] / sumL
		pts[i] = int(math.Floor(e))
		frac[i], order[i] = e-math.Floor(e), i
		given += pts[i]
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(frac[b], frac[a]) })
	for k := 0; given < res.Score; k++ {
		pts[order[k%n]]++
		given++
	}
	order = order[:0]
	for i := range comps {
		if pts[i] > 0 {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(pts[b], pts[a]), cmp.Compare(ls[b], ls[a]))
	})
	if len(order) == 0 {
		return res
	}
	res.Reasons = make([]Reason, len(order))
	for k, i := range order {
		c := &comps[i]
		res.Reasons[k] = Reason{Code: c.code, Contribution: pts[i], Exact: exact * ls[i] / sumL, Evidence: c.ev}
	}
	return res
}

func clamp01(v float64) float64 {
	switch {
	case !(v > 0):
		return 0
	case v > 1:
		return 1
	}
	return v
}

// purchaseOutlook is the model's expected purchases in the horizon against
// a typical new customer's.
func purchaseOutlook(f Features, pop Population, w Weights, d *Derived) component {
	c := component{code: CodePurchaseOutlook, w: w.PurchaseOutlook}
	s, ok := f.History()
	d.History, d.HasOrders = s, ok
	if !ok || pop.Model == nil {
		return c
	}
	p := *pop.Model
	h := pop.HorizonWeeks
	sc := p.Score(s, h)
	d.Prediction = &sc
	eref := h * p.R / p.Alpha
	d.ExpectedReference = eref
	e := sc.ExpectedPurchases
	c.f = math.Exp(-e / eref)
	c.ev = Evidence{Expected: roundCount(e), Reference: roundCount(eref), HorizonWeeks: h, RepeatDays: s.X, FirstOrder: utcDay(f.FirstOrder)}
	return c
}

// overdue is the silence since the last order against the customer's usual
// rhythm.
func overdue(f Features, pop Population, w Weights, d *Derived) component {
	c := component{code: CodeOverdue, w: w.Overdue}
	s, ok := f.History()
	if !ok {
		return c
	}
	since := int(civilDay(f.AsOf) - civilDay(f.LastOrder))
	if since < 0 {
		since = 0
	}
	// The customer's own mean gap, shrunk toward the tenant's typical gap:
	// two orders a day apart do not make a daily buyer.
	gap := (s.Tx*7 + gapPrior*pop.TypicalGapDays) / (float64(s.X) + gapPrior)
	d.DaysSinceLast, d.TypicalGapDays = since, gap
	if q := float64(since) / gap; q > 1 {
		c.f = (q - 1) / q
	}
	c.ev = Evidence{RepeatDays: s.X, LastOrder: utcDay(f.LastOrder), GapDays: round1(gap)}
	return c
}

func days(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

func isOpen(t Ticket, asOf time.Time) bool {
	return t.ResolvedAt.IsZero() || t.ResolvedAt.After(asOf)
}

// supportTickets is the recent ticket load.
func supportTickets(f Features, w Weights, d *Derived) component {
	c := component{code: CodeSupportTickets, w: w.SupportTickets}
	var n30, n90, open int
	for _, t := range f.Tickets {
		if t.OpenedAt.After(f.AsOf) {
			continue
		}
		age := f.AsOf.Sub(t.OpenedAt)
		if age <= 30*day {
			n30++
		}
		if age <= 90*day {
			n90++
		}
		if isOpen(t, f.AsOf) {
			open++
		}
	}
	d.Tickets30, d.Tickets90, d.OpenTickets = n30, n90, open
	u := float64(n30) + 0.5*float64(n90-n30) + 0.5*float64(open)
	c.f = 1 - math.Exp(-u/1.5)
	c.ev = Evidence{Tickets30: n30, Tickets90: n90, OpenTickets: open}
	return c
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// priceComplaints is billing and pricing tickets, most telling shortly
// before a renewal.
func priceComplaints(f Features, w Weights, d *Derived) component {
	c := component{code: CodePriceComplaints, w: w.PriceComplaints}
	var u float64
	var n30, n90, beforeRenewal int
	minLead := -1
	for _, t := range f.Tickets {
		if t.Category != CategoryBillingPricing || t.OpenedAt.After(f.AsOf) {
			continue
		}
		age := f.AsOf.Sub(t.OpenedAt)
		if age > 90*day {
			continue
		}
		n90++
		v := 0.5
		if age <= 30*day {
			n30++
			v = 1
		}
		if !f.RenewalDate.IsZero() {
			lead := int(civilDay(f.RenewalDate) - civilDay(t.OpenedAt))
			if lead >= 0 && lead <= 30 {
				v *= 2
				beforeRenewal++
				if minLead < 0 || lead < minLead {
					minLead = lead
				}
			}
		}
		u += v
	}
	d.BillingTickets90 = n90
	c.f = 1 - math.Exp(-u)
	c.ev = Evidence{Tickets30: n30, Tickets90: n90}
	if beforeRenewal > 0 {
		c.ev.BeforeRenewal, c.ev.RenewalLead, c.ev.RenewalDate = true, minLead, f.RenewalDate.UTC()
	}
	return c
}

// npsRisk maps an NPS (0-10, or a mean) to risk: detractors 0.7-1, passives
// 0.35, promoters 0, linear between the classes.
func npsRisk(v float64) float64 {
	switch {
	case v <= 6:
		return 0.7 + 0.3*(6-max(v, 0))/6
	case v < 7:
		return 0.7 - 0.35*(v-6)
	case v <= 8:
		return 0.35
	case v < 9:
		return 0.35 * (9 - v)
	}
	return 0
}

// csatRisk maps a CSAT (1-5, or a mean) to risk: 1 -> 1, 2 -> 0.75,
// 3 -> 0.35, 4-5 -> 0, linear between.
func csatRisk(v float64) float64 {
	switch {
	case v <= 1:
		return 1
	case v <= 2:
		return 1 - 0.25*(v-1)
	case v <= 3:
		return 0.75 - 0.4*(v-2)
	case v < 4:
		return 0.35 * (4 - v)
	}
	return 0
}

// NPSClass names the class of an NPS answer.
func NPSClass(score int) string {
	switch {
	case score <= 6:
		return "detractor"
	case score <= 8:
		return "passive"
	}
	return "promoter"
}

// answerHalfLife is how fast an old survey answer loses its weight.
const answerHalfLife = 180 * day

type surveyStats struct {
	n      int
	latest Answer
	mean   float64
}

func statsOf(as []Answer, kind SurveyKind, asOf time.Time) (surveyStats, bool) {
	var st surveyStats
	sum := 0
	for _, a := range as {
		if a.Kind != kind || a.AnsweredAt.After(asOf) {
			continue
		}
		st.n++
		sum += a.Score
		// Latest by time; equal times by the lower score, so the choice
		// never depends on the input order.
		if st.n == 1 || a.AnsweredAt.After(st.latest.AnsweredAt) ||
			(a.AnsweredAt.Equal(st.latest.AnsweredAt) && a.Score < st.latest.Score) {
			st.latest = a
		}
	}
	if st.n == 0 {
		return st, false
	}
	st.mean = float64(sum) / float64(st.n)
	return st, true
}

// sentiment is what the customer said in surveys.
func sentiment(f Features, w Weights, d *Derived) component {
	c := component{code: CodeSentiment, w: w.Sentiment}
	eval := func(kind SurveyKind, risk func(float64) float64, ev *SurveyEvidence) {
		st, ok := statsOf(f.Answers, kind, f.AsOf)
		if !ok {
			return
		}
		latest, mean := st.latest.Score, st.mean
		if kind == SurveyNPS {
			d.LatestNPS, d.MeanNPS = &latest, &mean
		} else {
			d.LatestCSAT, d.MeanCSAT = &latest, &mean
		}
		age := f.AsOf.Sub(st.latest.AnsweredAt)
		v := (0.7*risk(float64(latest)) + 0.3*risk(mean)) * math.Exp2(-float64(age)/float64(answerHalfLife))
		if v > 0 {
			*ev = SurveyEvidence{Latest: latest, Answers: st.n, Mean: round1(mean), At: st.latest.AnsweredAt.UTC()}
		}
		c.f = max(c.f, v)
	}
	eval(SurveyNPS, npsRisk, &c.ev.NPS)
	eval(SurveyCSAT, csatRisk, &c.ev.CSAT)
	return c
}

// Describe is the reason's sentence as of asOf, e.g. "95 days since the
// last order, usually orders every 30.9 days".
func (r Reason) Describe(asOf time.Time) string {
	ev := r.Evidence
	switch r.Code {
	case CodePurchaseOutlook:
		pace := ", no repeat order yet"
		// A repeat buyer's first purchase day is at least a day before asOf.
		if weeks := float64(civilDay(asOf)-civilDay(ev.FirstOrder)) / 7; ev.RepeatDays > 0 && weeks > 0 {
			pace = fmt.Sprintf(", %s at their past pace", fmtCount(float64(ev.RepeatDays)/weeks*ev.HorizonWeeks))
		}
		return fmt.Sprintf("expected to order %s times in the next %s weeks%s (a new customer: %s)",
			fmtCount(ev.Expected), fmtNum(ev.HorizonWeeks), pace, fmtCount(ev.Reference))
	case CodeOverdue:
		since := days(max(int(civilDay(asOf)-civilDay(ev.LastOrder)), 0))
		if ev.RepeatDays == 0 {
			return fmt.Sprintf("%s since the first and only order; customers typically reorder every %s days", since, fmtNum(ev.GapDays))
		}
		return fmt.Sprintf("%s since the last order, usually orders every %s days", since, fmtNum(ev.GapDays))
	case CodeSupportTickets:
		var parts []string
		n30, n90, open := ev.Tickets30, ev.Tickets90, ev.OpenTickets
		switch {
		case n30 > 0 && n90 > n30:
			parts = append(parts, fmt.Sprintf("%s in 30 days (%d in 90)", plural(n30, "ticket"), n90))
		case n30 > 0:
			parts = append(parts, plural(n30, "ticket")+" in 30 days")
		case n90 > 0:
			parts = append(parts, plural(n90, "ticket")+" in 90 days")
		}
		if open > 0 {
			if len(parts) == 0 {
				parts = append(parts, plural(open, "open ticket"))
			} else {
				parts = append(parts, fmt.Sprintf("%d still open", open))
			}
		}
		return strings.Join(parts, ", ")
	case CodePriceComplaints:
		var s string
		if ev.Tickets30 > 0 {
			s = fmt.Sprintf("%s about billing or price in 30 days", plural(ev.Tickets30, "ticket"))
			if ev.Tickets90 > ev.Tickets30 {
				s += fmt.Sprintf(" (%d in 90)", ev.Tickets90)
			}
		} else {
			s = fmt.Sprintf("%s about billing or price in 90 days", plural(ev.Tickets90, "ticket"))
		}
		if ev.BeforeRenewal {
			s += fmt.Sprintf(", %s before the renewal on %s", days(ev.RenewalLead), ev.RenewalDate.UTC().Format(time.DateOnly))
		}
		return s
	case CodeSentiment:
		var parts []string
		if n := ev.NPS; n.Answers > 0 {
			parts = append(parts, describeSurvey(fmt.Sprintf("NPS %d (%s)", n.Latest, NPSClass(n.Latest)), n, asOf))
		}
		if c := ev.CSAT; c.Answers > 0 {
			parts = append(parts, describeSurvey(fmt.Sprintf("CSAT %d of 5", c.Latest), c, asOf))
		}
		return strings.Join(parts, "; ")
	}
	return r.Code
}

func describeSurvey(head string, s SurveyEvidence, asOf time.Time) string {
	if s.Answers > 1 {
		head += fmt.Sprintf(", mean %s over %d answers", fmtNum(s.Mean), s.Answers)
	}
	return head + ", " + ago(asOf.Sub(s.At))
}

func ago(d time.Duration) string {
	n := int(d / day)
	if n <= 0 {
		return "today"
	}
	return days(n) + " ago"
}

// fmtNum prints at most one decimal, without a trailing ".0".
func fmtNum(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0")
}

// round1 and roundCount round to what fmtNum and fmtCount show, so that
// evidence changes exactly when its sentence does.
func round1(v float64) float64 { return math.Round(v*10) / 10 }

func roundCount(v float64) float64 {
	if v > 0 && v < 0.095 {
		return math.Round(v*100) / 100
	}
	return round1(v)
}

// fmtCount prints an expected count: one decimal, two below 0.1.
func fmtCount(v float64) string {
	if v > 0 && v < 0.095 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmtNum(v)
}

// NextBand is the band of a score given the band it was in: a score enters
// a band at its threshold and leaves it only below threshold - Hysteresis,
// so a score hovering at a boundary does not flap. prev BandUnspecified
// (never scored) is treated as BandLow.
func NextBand(prev Band, score int, w Weights) Band {
	for _, b := range []struct {
		band Band
		at   int
	}{{BandHigh, w.HighAt}, {BandMedium, w.MediumAt}} {
		at := b.at
		if b.band <= prev {
			at -= w.Hysteresis
		}
		if score >= at {
			return b.band
		}
	}
	return BandLow
}

// PlainBand is the band of a score without history (backtests).
func PlainBand(score int, w Weights) Band { return NextBand(BandUnspecified, score, w) }
