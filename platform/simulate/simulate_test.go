package simulate

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// run is one generated shop: its events (protobuf), its NDJSON bytes and the
// shop for the truth.
type run struct {
	shop   *Shop
	events []*eventsv1.Event
	ndjson []byte
}

func generate(t *testing.T, cfg Config) run {
	t.Helper()
	shop, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var r run
	r.shop = shop
	if err := shop.Events(func(ev *eventsv1.Event) error {
		r.events = append(r.events, ev)
		return nil
	}); err != nil {
		t.Fatalf("Events: %v", err)
	}
	var buf bytes.Buffer
	n, err := WriteNDJSON(&buf, shop)
	if err != nil {
		t.Fatalf("WriteNDJSON: %v", err)
	}
	if n != len(r.events) {
		t.Fatalf("WriteNDJSON wrote %d events, Events yielded %d", n, len(r.events))
	}
	r.ndjson = buf.Bytes()
	return r
}

// defaultRun is generated once per test that needs the default shop: it takes
// a few milliseconds.
func defaultRun(t *testing.T) run {
	t.Helper()
	return generate(t, DefaultConfig())
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"accepts the defaults", func(*Config) {}, ""},
		{"accepts a uniform acquisition and no tickets", func(c *Config) { c.AcquisitionDecay, c.TicketsPerYear = 0, 0 }, ""},
		{"accepts a valid tenant", func(c *Config) { c.Tenant = "acme-shop_1" }, ""},
		{"rejects a literal config", func(c *Config) { *c = Config{Customers: 10, Days: 10, Start: c.Start, Currency: "EUR"} }, "start from DefaultConfig"},
		{"rejects zero customers", func(c *Config) { c.Customers = 0 }, "customers must be"},
		{"rejects zero days", func(c *Config) { c.Days = 0 }, "days must be"},
		{"rejects a missing start", func(c *Config) { c.Start = time.Time{} }, "start must be set"},
		{"rejects a lower-case currency", func(c *Config) { c.Currency = "eur" }, "currency"},
		{"rejects an empty currency", func(c *Config) { c.Currency = "" }, "currency"},
		{"rejects a negative purchase shape", func(c *Config) { c.PurchaseShape = -1 }, "purchase shape"},
		{"rejects NaN", func(c *Config) { c.RateScale = math.NaN() }, "rate scale"},
		{"rejects a probability above one", func(c *Config) { c.NPSRate = 1.5 }, "NPS rate"},
		{"rejects a negative ticket rate", func(c *Config) { c.TicketsPerYear = -0.1 }, "tickets per year"},
		{"rejects a bad tenant", func(c *Config) { c.Tenant = "Acme" }, "tenant"},
		{"rejects a long lead", func(c *Config) { c.ChurnLeadDays = 400 }, "churn lead days"},
		{"rejects an absurd rate scale", func(c *Config) { c.RateScale = 1e6 }, "rate scale"},
		{"accepts the high-volume config", func(c *Config) { *c = HighVolumeConfig(100) }, ""},
		{"reports every problem", func(c *Config) { c.Days, c.Currency = 0, "x" }, "currency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := New(cfg); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error mentioning %q", err, tt.wantErr)
			}
			if _, err := New(cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 500
	base := generate(t, cfg)

	t.Run("same seed gives identical bytes", func(t *testing.T) {
		again := generate(t, cfg)
		if !bytes.Equal(base.ndjson, again.ndjson) {
			t.Fatal("two shops with the same config wrote different NDJSON")
		}
	})
	t.Run("streaming a shop twice gives identical bytes", func(t *testing.T) {
		var buf bytes.Buffer
		if _, err := WriteNDJSON(&buf, base.shop); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(base.ndjson, buf.Bytes()) {
			t.Fatal("the second stream of one shop differs from the first")
		}
	})
	t.Run("another seed gives another shop", func(t *testing.T) {
		other := cfg
		other.Seed = 2
		o := generate(t, other)
		if bytes.Equal(base.ndjson, o.ndjson) {
			t.Fatal("seeds 1 and 2 wrote the same NDJSON")
		}
		if o.events[0].GetId() == base.events[0].GetId() {
			t.Fatalf("seeds 1 and 2 share event id %s", o.events[0].GetId())
		}
	})
	t.Run("another shop with the same seed gets other event ids", func(t *testing.T) {
		other := cfg
		other.Customers++
		o := generate(t, other)
		if o.events[0].GetId() == base.events[0].GetId() {
			t.Fatalf("different configs share event id %s", o.events[0].GetId())
		}
	})
	t.Run("concurrent streams of one shop agree", func(t *testing.T) {
		outs := make([]bytes.Buffer, 3)
		errs := make(chan error, len(outs))
		for i := range outs {
			go func() {
				_, err := WriteNDJSON(&outs[i], base.shop)
				errs <- err
			}()
		}
		for range outs {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for i := range outs {
			if !bytes.Equal(outs[i].Bytes(), base.ndjson) {
				t.Fatalf("concurrent stream %d differs", i)
			}
		}
	})
	t.Run("the tenant does not change the events", func(t *testing.T) {
		other := cfg
		other.Tenant = "acme"
		if o := generate(t, other); !bytes.Equal(base.ndjson, o.ndjson) {
			t.Fatal("setting the tenant changed the output")
		}
	})
}

func TestEventsAreValid(t *testing.T) {
	r := defaultRun(t)
	cfg := r.shop.Config()
	start, end := cfg.Start, r.shop.End()
	v := newValidator(cfg.Currency, start, end)
	for i, ev := range r.events {
		if err := v.check(ev); err != nil {
			t.Fatalf("event %d (%s): %v", i, ev.GetId(), err)
		}
	}
	if len(v.orders) == 0 || len(v.tickets) == 0 || v.surveys == 0 || v.refunds == 0 {
		t.Fatalf("a kind of event is missing: %d orders, %d tickets, %d surveys, %d refunds",
			len(v.orders), len(v.tickets), v.surveys, v.refunds)
	}
}

var (
	reEventID    = regexp.MustCompile(`^sim-1-[0-9a-f]{8}-[1-9][0-9]*$`)
	reCustomerID = regexp.MustCompile(`^c-[0-9]{6,}$`)
	reOrderID    = regexp.MustCompile(`^o-[0-9]{7,}$`)
	reRefundID   = regexp.MustCompile(`^r-[0-9]{6,}$`)
	reTicketID   = regexp.MustCompile(`^t-[0-9]{6,}$`)
	reSurveyID   = regexp.MustCompile(`^s-[0-9]{7,}$`)
	reEmail      = regexp.MustCompile(`^[a-z']+\.[a-z']+\.[0-9]+@example\.(com|org)$`)
	// Reserved fictional ranges only: Ofcom drama numbers and NANP 555-01XX.
	rePhone = regexp.MustCompile(`^(\+447700900[0-9]{3}|\+1[2-9][0-9]{2}55501[0-9]{2})$`)
)

// Locales and the zones their customers may live in.
var localeZones = map[string][]string{
	"en-US": {"America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"},
	"en-GB": {"Europe/London"},
	"de-DE": {"Europe/Berlin"},
	"fr-FR": {"Europe/Paris"},
	"es-ES": {"Europe/Madrid"},
	"ar":    {"Africa/Cairo", "Asia/Dubai", "Asia/Amman"},
	"ar-SA": {"Asia/Riyadh"},
	"fa":    {"Asia/Tehran", "Asia/Kabul"},
	"fa-IR": {"Asia/Tehran"},
}

// validator checks every event against the rules in events.proto and the
// consistency between events (refunds of real orders, resolutions of opened
// tickets).
type validator struct {
	currency   string
	start, end time.Time
	last       time.Time
	ids        map[string]bool
	customers  map[string]bool
	emails     map[string]bool
	orders     map[string]order
	refunded   map[string]bool
	refundIDs  map[string]bool
	tickets    map[string]string // ticket -> customer
	resolved   map[string]bool
	surveyIDs  map[string]bool
	surveys    int
	refunds    int
}

type order struct {
	customer string
	total    int64
	at       time.Time
}

func newValidator(currency string, start, end time.Time) *validator {
	return &validator{
		currency: currency, start: start, end: end,
		ids: map[string]bool{}, customers: map[string]bool{}, emails: map[string]bool{},
		orders: map[string]order{}, refunded: map[string]bool{}, refundIDs: map[string]bool{},
		tickets: map[string]string{}, resolved: map[string]bool{}, surveyIDs: map[string]bool{},
	}
}

func (v *validator) money(m *eventsv1.Money, what string) error {
	if m == nil {
		return fmt.Errorf("%s missing", what)
	}
	if m.GetCurrency() != v.currency {
		return fmt.Errorf("%s currency %q, want %q", what, m.GetCurrency(), v.currency)
	}
	if m.GetAmountMinor() < 0 {
		return fmt.Errorf("%s negative: %d", what, m.GetAmountMinor())
	}
	return nil
}

func (v *validator) check(ev *eventsv1.Event) error {
	if !reEventID.MatchString(ev.GetId()) {
		return fmt.Errorf("event id %q", ev.GetId())
	}
	if v.ids[ev.GetId()] {
		return fmt.Errorf("duplicate event id")
	}
	v.ids[ev.GetId()] = true
	if ev.GetTenantId() != "" || ev.GetReceivedAt() != nil {
		return fmt.Errorf("tenant_id and received_at are ingest's to set")
	}
	if ev.GetSource() != "simulate" {
		return fmt.Errorf("source %q", ev.GetSource())
	}
	if err := ev.GetOccurredAt().CheckValid(); err != nil {
		return fmt.Errorf("occurred_at: %w", err)
	}
	at := ev.GetOccurredAt().AsTime()
	if at.Before(v.start) || !at.Before(v.end) {
		return fmt.Errorf("occurred_at %v outside [%v, %v)", at, v.start, v.end)
	}
	if at.Before(v.last) {
		return fmt.Errorf("occurred_at %v before the previous event's %v", at, v.last)
	}
	v.last = at

	var wantType, customer string
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_CustomerUpdated:
		wantType, customer = "customer.updated", p.CustomerUpdated.GetCustomerId()
		if err := v.profile(p.CustomerUpdated, at); err != nil {
			return err
		}
	case *eventsv1.Event_OrderPlaced:
		wantType, customer = "order.placed", p.OrderPlaced.GetCustomerId()
		if err := v.order(p.OrderPlaced, at); err != nil {
			return err
		}
	case *eventsv1.Event_OrderRefunded:
		wantType, customer = "order.refunded", p.OrderRefunded.GetCustomerId()
		if err := v.refund(p.OrderRefunded, at); err != nil {
			return err
		}
	case *eventsv1.Event_TicketOpened:
		wantType, customer = "ticket.opened", p.TicketOpened.GetCustomerId()
		to := p.TicketOpened
		if !reTicketID.MatchString(to.GetTicketId()) || v.tickets[to.GetTicketId()] != "" {
			return fmt.Errorf("ticket id %q missing, malformed or reused", to.GetTicketId())
		}
		if to.GetCategory() == eventsv1.TicketCategory_TICKET_CATEGORY_UNSPECIFIED || to.GetSubject() == "" {
			return fmt.Errorf("ticket without category or subject")
		}
		v.tickets[to.GetTicketId()] = customer
	case *eventsv1.Event_TicketResolved:
		wantType, customer = "ticket.resolved", p.TicketResolved.GetCustomerId()
		id := p.TicketResolved.GetTicketId()
		if v.tickets[id] != customer {
			return fmt.Errorf("resolution of ticket %q not opened before by %s", id, customer)
		}
		if v.resolved[id] || p.TicketResolved.GetResolution() == "" {
			return fmt.Errorf("ticket %q resolved twice or without resolution", id)
		}
		v.resolved[id] = true
	case *eventsv1.Event_SurveyAnswered:
		wantType, customer = "survey.answered", p.SurveyAnswered.GetCustomerId()
		sa := p.SurveyAnswered
		if !reSurveyID.MatchString(sa.GetSurveyId()) || v.surveyIDs[sa.GetSurveyId()] {
			return fmt.Errorf("survey id %q malformed or reused", sa.GetSurveyId())
		}
		v.surveyIDs[sa.GetSurveyId()] = true
		switch sa.GetKind() {
		case eventsv1.SurveyKind_SURVEY_KIND_NPS:
			if sa.GetScore() < 0 || sa.GetScore() > 10 {
				return fmt.Errorf("NPS score %d", sa.GetScore())
			}
		case eventsv1.SurveyKind_SURVEY_KIND_CSAT:
			if sa.GetScore() < 1 || sa.GetScore() > 5 {
				return fmt.Errorf("CSAT score %d", sa.GetScore())
			}
		default:
			return fmt.Errorf("survey kind %v", sa.GetKind())
		}
		v.surveys++
	default:
		return fmt.Errorf("payload %T", p)
	}
	if ev.GetType() != wantType {
		return fmt.Errorf("type %q for a %s payload", ev.GetType(), wantType)
	}
	if !reCustomerID.MatchString(customer) {
		return fmt.Errorf("customer id %q", customer)
	}
	if wantType != "customer.updated" && !v.customers[customer] {
		return fmt.Errorf("%s for customer %s before their profile", wantType, customer)
	}
	return nil
}

