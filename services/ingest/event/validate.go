package event

import (
	"fmt"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/retainhq/retain/platform/currency"
	"github.com/retainhq/retain/platform/tenant"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// Limits enforced by Validate. They bound what one event can cost downstream
// (row sizes, header sizes, memory per batch) and catch obviously broken data.
const (
	// MaxIDLen bounds Event.id, which also travels as the Nats-Msg-Id header.
	MaxIDLen = 128
	// MaxRefLen bounds references to shop objects: customer, order, refund,
	// ticket and survey ids, SKUs, coupon codes, source.
	MaxRefLen = 256
	// MaxTextLen bounds free text: names, subjects, comments, reasons.
	MaxTextLen = 4096
	// MaxEmailLen is the longest address RFC 5321 allows on the wire.
	MaxEmailLen = 320
	// MaxPhoneLen is generous for any international format with an extension.
	MaxPhoneLen = 64
	// MaxLocaleLen and MaxTimeZoneLen bound tags and zone names.
	MaxLocaleLen   = 64
	MaxTimeZoneLen = 64
	// MaxTraits, MaxTraitKeyLen and MaxTraitValueLen bound CustomerUpdated.traits.
	MaxTraits        = 64
	MaxTraitKeyLen   = 64
	MaxTraitValueLen = 1024
	// MaxLineItems bounds OrderPlaced.items.
	MaxLineItems = 1000
	// MaxAmountMinor is a sanity limit on a single amount: 10^14 minor units is
	// a trillion in a two-decimal currency. Larger values are almost always a
	// unit mistake (cents sent as micros), and the limit keeps sums of many
	// amounts far from int64 overflow.
	MaxAmountMinor int64 = 100_000_000_000_000
	// MaxFutureSkew is how far occurred_at may be ahead of the server clock;
	// shops' clocks drift and time zones get mislabelled, a day covers both.
	MaxFutureSkew = 24 * time.Hour
)

// Validate returns every problem of ev, each naming its field by its protojson
// path (e.g. "order_placed.total.currency"). It expects an event that went
// through Normalize (ids trimmed, currency upper-cased, id and type set) but
// does not depend on it for safety. A nil or empty result means valid.
func Validate(ev *eventsv1.Event, now time.Time) []*ingestv1.FieldError {
	var p problems
	if ev == nil {
		p.add("", "event is required")
		return p
	}
	p.validateEnvelope(ev, now)
	switch pl := ev.GetPayload().(type) {
	case *eventsv1.Event_CustomerUpdated:
		p.validateCustomerUpdated("customer_updated", pl.CustomerUpdated)
	case *eventsv1.Event_OrderPlaced:
		p.validateOrderPlaced("order_placed", pl.OrderPlaced)
	case *eventsv1.Event_OrderRefunded:
		p.validateOrderRefunded("order_refunded", pl.OrderRefunded)
	case *eventsv1.Event_TicketOpened:
		p.validateTicketOpened("ticket_opened", pl.TicketOpened)
	case *eventsv1.Event_TicketResolved:
		p.validateTicketResolved("ticket_resolved", pl.TicketResolved)
	case *eventsv1.Event_SurveyAnswered:
		p.validateSurveyAnswered("survey_answered", pl.SurveyAnswered)
	default:
		p.add("payload", "one of %s is required", payloadFieldNames)
	}
	return p
}

type problems []*ingestv1.FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, &ingestv1.FieldError{Field: field, Description: fmt.Sprintf(format, args...)})
}

var unixEpoch = time.Unix(0, 0).UTC()

func (p *problems) validateEnvelope(ev *eventsv1.Event, now time.Time) {
	p.eventID(ev.GetId())
	if t := ev.GetTenantId(); t != "" && !tenant.Valid(t) {
		p.add("tenant_id", "%s is not a valid tenant id (lower-case letters, digits, '_' and '-', starting with a letter or digit, at most %d characters)", quote(t), tenant.MaxLen)
	}
	p.ref("source", ev.GetSource(), false)

	if typ := ev.GetType(); typ != "" {
		want := TypeOf(ev)
		switch {
		case !IsKnownType(typ):
			p.add("type", "unknown type %s; known types: %s", quote(typ), knownTypesList())
		case want != "" && typ != want:
			p.add("type", "%s does not match the payload, which is %s; omit type or send %s", quote(typ), want, quote(want))
		}
	}

	ts := ev.GetOccurredAt()
	if ts == nil {
		p.add("occurred_at", "is required: when it happened at the shop, e.g. \"2024-05-01T12:00:00Z\"")
		return
	}
	if err := ts.CheckValid(); err != nil {
		p.add("occurred_at", "is not a valid timestamp: %v", err)
		return
	}
	at := ts.AsTime()
	if at.Before(unixEpoch) {
		p.add("occurred_at", "%s is before 1970-01-01T00:00:00Z", at.Format(time.RFC3339Nano))
	}
	if ahead := at.Sub(now); ahead > MaxFutureSkew {
		p.add("occurred_at", "%s is %s in the future (server time %s); at most %s ahead is accepted",
			at.Format(time.RFC3339Nano), ahead.Round(time.Second), now.UTC().Format(time.RFC3339), MaxFutureSkew)
	}
}

