package simulate

import (
	"math"
	"time"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

type kind uint8

const (
	kindProfile kind = iota + 1
	kindOrder
	kindRefund
	kindTicketOpened
	kindTicketResolved
	kindNPS
	kindCSAT
)

// Type names as ingest sets them.
var kindType = [...]string{
	kindProfile:        "customer.updated",
	kindOrder:          "order.placed",
	kindRefund:         "order.refunded",
	kindTicketOpened:   "ticket.opened",
	kindTicketResolved: "ticket.resolved",
	kindNPS:            "survey.answered",
	kindCSAT:           "survey.answered",
}

const maxBasket = 5

type lineItem struct {
	product *product
	qty     int64
}

// simEvent is one generated event in a compact form that both the protobuf
// and the NDJSON writers read; the generator reuses it.
type simEvent struct {
	n       uint64 // 1-based event number, the tail of the event id
	at      int64  // ms since Start
	kind    kind
	cust    int32 // customer index
	leaving bool  // the customer was about to leave (truth, not written)

	// customer.updated
	locale       *localeSpec
	first, last  *name
	zone         string
	domain       string
	phone        []byte // E.164 or empty
	emailConsent eventsv1.ConsentState
	smsConsent   eventsv1.ConsentState
	renewal      []byte // YYYY-MM-DD or empty

	order    int64 // order number (order.placed, order.refunded)
	total    int64
	items    []lineItem
	coupon   string
	refund   int64
	amount   int64
	ticket   int64
	category eventsv1.TicketCategory
	survey   int64
	score    int32
	text     string // subject, resolution, refund reason or survey comment
}

// custState is an active customer: the generator pulls its next event lazily,
// so only customers with events still to come hold state.
type custState struct {
	at int64 // time of the next primary event, ms

	idx         int32
	orders      int32 // orders emitted so far: index of the next one
	dropIdx     int32
	profileDone bool

	nextOrder  float64 // +Inf when no more orders in the window
	nextTicket float64 // +Inf when no more tickets in the window
	lambda     float64
	muLog      float64
	dropAt     float64
	leadStart  float64 // start of the about-to-leave period
	aliveEnd   float64 // min(dropAt, window): tickets stop there

	purch rng
	life  rng
}

func (c *custState) leaving(t float64) bool {
	return t >= c.leadStart && t <= c.dropAt
}

// followup is an event scheduled by an earlier one (a refund, a ticket
// resolution, a survey answer), fully drawn when scheduled so the customer's
// state can go as soon as its own purchases and tickets are done.
type followup struct {
	at      int64
	ref     int64 // order or ticket number: with kind, unique among follow-ups
	amount  int64
	cust    int32
	kind    kind
	cat     uint8 // ticket category index (resolution texts)
	pick    int8  // text index; -1: none
	score   int8
	leaving bool
}

// generator merges the customers' lazy timelines and the scheduled follow-ups
// with two heaps ordered by time.
type generator struct {
	s     *Shop
	ev    simEvent
	stats Stats

	nextCust int  // next customer to sign up
	pending  plan // its plan

	custs     []custEntry
	followups []followup
	free      []*custState

	orderSeq, refundSeq, ticketSeq, surveySeq int64

	itemBuf    [maxBasket]lineItem
	phoneBuf   [16]byte
	renewalBuf [10]byte
}

func (s *Shop) newGenerator() *generator {
	g := &generator{s: s}
	g.stats.Currency = s.cfg.Currency
	g.pending = s.plan(0)
	return g
}

const never = math.MaxInt64

// next advances to the next event (in g.ev); false at the end of the stream.
func (g *generator) next() bool {
	s := g.s
	for {
		custAt, fuAt := int64(never), int64(never)
		if len(g.custs) > 0 {
			custAt = g.custs[0].at
		}
		if len(g.followups) > 0 {
			fuAt = g.followups[0].at
		}
		if g.nextCust < s.cfg.Customers {
			if t0 := int64(g.pending.t0); t0 <= custAt && t0 <= fuAt {
				g.activate()
				continue
			}
		}
		switch {
		case custAt == never && fuAt == never:
			return false
		case custAt <= fuAt:
			g.emitPrimary()
		default:
			g.emitFollowup()
		}
		g.ev.n++
		g.stats.Events++
		return true
	}
}

func (g *generator) activate() {
	s := g.s
	pl := &g.pending
	var c *custState
	if n := len(g.free); n > 0 {
		c = g.free[n-1]
		g.free = g.free[:n-1]
	} else {
		c = new(custState)
	}
	*c = custState{
		idx:       int32(g.nextCust),
		dropIdx:   int32(pl.dropIdx),
		nextOrder: pl.first,
		lambda:    pl.lambda,
		muLog:     pl.muLog,
		dropAt:    pl.dropAt,
		leadStart: pl.dropAt - s.leadMs,
		aliveEnd:  math.Min(pl.dropAt, s.window),
		purch:     pl.purch,
		life:      newRNG(s.cfg.Seed, g.nextCust, streamLife),
		at:        int64(pl.t0),
	}
	c.nextTicket = g.ticketAfter(c, pl.t0)
	g.pushCust(c)
	g.nextCust++
	if g.nextCust < s.cfg.Customers {
		g.pending = s.plan(g.nextCust)
	}
}

// ticketAfter draws the next ticket time after t from a Poisson process whose
// rate jumps while the customer is about to leave and stops when they leave.
func (g *generator) ticketAfter(c *custState, t float64) float64 {
	s := g.s
	for t < c.aliveEnd {
		rate, segEnd := s.ticketBase, c.aliveEnd
		if t < c.leadStart {
			segEnd = math.Min(segEnd, c.leadStart)
		} else {
			rate = s.ticketLeave
		}
		if rate > 0 {
			// Memoryless: restarting the draw at a rate change is exact.
			if next := t + c.life.exp()/rate; next < segEnd {
				return next
			}
		}
		t = segEnd
	}
	return math.Inf(1)
}

func (g *generator) emitPrimary() {
	c := g.custs[0].c
	switch {
	case !c.profileDone:
		g.emitProfile(c)
		c.profileDone = true
	case c.nextOrder <= c.nextTicket:
		g.emitOrder(c)
	default:
		g.emitTicket(c)
	}
	next := math.Min(c.nextOrder, c.nextTicket)
	if next < g.s.window {
		c.at = int64(next)
		g.custs[0].at = c.at
		g.siftDownCust(0)
		return
	}
	// Nothing left but follow-ups, which live on their own.
	if c.orders >= 2 {
		g.stats.RepeatCustomers++
	}
	if c.dropAt < g.s.window {
		g.stats.DroppedCustomers++
	}
	g.popCust()
	g.free = append(g.free, c)
}

func (g *generator) emitProfile(c *custState) {
	s, r, ev := g.s, &c.life, &g.ev
	ev.kind, ev.at, ev.cust, ev.leaving = kindProfile, c.at, c.idx, false
	loc := &s.locales[r.pick(s.localeWeight)]
	ev.locale = loc
	ev.first = &loc.first[r.intn(len(loc.first))]
	ev.last = &loc.last[r.intn(len(loc.last))]
	ev.zone = loc.zones[r.intn(len(loc.zones))]
	ev.domain = "example.com"
	if r.chance(0.5) {
		ev.domain = "example.org"
	}
	ev.emailConsent = eventsv1.ConsentState_CONSENT_STATE_REVOKED
	if r.chance(s.cfg.EmailConsentRate) {
		ev.emailConsent = eventsv1.ConsentState_CONSENT_STATE_GRANTED
	}
	ev.phone = ev.phone[:0]
	ev.smsConsent = eventsv1.ConsentState_CONSENT_STATE_UNSPECIFIED
	if r.chance(s.cfg.PhoneRate) {
		ev.phone = g.phoneBuf[:0]
		if loc.tag == "en-GB" {
			ev.phone = append(ev.phone, "+447700900"...)
			ev.phone = appendPadded(ev.phone, int64(r.intn(1000)), 3)
		} else {
			ev.phone = append(ev.phone, "+1"...)
			ev.phone = append(ev.phone, nanpAreaCodes[r.intn(len(nanpAreaCodes))]...)
			ev.phone = append(ev.phone, "55501"...)
			ev.phone = appendPadded(ev.phone, int64(r.intn(100)), 2)
		}
		ev.smsConsent = eventsv1.ConsentState_CONSENT_STATE_REVOKED
		if r.chance(s.cfg.SMSConsentRate) {
			ev.smsConsent = eventsv1.ConsentState_CONSENT_STATE_GRANTED
		}
	}
	ev.renewal = ev.renewal[:0]
	if r.chance(s.cfg.SubscriptionShare) {
		// A yearly subscription taken at sign-up renews a year later.
		d := time.UnixMilli(s.startMs+c.at).UTC().AddDate(1, 0, 0)
		ev.renewal = d.AppendFormat(g.renewalBuf[:0], time.DateOnly)
	}
	g.stats.Customers++
}

func (g *generator) emitOrder(c *custState) {
	s, r, ev := g.s, &c.life, &g.ev
	t := c.nextOrder
	ev.kind, ev.at, ev.cust = kindOrder, int64(t), c.idx
	ev.leaving = c.leaving(t)
	g.orderSeq++
	ev.order = g.orderSeq

	// Basket: a few products priced near an equal share of the order value
	// the customer has in mind, so the total is the sum of the lines.
	target := math.Exp(c.muLog + s.cfg.OrderValueJitter*r.norm())
	n := 1 + r.pick(basketSizeWeights)
	share := target / float64(n)
	ev.items = g.itemBuf[:0]
	var subtotal int64
	for range n {
		p := g.productNear(r, share, ev.items)
		qty := int64(math.Round(share / float64(p.price)))
		qty = min(max(qty, 1), 5)
		ev.items = append(ev.items, lineItem{product: p, qty: qty})
		subtotal += qty * p.price
	}
	ev.coupon = ""
	ev.total = subtotal
	if r.chance(s.cfg.CouponRate) {
		cp := coupons[1+r.intn(len(coupons)-1)]
		if c.orders == 0 && r.chance(0.6) {
			cp = coupons[0] // the welcome offer
		}
		ev.coupon = cp.code
		ev.total = subtotal - subtotal*cp.percent/100
	}
	g.stats.Orders++
	g.stats.Revenue += ev.total

	// Follow-ups of this order.
	refundRate := s.cfg.RefundRate
	if ev.leaving {
		refundRate *= 2
	}
	if r.chance(refundRate) && ev.total > 0 {
		amount := ev.total
		if r.chance(s.cfg.PartialRefundShare) {
			amount = max(1, int64(float64(ev.total)*r.between(0.1, 0.9)))
		}
		g.schedule(t+r.between(2, 21)*msPerDay, followup{
			kind: kindRefund, cust: c.idx, ref: ev.order, amount: amount,
			pick: int8(r.intn(len(refundReasons))), leaving: ev.leaving,
		})
	}
	if r.chance(s.cfg.NPSRate) {
		score, pick := npsAnswer(r, ev.leaving)
		g.schedule(t+r.between(3, 14)*msPerDay, followup{
			kind: kindNPS, cust: c.idx, ref: ev.order, score: score, pick: pick, leaving: ev.leaving,
		})
	}

	// Replay the purchase stream exactly as plan drew it.
	if c.orders == c.dropIdx {
		c.nextOrder = math.Inf(1)
	} else {
		next := t + c.purch.exp()/c.lambda
		c.purch.float64() // the dropout draw plan made; its outcome is in dropIdx
		if !(next < s.window) {
			next = math.Inf(1)
		}
		c.nextOrder = next
	}
	c.orders++
}

// productNear picks one of the products priced closest to price, avoiding
// the ones already in the basket.
func (g *generator) productNear(r *rng, price float64, taken []lineItem) *product {
	ps := g.s.products
	// Binary search for the first product dearer than price.
	lo, hi := 0, len(ps)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if float64(ps[m].price) <= price {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i := min(max(lo-1+r.intn(3)-1, 0), len(ps)-1)
	for range len(ps) {
		dup := false
		for _, it := range taken {
			if it.product == &ps[i] {
				dup = true
				break
			}
		}
		if !dup {
			break
		}
		i = (i + 1) % len(ps)
	}
	return &ps[i]
}

func npsAnswer(r *rng, leaving bool) (score, pick int8) {
	w := npsClassWeights
	if leaving {
		w = leavingNPSClassWeights
	}
	class := r.pick(w)
	switch class {
	case 0:
		score = int8(r.intn(7)) // detractor 0-6
	case 1:
		score = int8(7 + r.intn(2)) // passive
	default:
		score = int8(9 + r.intn(2)) // promoter
	}
	pick = -1
	if r.chance(0.3) {
		pick = int8(class*10 + r.intn(len(npsComments[class])))
	}
	return score, pick
}

func (g *generator) emitTicket(c *custState) {
	s, r, ev := g.s, &c.life, &g.ev
	t := c.nextTicket
	ev.kind, ev.at, ev.cust = kindTicketOpened, int64(t), c.idx
	ev.leaving = c.leaving(t)
	g.ticketSeq++
	ev.ticket = g.ticketSeq
	w := categoryWeights
	if ev.leaving {
		w = leavingCategoryWeights
	}
	cat := r.pick(w)
	ev.category = ticketCategories[cat]
	subjects := ticketSubjects[cat]
	ev.text = subjects[r.intn(len(subjects))]

	g.stats.TicketsOpened++
	if ev.leaving {
		g.stats.LeavingTickets++
	}
	if ev.category == eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING {
		g.stats.PriceTickets++
		if ev.leaving {
			g.stats.LeavingPriceTickets++
		}
	}

	// Resolved about a day later (log-normal: most within a day, a few take
	// a week), then sometimes rated.
	delay := math.Exp(math.Log(18*msPerHour) + 0.9*r.norm())
	delay = min(max(delay, 5*msPerMinute), 14*msPerDay)
	resolvedAt := t + delay
	resolutions := ticketResolutions[cat]
	g.schedule(resolvedAt, followup{
		kind: kindTicketResolved, cust: c.idx, ref: ev.ticket, cat: uint8(cat),
		pick: int8(r.intn(len(resolutions))), leaving: ev.leaving,
	})
	if r.chance(s.cfg.CSATRate) {
		w := csatWeights
		if ev.leaving {
			w = leavingCSATWeights
		}
		score := int8(1 + r.pick(w))
		pick := int8(-1)
		if r.chance(0.3) {
			mood := 0
			if score >= 4 {
				mood = 1
			}
			pick = int8(mood*10 + r.intn(len(csatComments[mood])))
		}
		g.schedule(resolvedAt+r.between(10, 24*60)*msPerMinute, followup{
			kind: kindCSAT, cust: c.idx, ref: ev.ticket, score: score, pick: pick, leaving: ev.leaving,
		})
	}
	c.nextTicket = g.ticketAfter(c, t)
}

// schedule queues a follow-up unless it would fall after the window.
func (g *generator) schedule(at float64, f followup) {
	if !(at < g.s.window) {
		return
	}
	f.at = int64(at)
	g.followups = append(g.followups, f)
	g.siftUpFollowup(len(g.followups) - 1)
}

func (g *generator) emitFollowup() {
	f := g.followups[0]
	last := len(g.followups) - 1
	g.followups[0] = g.followups[last]
	g.followups = g.followups[:last]
	if last > 0 {
		g.siftDownFollowup(0)
	}

	ev := &g.ev
	ev.kind, ev.at, ev.cust, ev.leaving = f.kind, f.at, f.cust, f.leaving
	switch f.kind {
	case kindRefund:
		g.refundSeq++
		ev.order, ev.refund, ev.amount = f.ref, g.refundSeq, f.amount
		ev.text = refundReasons[f.pick]
		g.stats.Refunds++
		g.stats.Refunded += f.amount
	case kindTicketResolved:
		ev.ticket = f.ref
		ev.text = ticketResolutions[f.cat][f.pick]
		g.stats.TicketsResolved++
	case kindNPS:
		g.surveySeq++
		ev.survey, ev.score = g.surveySeq, int32(f.score)
		ev.text = ""
		if f.pick >= 0 {
			ev.text = npsComments[f.pick/10][f.pick%10]
		}
		g.stats.NPSAnswers++
	case kindCSAT:
		g.surveySeq++
		ev.survey, ev.score = g.surveySeq, int32(f.score)
		ev.text = ""
		if f.pick >= 0 {
			ev.text = csatComments[f.pick/10][f.pick%10]
		}
		g.stats.CSATAnswers++
	}
}

// Hand-written 4-ary heaps with the keys stored inline: at a million active
// customers, chasing a pointer per comparison (container/heap, or a heap of
// *custState) costs more than generating and encoding the events. Ties are
// broken by natural keys so the order is total and fixed.

type custEntry struct {
	at int64
	c  *custState
}

func custLess(a, b *custEntry) bool {
	return a.at < b.at || (a.at == b.at && a.c.idx < b.c.idx)
}

func (g *generator) pushCust(c *custState) {
	g.custs = append(g.custs, custEntry{at: c.at, c: c})
	h := g.custs
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 4
		if !custLess(&h[i], &h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (g *generator) popCust() {
	h := g.custs
	last := len(h) - 1
	h[0] = h[last]
	h[last] = custEntry{}
	g.custs = h[:last]
	if last > 0 {
		g.siftDownCust(0)
	}
}

func (g *generator) siftDownCust(i int) {
	h := g.custs
	n := len(h)
	for {
		first := 4*i + 1
		if first >= n {
			return
		}
		m := first
		for j := first + 1; j < first+4 && j < n; j++ {
			if custLess(&h[j], &h[m]) {
				m = j
			}
		}
		if !custLess(&h[m], &h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func followupLess(a, b *followup) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.ref != b.ref {
		return a.ref < b.ref
	}
	return a.kind < b.kind
}

func (g *generator) siftUpFollowup(i int) {
	h := g.followups
	for i > 0 {
		p := (i - 1) / 4
		if !followupLess(&h[i], &h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (g *generator) siftDownFollowup(i int) {
	h := g.followups
	n := len(h)
	for {
		first := 4*i + 1
		if first >= n {
			return
		}
		m := first
		for j := first + 1; j < first+4 && j < n; j++ {
			if followupLess(&h[j], &h[m]) {
				m = j
			}
		}
		if !followupLess(&h[m], &h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