func (v *validator) profile(cu *eventsv1.CustomerUpdated, at time.Time) error {
	id := cu.GetCustomerId()
	if v.customers[id] {
		return fmt.Errorf("second profile for %s", id)
	}
	v.customers[id] = true
	if !reEmail.MatchString(cu.GetEmail()) || v.emails[cu.GetEmail()] {
		return fmt.Errorf("email %q not on an example domain, malformed or reused", cu.GetEmail())
	}
	v.emails[cu.GetEmail()] = true
	if cu.GetFirstName() == "" || cu.GetLastName() == "" {
		return fmt.Errorf("names missing")
	}
	zones, ok := localeZones[cu.GetLocale()]
	if !ok {
		return fmt.Errorf("locale %q", cu.GetLocale())
	}
	found := false
	for _, z := range zones {
		found = found || z == cu.GetTimeZone()
	}
	if !found {
		return fmt.Errorf("time zone %q for locale %q", cu.GetTimeZone(), cu.GetLocale())
	}
	switch cu.GetConsent().GetEmailMarketing() {
	case eventsv1.ConsentState_CONSENT_STATE_GRANTED, eventsv1.ConsentState_CONSENT_STATE_REVOKED:
	default:
		return fmt.Errorf("email consent not stated")
	}
	sms := cu.GetConsent().GetSmsMarketing()
	if cu.GetPhone() == "" {
		if sms != eventsv1.ConsentState_CONSENT_STATE_UNSPECIFIED {
			return fmt.Errorf("SMS consent %v without a phone", sms)
		}
	} else {
		if !rePhone.MatchString(cu.GetPhone()) {
			return fmt.Errorf("phone %q outside the reserved fictional ranges", cu.GetPhone())
		}
		if sms == eventsv1.ConsentState_CONSENT_STATE_UNSPECIFIED {
			return fmt.Errorf("SMS consent not stated for a phone")
		}
	}
	for k, val := range cu.GetTraits() {
		if k != "renewal_date" {
			return fmt.Errorf("unexpected trait %q", k)
		}
		d, err := time.Parse(time.DateOnly, val)
		if err != nil || !d.After(at) {
			return fmt.Errorf("renewal_date %q is not a date after sign-up", val)
		}
	}
	return nil
}