func (p *problems) eventID(id string) {
	if id == "" {
		p.add("id", "is required (ingest generates one when the client sends none)")
		return
	}
	if len(id) > MaxIDLen {
		p.add("id", "is %d bytes; at most %d are allowed", len(id), MaxIDLen)
		return
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			p.add("id", "must be printable ASCII without spaces; byte %d is %s", i, describeByte(id, i))
			return
		}
	}
}

func describeByte(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError || !strconv.IsPrint(r) || r == ' ' {
		return fmt.Sprintf("0x%02x", s[i])
	}
	return strconv.QuoteRune(r)
}

// ref checks a reference to a shop object (customer id, order id, ...).
func (p *problems) ref(field, v string, required bool) {
	if v == "" {
		if required {
			p.add(field, "is required")
		}
		return
	}
	if !p.storable(field, v) {
		return
	}
	if len(v) > MaxRefLen {
		p.add(field, "is %d bytes; at most %d are allowed", len(v), MaxRefLen)
		return
	}
	if strings.TrimSpace(v) == "" {
		p.add(field, "must not be blank")
		return
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			p.add(field, "must not contain control characters")
			return
		}
	}
}

// text checks optional free text.
func (p *problems) text(field, v string, max int) {
	if v == "" || !p.storable(field, v) {
		return
	}
	if len(v) > max {
		p.add(field, "is %d bytes; at most %d are allowed", len(v), max)
	}
}

// storable checks a string every consumer can store: valid UTF-8 without
// NUL, which Postgres's text cannot hold, so an event carrying one would
// be accepted here and then fail every consumer that stores it.
func (p *problems) storable(field, v string) bool {
	if !utf8.ValidString(v) {
		p.add(field, "must be valid UTF-8")
		return false
	}
	if i := strings.IndexByte(v, 0); i >= 0 {
		p.add(field, "holds a NUL byte (\\x00) at byte %d, which text must not contain", i)
		return false
	}
	return true
}

func (p *problems) money(field string, m *eventsv1.Money, mustBePositive bool) {
	if m == nil {
		p.add(field, "is required: {\"amount_minor\": ..., \"currency\": \"EUR\"}")
		return
	}
	switch c := m.GetCurrency(); {
	case c == "":
		p.add(field+".currency", "is required: an ISO 4217 code such as \"EUR\"")
	case currency.Check(c) != nil:
		p.add(field+".currency", "%s", currency.Check(c))
	}
	switch a := m.GetAmountMinor(); {
	case a < 0:
		p.add(field+".amount_minor", "must not be negative, got %d", a)
	case a == 0 && mustBePositive:
		p.add(field+".amount_minor", "must be greater than 0")
	case a > MaxAmountMinor:
		p.add(field+".amount_minor", "%d exceeds the sanity limit of %d minor units; is the amount in minor units (e.g. cents)?", a, MaxAmountMinor)
	}
}

func (p *problems) validateCustomerUpdated(path string, c *eventsv1.CustomerUpdated) {
	p.ref(path+".customer_id", c.GetCustomerId(), true)
	p.email(path+".email", c.GetEmail())
	p.phone(path+".phone", c.GetPhone())
	p.text(path+".first_name", c.GetFirstName(), MaxTextLen)
	p.text(path+".last_name", c.GetLastName(), MaxTextLen)
	p.locale(path+".locale", c.GetLocale())
	p.timeZone(path+".time_zone", c.GetTimeZone())
	if cs := c.GetConsent(); cs != nil {
		p.consent(path+".consent.email_marketing", cs.GetEmailMarketing())
		p.consent(path+".consent.sms_marketing", cs.GetSmsMarketing())
	}
	p.traits(path+".traits", c.GetTraits())
}

func (p *problems) email(field, v string) {
	if v == "" || !p.storable(field, v) {
		return
	}
	if len(v) > MaxEmailLen {
		p.add(field, "is %d bytes; at most %d are allowed", len(v), MaxEmailLen)
		return
	}
	addr, err := mail.ParseAddress(v)
	if err != nil {
		p.add(field, "%s is not an email address such as \"ana@example.com\": %v", quote(v), err)
		return
	}
	// ParseAddress also accepts `Ana <ana@example.com>`; only the bare address
	// is something we can send to and deduplicate on.
	if addr.Name != "" || addr.Address != v {
		p.add(field, "%s must be a bare address such as %s, without a display name or brackets", quote(v), quote(addr.Address))
	}
}

