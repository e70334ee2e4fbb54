package simulate

import (
	"fmt"
	"iter"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/retainhq/retain/platform/currency"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

const (
	msPerMinute = 60 * 1000.0
	msPerHour   = 60 * msPerMinute
	msPerDay    = 24 * msPerHour
	msPerWeek   = 7 * msPerDay
)

// Shop is a configured simulation. Streaming it (Events, WriteNDJSON) always
// yields the same events; several streams may run concurrently.
type Shop struct {
	cfg Config

	startMs  int64   // Start as Unix milliseconds
	window   float64 // length of the window in ms; events happen in [0, window)
	horizon  float64 // how far past the window dropouts are looked for
	leadMs   float64 // ChurnLeadDays in ms
	idPrefix string  // "sim-<seed>-<fingerprint>-"

	lambdaPerMs  float64 // converts a Gamma(r, 1) draw to a purchase rate per ms
	muLog0       float64 // log of the median order value in minor units
	ticketBase   float64 // tickets per ms while active
	ticketLeave  float64 // tickets per ms while about to leave
	products     []product
	locales      []localeSpec
	localeWeight []float64

	mu    sync.Mutex
	stats *Stats // of the last complete stream, nil before the first
}

// New validates cfg and prepares the shop. It does not generate anything yet.
func New(cfg Config) (*Shop, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Start = cfg.Start.UTC().Truncate(time.Millisecond)
	// Validate admits any three upper-case letters; an unknown code gets
	// the usual two decimals.
	digits, ok := currency.Exponent(cfg.Currency)
	if !ok {
		digits = 2
	}
	s := &Shop{
		cfg:         cfg,
		startMs:     cfg.Start.UnixMilli(),
		window:      float64(cfg.Days) * msPerDay,
		leadMs:      float64(cfg.ChurnLeadDays) * msPerDay,
		idPrefix:    "sim-" + strconv.FormatInt(cfg.Seed, 10) + "-" + fmt.Sprintf("%08x", cfg.fingerprint()) + "-",
		lambdaPerMs: cfg.RateScale / cfg.PurchaseScale / msPerWeek,
		muLog0:      math.Log(cfg.OrderValueMedian * math.Pow10(digits)),
		ticketBase:  cfg.TicketsPerYear / (365 * msPerDay),
		products:    catalog(cfg.OrderValueMedian, digits),
		locales:     locales(),
	}
	s.horizon = s.window + s.leadMs
	s.ticketLeave = s.ticketBase * cfg.ChurnTicketBoost
	w := make([]float64, len(s.locales))
	for i, l := range s.locales {
		w[i] = l.weight
	}
	s.localeWeight = cumulate(w...)
	return s, nil
}

// Config returns the configuration in use (Start truncated to the millisecond).
func (s *Shop) Config() Config { return s.cfg }

// End is the end of the window: every event happens before it.
func (s *Shop) End() time.Time { return s.cfg.Start.Add(time.Duration(s.cfg.Days) * 24 * time.Hour) }

// plan is a customer's hidden life, drawn from its own stream so it can be
// recomputed for any single customer.
type plan struct {
	t0      float64 // sign-up (profile) time, ms since Start
	first   float64 // first order time
	lambda  float64 // purchases per ms while active
	p       float64 // dropout probability after each repeat purchase
	muLog   float64 // log of the typical order value in minor units
	dropIdx int     // index of the order after which the customer leaves; -1: none
	dropAt  float64 // time of that order; +Inf when none
	orders  int     // orders inside the window
	purch   rng     // the purchase stream positioned after the first order
}

func (s *Shop) plan(i int) plan {
	c := &s.cfg
	r := newRNG(c.Seed, i, streamPlan)
	// Stratified acquisition: customer i signs up inside its own quantile slot,
	// so customer numbers follow sign-up order without sorting, and each
	// customer's sign-up time is computable alone.
	u := (float64(i) + r.float64()) / float64(c.Customers)
	t0 := acquisitionQuantile(u, c.AcquisitionDecay) * s.window
	t0 = math.Min(math.Floor(t0), s.window-1)
	first := math.Min(t0+r.between(1, 20)*msPerMinute, s.window-1)

	pl := plan{
		t0:      t0,
		first:   first,
		lambda:  r.gamma(c.PurchaseShape) * s.lambdaPerMs,
		p:       r.beta(c.DropoutA, c.DropoutB),
		muLog:   s.muLog0 + c.OrderValueSpread*r.norm(),
		dropIdx: -1,
		dropAt:  math.Inf(1),
		orders:  1,
	}
	pl.purch = r
	// Run the purchase process ahead (the generator replays the same draws) to
	// learn when the customer leaves, which the tickets and surveys before it
	// depend on. BG/NBD: a customer may leave only after a repeat purchase.
	t := first
	for k := 1; ; k++ {
		t += r.exp() / pl.lambda
		if !(t < s.horizon) { // also stops on +Inf from a zero rate
			break
		}
		if t < s.window {
			pl.orders++
		}
		if r.chance(pl.p) {
			pl.dropIdx, pl.dropAt = k, t
			break
		}
	}
	return pl
}

// acquisitionQuantile maps u in [0,1) to a sign-up position in [0,1) with
// density proportional to exp(-k x).
func acquisitionQuantile(u, k float64) float64 {
	if k < 1e-9 {
		return u
	}
	return -math.Log1p(u*math.Expm1(-k)) / k
}

// CustomerTruth is what the simulation knows about a customer and the services
// have to infer.
type CustomerTruth struct {
	ID string
	// Acquired is the sign-up time (the customer.updated event); the first
	// order follows within minutes.
	Acquired time.Time
	// PurchaseRate is the customer's purchases per week while active (lambda).
	PurchaseRate float64
	// DropoutProbability is the chance of leaving after each repeat purchase (p).
	DropoutProbability float64
	// TypicalOrderValue is the median of the customer's order values, in minor
	// units.
	TypicalOrderValue int64
	// Orders is the number of orders placed inside the window.
	Orders int
	// DroppedAt is when the customer left for good (right after their last
	// purchase). Zero when they are active at the end of the window and stay so
	// for ChurnLeadDays after it; it may lie after the window end, for a
	// customer already about to leave when the data ends.
	DroppedAt time.Time
	// Dropped is true when DroppedAt lies inside the window.
	Dropped bool
	// LeavingFrom starts the "about to leave" period that ends at DroppedAt
	// (ChurnLeadDays, cut at sign-up). Zero when DroppedAt is.
	LeavingFrom time.Time
}

// AboutToLeave tells whether t falls in the weeks before the customer left,
// when tickets, refunds and sour survey answers are planted.
func (t CustomerTruth) AboutToLeave(at time.Time) bool {
	return !t.DroppedAt.IsZero() && !at.Before(t.LeavingFrom) && !at.After(t.DroppedAt)
}

// ActiveAt tells whether the customer had signed up and not yet left at t.
func (t CustomerTruth) ActiveAt(at time.Time) bool {
	return !at.Before(t.Acquired) && (t.DroppedAt.IsZero() || !at.After(t.DroppedAt))
}

func (s *Shop) truth(i int) CustomerTruth {
	pl := s.plan(i)
	t := CustomerTruth{
		ID:                 customerID(i),
		Acquired:           s.at(pl.t0),
		PurchaseRate:       pl.lambda * msPerWeek,
		DropoutProbability: pl.p,
		TypicalOrderValue:  int64(math.Round(math.Exp(pl.muLog))),
		Orders:             pl.orders,
	}
	if pl.dropIdx >= 0 {
		t.DroppedAt = s.at(pl.dropAt)
		t.Dropped = pl.dropAt < s.window
		t.LeavingFrom = s.at(math.Max(pl.t0, pl.dropAt-s.leadMs))
	}
	return t
}

// at converts a time in ms since Start (as the generator keeps it) to the
// event time it is written as.
func (s *Shop) at(ms float64) time.Time {
	return time.UnixMilli(s.startMs + int64(ms)).UTC()
}

// Customers yields every customer's truth in sign-up order (c-000001 first).
// Each one is recomputed on demand: memory stays constant.
func (s *Shop) Customers() iter.Seq[CustomerTruth] {
	return func(yield func(CustomerTruth) bool) {
		for i := 0; i < s.cfg.Customers; i++ {
			if !yield(s.truth(i)) {
				return
			}
		}
	}
}

// Customer returns the truth about one customer by id ("c-000123").
func (s *Shop) Customer(id string) (CustomerTruth, bool) {
	digits, ok := strings.CutPrefix(id, "c-")
	if !ok {
		return CustomerTruth{}, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || n > s.cfg.Customers || customerID(n-1) != id {
		return CustomerTruth{}, false
	}
	return s.truth(n - 1), true
}

// Stats summarises a complete stream of the shop.
type Stats struct {
	Events          int
	Customers       int // customer.updated events, one per customer
	Orders          int
	Refunds         int
	TicketsOpened   int
	TicketsResolved int
	NPSAnswers      int
	CSATAnswers     int
	// RepeatCustomers ordered at least twice inside the window.
	RepeatCustomers int
	// DroppedCustomers left inside the window.
	DroppedCustomers int
	// Revenue is the sum of order totals and Refunded the sum of refunds, in
	// minor units of Currency.
	Revenue  int64
	Refunded int64
	Currency string
	// LeavingTickets were opened by customers about to leave; PriceTickets are
	// BILLING_PRICING tickets, LeavingPriceTickets both.
	LeavingTickets      int
	PriceTickets        int
	LeavingPriceTickets int
}

// RepeatRate is the share of customers who ordered at least twice.
func (st Stats) RepeatRate() float64 {
	if st.Customers == 0 {
		return 0
	}
	return float64(st.RepeatCustomers) / float64(st.Customers)
}

// Stats returns the summary of the shop's events. It comes from the last
// complete stream, or from a generation pass (without encoding) when nothing
// was streamed yet.
func (s *Shop) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	if st != nil {
		return *st
	}
	g := s.newGenerator()
	for g.next() {
	}
	s.keepStats(&g.stats)
	return g.stats
}

func (s *Shop) keepStats(st *Stats) {
	cp := *st
	s.mu.Lock()
	s.stats = &cp
	s.mu.Unlock()
}

// Events streams every event of the shop in occurred_at order (ties in a fixed
// order) to yield, stopping at the first error yield returns, which Events
// returns. Each event is freshly allocated and belongs to the caller. Memory
// stays bounded by the customers active at a time, never by the event count.
func (s *Shop) Events(yield func(*eventsv1.Event) error) error {
	g := s.newGenerator()
	for g.next() {
		if err := yield(s.toProto(&g.ev)); err != nil {
			return err
		}
	}
	s.keepStats(&g.stats)
	return nil
}