func (v *validator) order(op *eventsv1.OrderPlaced, at time.Time) error {
	id := op.GetOrderId()
	if !reOrderID.MatchString(id) {
		return fmt.Errorf("order id %q", id)
	}
	if _, dup := v.orders[id]; dup {
		return fmt.Errorf("order id %q reused", id)
	}
	if err := v.money(op.GetTotal(), "total"); err != nil {
		return err
	}
	if n := len(op.GetItems()); n < 1 || n > maxBasket {
		return fmt.Errorf("%d line items", n)
	}
	var sum int64
	for _, it := range op.GetItems() {
		if it.GetSku() == "" || it.GetName() == "" || it.GetQuantity() < 1 {
			return fmt.Errorf("line item %v", it)
		}
		if err := v.money(it.GetUnitPrice(), "unit price"); err != nil {
			return err
		}
		if it.GetUnitPrice().GetAmountMinor() < 1 {
			return fmt.Errorf("free line item %v", it)
		}
		sum += it.GetQuantity() * it.GetUnitPrice().GetAmountMinor()
	}
	total := op.GetTotal().GetAmountMinor()
	if op.GetCouponCode() == "" && total != sum {
		return fmt.Errorf("total %d, lines sum to %d without a coupon", total, sum)
	}
	if op.GetCouponCode() != "" && (total >= sum || total < sum*79/100) {
		return fmt.Errorf("total %d with coupon %s on lines summing to %d", total, op.GetCouponCode(), sum)
	}
	v.orders[id] = order{customer: op.GetCustomerId(), total: total, at: at}
	return nil
}