func (p *problems) phone(field, v string) {
	if v == "" || !p.storable(field, v) {
		return
	}
	if len(v) > MaxPhoneLen {
		p.add(field, "is %d bytes; at most %d are allowed", len(v), MaxPhoneLen)
		return
	}
	digits := 0
	for i, r := range v {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '+' && i == 0, r == ' ', r == '-', r == '(', r == ')', r == '.':
		default:
			p.add(field, "%s is not a phone number such as \"+44 20 7946 0958\" (digits, a leading '+', spaces and - ( ) . only)", quote(v))
			return
		}
	}
	if digits < 3 {
		p.add(field, "%s is not a phone number such as \"+44 20 7946 0958\": too few digits", quote(v))
	}
}

func (p *problems) locale(field, v string) {
	if v == "" || !p.storable(field, v) {
		return
	}
	if len(v) > MaxLocaleLen {
		p.add(field, "is %d bytes; at most %d are allowed", len(v), MaxLocaleLen)
		return
	}
	// language.Parse also accepts '_' as a separator; consumers expect the
	// BCP 47 form, and Normalize rewrites '_' to '-', so reject it here.
	if strings.Contains(v, "_") {
		p.add(field, "%s is not a BCP 47 language tag: use '-' as the separator, e.g. %s", quote(v), quote(strings.ReplaceAll(v, "_", "-")))
		return
	}
	if _, err := language.Parse(v); err != nil {
		p.add(field, "%s is not a BCP 47 language tag such as \"en-GB\", \"fa-IR\" or \"ar\": %v", quote(v), err)
	}
}

// zoneCache remembers zone names time.LoadLocation accepted: loading reads
// and parses a tzdata file on every call, and a batch of customer updates
// names the same few zones over and over. Only successes are cached, so its
// size is bounded by the IANA database (~600 names) whatever clients send.
var zoneCache sync.Map // string -> struct{}

func (p *problems) timeZone(field, v string) {
	if v == "" || !p.storable(field, v) {
		return
	}
	if len(v) > MaxTimeZoneLen {
		p.add(field, "is %d bytes; at most %d are allowed", len(v), MaxTimeZoneLen)
		return
	}
	if err := checkTimeZone(v); err != nil {
		p.add(field, "%s is not an IANA time zone name such as \"Europe/London\" or \"Asia/Tehran\": %v", quote(v), err)
	}
}

func checkTimeZone(name string) error {
	if _, ok := zoneCache.Load(name); ok {
		return nil
	}
	// "Local" would mean the server's zone, which says nothing about the
	// customer.
	if name == "Local" {
		return fmt.Errorf("\"Local\" names the server's zone")
	}
	if _, err := time.LoadLocation(name); err != nil {
		return err
	}
	zoneCache.Store(name, struct{}{})
	return nil
}

func (p *problems) consent(field string, v eventsv1.ConsentState) {
	if _, ok := eventsv1.ConsentState_name[int32(v)]; !ok {
		p.add(field, "unknown value %d; valid: CONSENT_STATE_UNSPECIFIED (unchanged), CONSENT_STATE_GRANTED, CONSENT_STATE_REVOKED", int32(v))
	}
}

// TraitRenewalDate is the well-known trait holding a subscription's renewal
// date as YYYY-MM-DD.
const TraitRenewalDate = "renewal_date"