func (v *validator) refund(rf *eventsv1.OrderRefunded, at time.Time) error {
	if !reRefundID.MatchString(rf.GetRefundId()) || v.refundIDs[rf.GetRefundId()] {
		return fmt.Errorf("refund id %q malformed or reused", rf.GetRefundId())
	}
	v.refundIDs[rf.GetRefundId()] = true
	o, ok := v.orders[rf.GetOrderId()]
	if !ok || o.customer != rf.GetCustomerId() {
		return fmt.Errorf("refund of order %q not placed before by %s", rf.GetOrderId(), rf.GetCustomerId())
	}
	if v.refunded[rf.GetOrderId()] {
		return fmt.Errorf("order %q refunded twice", rf.GetOrderId())
	}
	v.refunded[rf.GetOrderId()] = true
	if err := v.money(rf.GetAmount(), "refund"); err != nil {
		return err
	}
	if a := rf.GetAmount().GetAmountMinor(); a < 1 || a > o.total {
		return fmt.Errorf("refund of %d on an order of %d", a, o.total)
	}
	if d := at.Sub(o.at); d < 2*24*time.Hour || d > 21*24*time.Hour {
		return fmt.Errorf("refund %v after the order", d)
	}
	if rf.GetReason() == "" {
		return fmt.Errorf("refund without reason")
	}
	v.refunds++
	return nil
}

func TestCountsFollowTheConfig(t *testing.T) {
	r := defaultRun(t)
	cfg := r.shop.Config()
	st := r.shop.Stats()

	counts := map[string]int{}
	ordersOf := map[string]int{}
	for _, ev := range r.events {
		counts[ev.GetType()]++
		if op := ev.GetOrderPlaced(); op != nil {
			ordersOf[op.GetCustomerId()]++
		}
	}
	t.Run("one profile per customer", func(t *testing.T) {
		if counts["customer.updated"] != cfg.Customers || st.Customers != cfg.Customers {
			t.Fatalf("%d profiles (stats %d), want %d", counts["customer.updated"], st.Customers, cfg.Customers)
		}
	})
	t.Run("stats match the stream", func(t *testing.T) {
		surveys := counts["survey.answered"]
		if st.Events != len(r.events) || st.Orders != counts["order.placed"] || st.Refunds != counts["order.refunded"] ||
			st.TicketsOpened != counts["ticket.opened"] || st.TicketsResolved != counts["ticket.resolved"] ||
			st.NPSAnswers+st.CSATAnswers != surveys {
			t.Fatalf("stats %+v do not match counts %v", st, counts)
		}
	})
	t.Run("orders per customer match the truth", func(t *testing.T) {
		repeat, dropped, n := 0, 0, 0
		for c := range r.shop.Customers() {
			n++
			if got := ordersOf[c.ID]; got != c.Orders {
				t.Fatalf("%s placed %d orders, truth says %d", c.ID, got, c.Orders)
			}
			if c.Orders >= 2 {
				repeat++
			}
			if c.Dropped {
				dropped++
			}
		}
		if n != cfg.Customers || repeat != st.RepeatCustomers || dropped != st.DroppedCustomers {
			t.Fatalf("truth: %d customers, %d repeat, %d dropped; stats %+v", n, repeat, dropped, st)
		}
	})
	t.Run("repeat rate is realistic", func(t *testing.T) {
		if rr := st.RepeatRate(); rr < 0.25 || rr > 0.5 {
			t.Fatalf("repeat rate %.3f, want a third or so", rr)
		}
		perCustomer := float64(st.Orders) / float64(st.Customers)
		if perCustomer < 1.5 || perCustomer > 3 {
			t.Fatalf("%.2f orders per customer", perCustomer)
		}
	})
	t.Run("follow-ups come at their configured rates", func(t *testing.T) {
		checks := []struct {
			what      string
			got, want float64
		}{
			{"NPS answers per order", float64(st.NPSAnswers) / float64(st.Orders), cfg.NPSRate},
			{"refunds per order", float64(st.Refunds) / float64(st.Orders), cfg.RefundRate * 1.1},
			{"CSAT answers per ticket", float64(st.CSATAnswers) / float64(st.TicketsOpened), cfg.CSATRate},
		}
		for _, c := range checks {
			if c.got < c.want*0.7 || c.got > c.want*1.3 {
				t.Errorf("%s = %.3f, want about %.3f", c.what, c.got, c.want)
			}
		}
	})
}