func (p *problems) traits(field string, traits map[string]string) {
	if len(traits) == 0 {
		return
	}
	if len(traits) > MaxTraits {
		p.add(field, "has %d entries; at most %d are allowed", len(traits), MaxTraits)
	}
	keys := make([]string, 0, len(traits))
	for k := range traits {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic error order
	for _, k := range keys {
		v := traits[k]
		kf := field + "[" + quote(k) + "]"
		switch {
		case k == "" || strings.TrimSpace(k) == "":
			p.add(kf, "trait keys must not be blank")
			continue
		case !utf8.ValidString(k):
			p.add(kf, "trait key must be valid UTF-8")
			continue
		case strings.IndexByte(k, 0) >= 0:
			p.add(kf, "the trait key holds a NUL byte (\\x00), which text must not contain")
			continue
		case len(k) > MaxTraitKeyLen:
			p.add(kf, "trait key is %d bytes; at most %d are allowed", len(k), MaxTraitKeyLen)
			continue
		}
		if !p.storable(kf, v) {
			continue
		}
		if len(v) > MaxTraitValueLen {
			p.add(kf, "is %d bytes; at most %d are allowed", len(v), MaxTraitValueLen)
			continue
		}
		if k == TraitRenewalDate && v != "" {
			if _, err := time.Parse(time.DateOnly, v); err != nil {
				p.add(kf, "%s is not a date in the form YYYY-MM-DD", quote(v))
			}
		}
	}
}

func (p *problems) validateOrderPlaced(path string, o *eventsv1.OrderPlaced) {
	p.ref(path+".customer_id", o.GetCustomerId(), true)
	p.ref(path+".order_id", o.GetOrderId(), true)
	p.money(path+".total", o.GetTotal(), false)
	p.ref(path+".coupon_code", o.GetCouponCode(), false)
	items := o.GetItems()
	if len(items) > MaxLineItems {
		p.add(path+".items", "has %d line items; at most %d are allowed", len(items), MaxLineItems)
		return
	}
	for i, it := range items {
		ip := fmt.Sprintf("%s.items[%d]", path, i)
		if it == nil {
			p.add(ip, "must not be null")
			continue
		}
		p.ref(ip+".sku", it.GetSku(), false)
		p.text(ip+".name", it.GetName(), MaxTextLen)
		if q := it.GetQuantity(); q <= 0 {
			p.add(ip+".quantity", "must be greater than 0, got %d", q)
		}
		if it.GetUnitPrice() != nil {
			p.money(ip+".unit_price", it.GetUnitPrice(), false)
		}
	}
}

func (p *problems) validateOrderRefunded(path string, r *eventsv1.OrderRefunded) {
	p.ref(path+".customer_id", r.GetCustomerId(), true)
	p.ref(path+".order_id", r.GetOrderId(), true)
	p.ref(path+".refund_id", r.GetRefundId(), true)
	p.money(path+".amount", r.GetAmount(), true)
	p.text(path+".reason", r.GetReason(), MaxTextLen)
}

func (p *problems) validateTicketOpened(path string, t *eventsv1.TicketOpened) {
	p.ref(path+".customer_id", t.GetCustomerId(), true)
	p.ref(path+".ticket_id", t.GetTicketId(), true)
	// UNSPECIFIED is accepted: Normalize turns it into OTHER, and consumers
	// treat it as OTHER when an event skipped Normalize.
	if _, ok := eventsv1.TicketCategory_name[int32(t.GetCategory())]; !ok {
		p.add(path+".category", "unknown value %d; valid: %s", int32(t.GetCategory()), ticketCategoryNames())
	}
	p.text(path+".subject", t.GetSubject(), MaxTextLen)
}

func ticketCategoryNames() string {
	return "TICKET_CATEGORY_BILLING_PRICING, TICKET_CATEGORY_PRODUCT, TICKET_CATEGORY_DELIVERY, TICKET_CATEGORY_ACCOUNT, TICKET_CATEGORY_OTHER"
}

func (p *problems) validateTicketResolved(path string, t *eventsv1.TicketResolved) {
	p.ref(path+".customer_id", t.GetCustomerId(), true)
	p.ref(path+".ticket_id", t.GetTicketId(), true)
	p.text(path+".resolution", t.GetResolution(), MaxTextLen)
}

// ScoreRange returns the inclusive score range of a survey kind and whether
// the kind is a known, specified one.
func ScoreRange(kind eventsv1.SurveyKind) (lo, hi int32, ok bool) {
	switch kind {
	case eventsv1.SurveyKind_SURVEY_KIND_NPS:
		return 0, 10, true
	case eventsv1.SurveyKind_SURVEY_KIND_CSAT:
		return 1, 5, true
	}
	return 0, 0, false
}

func (p *problems) validateSurveyAnswered(path string, s *eventsv1.SurveyAnswered) {
	p.ref(path+".customer_id", s.GetCustomerId(), true)
	p.ref(path+".survey_id", s.GetSurveyId(), false)
	p.text(path+".comment", s.GetComment(), MaxTextLen)
	lo, hi, ok := ScoreRange(s.GetKind())
	if !ok {
		what := "is required"
		if s.GetKind() != eventsv1.SurveyKind_SURVEY_KIND_UNSPECIFIED {
			what = fmt.Sprintf("unknown value %d", int32(s.GetKind()))
		}
		p.add(path+".kind", "%s; valid: SURVEY_KIND_NPS (score 0-10), SURVEY_KIND_CSAT (score 1-5)", what)
		return
	}
	if sc := s.GetScore(); sc < lo || sc > hi {
		p.add(path+".score", "%d is out of range for %s: must be %d-%d", sc, surveyKindLabel(s.GetKind()), lo, hi)
	}
}

func surveyKindLabel(k eventsv1.SurveyKind) string {
	switch k {
	case eventsv1.SurveyKind_SURVEY_KIND_NPS:
		return "NPS"
	case eventsv1.SurveyKind_SURVEY_KIND_CSAT:
		return "CSAT"
	}
	return k.String()
}

// quote renders a client value for an error message, cut short so one huge
// value cannot blow up a response.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