func TestChurnSignalIsPlanted(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 4000
	r := generate(t, cfg)
	shop := r.shop
	truth := map[string]CustomerTruth{}
	for c := range shop.Customers() {
		truth[c.ID] = c
	}

	// Exposure: customer-time while about to leave, and while active otherwise.
	end := shop.End()
	var leavingDays, otherDays float64
	for _, c := range truth {
		activeEnd := end
		if c.Dropped {
			activeEnd = c.DroppedAt
		}
		active := activeEnd.Sub(c.Acquired).Hours() / 24
		leaving := 0.0
		if !c.DroppedAt.IsZero() {
			leaving = minTime(c.DroppedAt, end).Sub(c.LeavingFrom).Hours() / 24
		}
		leavingDays += leaving
		otherDays += active - leaving
	}

	var leavingTickets, otherTickets, leavingPrice, otherPrice int
	type mean struct{ sum, n float64 }
	nps := map[bool]*mean{true: {}, false: {}}
	csat := map[bool]*mean{true: {}, false: {}}
	for _, ev := range r.events {
		at := ev.GetOccurredAt().AsTime()
		switch p := ev.GetPayload().(type) {
		case *eventsv1.Event_TicketOpened:
			c := truth[p.TicketOpened.GetCustomerId()]
			price := p.TicketOpened.GetCategory() == eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING
			if c.AboutToLeave(at) {
				leavingTickets++
				if price {
					leavingPrice++
				}
			} else {
				otherTickets++
				if price {
					otherPrice++
				}
			}
		case *eventsv1.Event_SurveyAnswered:
			c := truth[p.SurveyAnswered.GetCustomerId()]
			m := nps[c.Dropped]
			if p.SurveyAnswered.GetKind() == eventsv1.SurveyKind_SURVEY_KIND_CSAT {
				m = csat[c.Dropped]
			}
			m.sum += float64(p.SurveyAnswered.GetScore())
			m.n++
		}
	}

	t.Run("tickets come several times as often before dropping out", func(t *testing.T) {
		leavingRate := float64(leavingTickets) / leavingDays
		otherRate := float64(otherTickets) / otherDays
		t.Logf("tickets: %d at %.5f/day about to leave, %d at %.5f/day otherwise", leavingTickets, leavingRate, otherTickets, otherRate)
		if leavingTickets < 50 || leavingRate < 5*otherRate {
			t.Fatalf("%d tickets at %.5f/day while about to leave vs %.5f/day otherwise, want at least 5x",
				leavingTickets, leavingRate, otherRate)
		}
	})
	t.Run("price complaints dominate among those about to leave", func(t *testing.T) {
		leavingShare := float64(leavingPrice) / float64(leavingTickets)
		otherShare := float64(otherPrice) / float64(otherTickets)
		t.Logf("price complaints: %.2f about to leave, %.2f otherwise", leavingShare, otherShare)
		if leavingShare < 2*otherShare {
			t.Fatalf("price share %.2f about to leave vs %.2f otherwise, want at least 2x", leavingShare, otherShare)
		}
	})
	t.Run("churners give lower NPS", func(t *testing.T) {
		churned, stayed := nps[true].sum/nps[true].n, nps[false].sum/nps[false].n
		t.Logf("mean NPS: %.2f churners (n=%v), %.2f others (n=%v)", churned, nps[true].n, stayed, nps[false].n)
		if nps[true].n < 50 || churned > stayed-0.8 {
			t.Fatalf("mean NPS %.2f (n=%v) for churners vs %.2f for the others", churned, nps[true].n, stayed)
		}
	})
	t.Run("churners give lower CSAT", func(t *testing.T) {
		churned, stayed := csat[true].sum/csat[true].n, csat[false].sum/csat[false].n
		t.Logf("mean CSAT: %.2f churners (n=%v), %.2f others (n=%v)", churned, csat[true].n, stayed, csat[false].n)
		if csat[true].n < 30 || churned > stayed-0.8 {
			t.Fatalf("mean CSAT %.2f (n=%v) for churners vs %.2f for the others", churned, csat[true].n, stayed)
		}
	})
	t.Run("nobody orders after dropping out", func(t *testing.T) {
		for _, ev := range r.events {
			op := ev.GetOrderPlaced()
			if op == nil {
				continue
			}
			c := truth[op.GetCustomerId()]
			if !c.DroppedAt.IsZero() && ev.GetOccurredAt().AsTime().After(c.DroppedAt) {
				t.Fatalf("%s ordered at %v after dropping out at %v", c.ID, ev.GetOccurredAt().AsTime(), c.DroppedAt)
			}
		}
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func TestProfiles(t *testing.T) {
	r := defaultRun(t)
	byLocale := map[string][]*eventsv1.CustomerUpdated{}
	for _, ev := range r.events {
		if cu := ev.GetCustomerUpdated(); cu != nil {
			byLocale[cu.GetLocale()] = append(byLocale[cu.GetLocale()], cu)
		}
	}
	for loc := range localeZones {
		t.Run("has customers in "+loc, func(t *testing.T) {
			if len(byLocale[loc]) == 0 {
				t.Fatalf("no customer with locale %s", loc)
			}
		})
	}
	scripts := []struct {
		locales  []string
		persian  bool
		wantDesc string
	}{
		{[]string{"ar", "ar-SA"}, false, "Arabic script"},
		{[]string{"fa", "fa-IR"}, true, "Persian script"},
	}
	for _, sc := range scripts {
		t.Run(strings.Join(sc.locales, "+")+" names are in "+sc.wantDesc, func(t *testing.T) {
			persianLetters := 0
			for _, loc := range sc.locales {
				for _, cu := range byLocale[loc] {
					for _, n := range []string{cu.GetFirstName(), cu.GetLastName()} {
						for _, ch := range n {
							if !unicode.Is(unicode.Arabic, ch) {
								t.Fatalf("%s name %q has %q outside the Arabic script", loc, n, ch)
							}
							switch ch {
							case 'ی', 'ک', 'پ', 'گ', 'چ', 'ژ':
								persianLetters++
							case 'ي', 'ك', 'ة':
								if sc.persian {
									t.Fatalf("Persian name %q written with Arabic letter %q", n, ch)
								}
							}
						}
					}
				}
			}
			if sc.persian && persianLetters == 0 {
				t.Fatal("no Persian-specific letter in any Persian name")
			}
			if !sc.persian && persianLetters > 0 {
				t.Fatal("Persian letters in Arabic names")
			}
		})
	}
	t.Run("consent is mostly granted for email, less for SMS", func(t *testing.T) {
		var email, sms, phones, all float64
		for _, list := range byLocale {
			for _, cu := range list {
				all++
				if cu.GetConsent().GetEmailMarketing() == eventsv1.ConsentState_CONSENT_STATE_GRANTED {
					email++
				}
				if cu.GetPhone() != "" {
					phones++
				}
				if cu.GetConsent().GetSmsMarketing() == eventsv1.ConsentState_CONSENT_STATE_GRANTED {
					sms++
				}
			}
		}
		if email/all < 0.75 || sms/all > email/all/1.5 || phones/all < 0.6 {
			t.Fatalf("email consent %.2f, SMS consent %.2f, phones %.2f", email/all, sms/all, phones/all)
		}
	})
}

func TestKnobs(t *testing.T) {
	count := func(evs []*eventsv1.Event, pred func(*eventsv1.Event) bool) int {
		n := 0
		for _, ev := range evs {
			if pred(ev) {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		check  func(t *testing.T, r run)
	}{
		{
			name:   "no coupons at a zero coupon rate",
			mutate: func(c *Config) { c.CouponRate = 0 },
			check: func(t *testing.T, r run) {
				if n := count(r.events, func(ev *eventsv1.Event) bool { return ev.GetOrderPlaced().GetCouponCode() != "" }); n != 0 {
					t.Fatalf("%d coupons", n)
				}
			},
		},
		{
			name:   "no tickets and no CSAT at a zero ticket rate",
			mutate: func(c *Config) { c.TicketsPerYear = 0 },
			check: func(t *testing.T, r run) {
				n := count(r.events, func(ev *eventsv1.Event) bool {
					return ev.GetTicketOpened() != nil || ev.GetSurveyAnswered().GetKind() == eventsv1.SurveyKind_SURVEY_KIND_CSAT
				})
				if n != 0 {
					t.Fatalf("%d tickets or CSAT answers", n)
				}
			},
		},
		{
			name:   "zero-decimal currency keeps order values sensible",
			mutate: func(c *Config) { c.Currency, c.OrderValueMedian = "JPY", 6000 },
			check: func(t *testing.T, r run) {
				var totals []int64
				for _, ev := range r.events {
					if op := ev.GetOrderPlaced(); op != nil {
						totals = append(totals, op.GetTotal().GetAmountMinor())
					}
				}
				med := median(totals)
				if med < 3000 || med > 12000 {
					t.Fatalf("median order %d JPY, want about 6000", med)
				}
			},
		},
		{
			name:   "euro order values center on the median",
			mutate: func(*Config) {},
			check: func(t *testing.T, r run) {
				var totals []int64
				for _, ev := range r.events {
					if op := ev.GetOrderPlaced(); op != nil {
						totals = append(totals, op.GetTotal().GetAmountMinor())
					}
				}
				if med := median(totals); med < 3000 || med > 7000 {
					t.Fatalf("median order %d cents, want about 4500", med)
				}
			},
		},
		{
			name:   "uniform acquisition spreads sign-ups evenly",
			mutate: func(c *Config) { c.AcquisitionDecay = 0 },
			check: func(t *testing.T, r run) {
				if ratio := signupHalves(r); ratio < 0.95 || ratio > 1.05 {
					t.Fatalf("first/second half sign-ups %.2f, want 1", ratio)
				}
			},
		},
		{
			name:   "default acquisition front-loads sign-ups",
			mutate: func(*Config) {},
			check: func(t *testing.T, r run) {
				// exp(-x) density: (1-e^-0.5)/(e^-0.5-e^-1) = 1.65.
				if ratio := signupHalves(r); ratio < 1.5 || ratio > 1.8 {
					t.Fatalf("first/second half sign-ups %.2f, want 1.65", ratio)
				}
			},
		},
		{
			name:   "subscribers renew a year after sign-up",
			mutate: func(c *Config) { c.SubscriptionShare = 1 },
			check: func(t *testing.T, r run) {
				for _, ev := range r.events {
					cu := ev.GetCustomerUpdated()
					if cu == nil {
						continue
					}
					want := ev.GetOccurredAt().AsTime().AddDate(1, 0, 0).Format(time.DateOnly)
					if got := cu.GetTraits()["renewal_date"]; got != want {
						t.Fatalf("renewal_date %q for a sign-up on %v, want %q", got, ev.GetOccurredAt().AsTime(), want)
					}
				}
			},
		},
		{
			name:   "a short window keeps every event inside it",
			mutate: func(c *Config) { c.Days, c.Customers = 3, 300 },
			check: func(t *testing.T, r run) {
				cfg := r.shop.Config()
				v := newValidator(cfg.Currency, cfg.Start, r.shop.End())
				for _, ev := range r.events {
					if err := v.check(ev); err != nil {
						t.Fatalf("%s: %v", ev.GetId(), err)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Customers = 1000
			tt.mutate(&cfg)
			tt.check(t, generate(t, cfg))
		})
	}
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]int64(nil), v...)
	for i := 1; i < len(s); i++ { // insertion sort: a few thousand values
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

func signupHalves(r run) float64 {
	mid := r.shop.Config().Start.Add(r.shop.End().Sub(r.shop.Config().Start) / 2)
	var first, second float64
	for _, ev := range r.events {
		if ev.GetCustomerUpdated() == nil {
			continue
		}
		if ev.GetOccurredAt().AsTime().Before(mid) {
			first++
		} else {
			second++
		}
	}
	return first / second
}

func TestCustomerTruth(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 300
	shop, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("customers come in sign-up order", func(t *testing.T) {
		var prev time.Time
		n := 0
		for c := range shop.Customers() {
			n++
			if want := fmt.Sprintf("c-%06d", n); c.ID != want {
				t.Fatalf("customer %d has id %s, want %s", n, c.ID, want)
			}
			if c.Acquired.Before(prev) {
				t.Fatalf("%s signed up at %v, before the previous customer (%v)", c.ID, c.Acquired, prev)
			}
			prev = c.Acquired
			if c.Dropped != (!c.DroppedAt.IsZero() && c.DroppedAt.Before(shop.End())) {
				t.Fatalf("%s: Dropped=%v with DroppedAt %v", c.ID, c.Dropped, c.DroppedAt)
			}
			if !c.DroppedAt.IsZero() && (c.LeavingFrom.Before(c.Acquired) || c.LeavingFrom.After(c.DroppedAt)) {
				t.Fatalf("%s: leaving from %v, acquired %v, dropped %v", c.ID, c.LeavingFrom, c.Acquired, c.DroppedAt)
			}
		}
		if n != cfg.Customers {
			t.Fatalf("%d customers, want %d", n, cfg.Customers)
		}
	})
	lookups := []struct {
		id string
		ok bool
	}{
		{"c-000001", true},
		{"c-000300", true},
		{"c-000000", false},
		{"c-000301", false},
		{"c-1", false},
		{"o-000001", false},
		{"c-00000x", false},
	}
	for _, l := range lookups {
		t.Run("lookup "+l.id, func(t *testing.T) {
			c, ok := shop.Customer(l.id)
			if ok != l.ok || (ok && c.ID != l.id) {
				t.Fatalf("Customer(%q) = %q, %v; want ok=%v", l.id, c.ID, ok, l.ok)
			}
		})
	}
	t.Run("about to leave only in the lead window", func(t *testing.T) {
		for c := range shop.Customers() {
			if c.DroppedAt.IsZero() {
				if c.AboutToLeave(c.Acquired) {
					t.Fatalf("%s never leaves but is about to", c.ID)
				}
				continue
			}
			if !c.AboutToLeave(c.DroppedAt) || !c.AboutToLeave(c.LeavingFrom) ||
				c.AboutToLeave(c.DroppedAt.Add(time.Millisecond)) {
				t.Fatalf("%s: AboutToLeave wrong around [%v, %v]", c.ID, c.LeavingFrom, c.DroppedAt)
			}
			if c.ActiveAt(c.DroppedAt.Add(time.Millisecond)) {
				t.Fatalf("%s active after dropping out", c.ID)
			}
			return
		}
		t.Fatal("no customer drops out")
	})
}

func TestEventsStopsOnYieldError(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 50
	shop, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	n := 0
	err = shop.Events(func(*eventsv1.Event) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Fatalf("Events = %v after %d events, want the yield error after 10", err, n)
	}
}

func TestStatsWithoutStreaming(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 200
	fresh, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	streamed := generate(t, cfg)
	if got, want := fresh.Stats(), streamed.shop.Stats(); got != want {
		t.Fatalf("Stats before streaming %+v, after %+v", got, want)
	}
}
