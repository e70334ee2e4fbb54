package simulate

import (
	"fmt"
	"io"
	"math/bits"
	"strconv"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const source = "simulate"

// Natural ids are zero-padded so they sort as text in small shops; larger
// numbers simply grow longer.
const (
	customerDigits = 6
	orderDigits    = 7
	refundDigits   = 6
	ticketDigits   = 6
	surveyDigits   = 7
)

// appendPadded writes a non-negative n in decimal, zero-padded to width. It
// and appendUint are hand-rolled because numbers are most of an event's bytes.
func appendPadded(b []byte, n int64, width int) []byte {
	var tmp [20]byte
	d := formatUint(&tmp, uint64(n))
	for i := len(d); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

func appendUint(b []byte, n uint64) []byte {
	var tmp [20]byte
	return append(b, formatUint(&tmp, n)...)
}

const twoDigits = "0001020304050607080910111213141516171819" +
	"2021222324252627282930313233343536373839" +
	"4041424344454647484950515253545556575859" +
	"6061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

func formatUint(tmp *[20]byte, n uint64) []byte {
	i := len(tmp)
	for n >= 100 {
		q := n / 100
		r := (n - q*100) * 2
		i -= 2
		tmp[i], tmp[i+1] = twoDigits[r], twoDigits[r+1]
		n = q
	}
	if n >= 10 {
		i -= 2
		tmp[i], tmp[i+1] = twoDigits[n*2], twoDigits[n*2+1]
	} else {
		i--
		tmp[i] = byte('0' + n)
	}
	return tmp[i:]
}

func paddedID(prefix string, n int64, width int) string {
	var buf [32]byte
	return string(appendPadded(append(buf[:0], prefix...), n, width))
}

func customerID(i int) string { return paddedID("c-", int64(i)+1, customerDigits) }

func (s *Shop) eventID(n uint64) string {
	var buf [64]byte
	return string(strconv.AppendUint(append(buf[:0], s.idPrefix...), n, 10))
}

// email builds first.last.N@example.com from the ASCII form of the names; the
// customer number keeps it unique and the example domains (RFC 2606) keep
// anything from ever being mailed to a real person.
func appendEmail(b []byte, ev *simEvent) []byte {
	b = append(b, ev.first.ascii...)
	b = append(b, '.')
	b = append(b, ev.last.ascii...)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(ev.cust)+1, 10)
	b = append(b, '@')
	return append(b, ev.domain...)
}

func (s *Shop) money(amount int64) *eventsv1.Money {
	return &eventsv1.Money{AmountMinor: amount, Currency: s.cfg.Currency}
}

// toProto builds the protobuf form of ev in fresh memory.
func (s *Shop) toProto(ev *simEvent) *eventsv1.Event {
	out := &eventsv1.Event{
		Id:         s.eventID(ev.n),
		OccurredAt: timestamppb.New(s.at(float64(ev.at))),
		Source:     source,
		Type:       kindType[ev.kind],
	}
	cust := customerID(int(ev.cust))
	switch ev.kind {
	case kindProfile:
		cu := &eventsv1.CustomerUpdated{
			CustomerId: cust,
			Email:      string(appendEmail(nil, ev)),
			Phone:      string(ev.phone),
			FirstName:  ev.first.native,
			LastName:   ev.last.native,
			Locale:     ev.locale.tag,
			TimeZone:   ev.zone,
			Consent:    &eventsv1.Consent{EmailMarketing: ev.emailConsent, SmsMarketing: ev.smsConsent},
		}
		if len(ev.renewal) > 0 {
			cu.Traits = map[string]string{"renewal_date": string(ev.renewal)}
		}
		out.Payload = &eventsv1.Event_CustomerUpdated{CustomerUpdated: cu}
	case kindOrder:
		items := make([]*eventsv1.LineItem, len(ev.items))
		for i, it := range ev.items {
			items[i] = &eventsv1.LineItem{Sku: it.product.sku, Name: it.product.name, Quantity: it.qty, UnitPrice: s.money(it.product.price)}
		}
		out.Payload = &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
			CustomerId: cust,
			OrderId:    paddedID("o-", ev.order, orderDigits),
			Total:      s.money(ev.total),
			Items:      items,
			CouponCode: ev.coupon,
		}}
	case kindRefund:
		out.Payload = &eventsv1.Event_OrderRefunded{OrderRefunded: &eventsv1.OrderRefunded{
			CustomerId: cust,
			OrderId:    paddedID("o-", ev.order, orderDigits),
			RefundId:   paddedID("r-", ev.refund, refundDigits),
			Amount:     s.money(ev.amount),
			Reason:     ev.text,
		}}
	case kindTicketOpened:
		out.Payload = &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{
			CustomerId: cust,
			TicketId:   paddedID("t-", ev.ticket, ticketDigits),
			Category:   ev.category,
			Subject:    ev.text,
		}}
	case kindTicketResolved:
		out.Payload = &eventsv1.Event_TicketResolved{TicketResolved: &eventsv1.TicketResolved{
			CustomerId: cust,
			TicketId:   paddedID("t-", ev.ticket, ticketDigits),
			Resolution: ev.text,
		}}
	case kindNPS, kindCSAT:
		k := eventsv1.SurveyKind_SURVEY_KIND_NPS
		if ev.kind == kindCSAT {
			k = eventsv1.SurveyKind_SURVEY_KIND_CSAT
		}
		out.Payload = &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
			CustomerId: cust,
			SurveyId:   paddedID("s-", ev.survey, surveyDigits),
			Kind:       k,
			Score:      ev.score,
			Comment:    ev.text,
		}}
	}
	return out
}

// WriteNDJSON writes every event of the shop to w as protojson (proto field
// names), one event per line, in occurred_at order, and returns how many it
// wrote.
//
// The lines are what protojson.MarshalOptions{UseProtoNames: true} produces,
// up to insignificant whitespace (protojson randomly adds spaces to stop
// callers from depending on its bytes; these lines have none, so they are
// byte-stable). They are written by a specialised encoder because protojson's
// reflection costs ~8 µs per event, a sixth of the generation budget; the tests
// check every line against protojson.
func WriteNDJSON(w io.Writer, s *Shop) (n int, err error) {
	const flushAt = 256 << 10
	g := s.newGenerator()
	buf := make([]byte, 0, flushAt+4096)
	for g.next() {
		buf = s.appendJSON(buf, &g.ev)
		buf = append(buf, '\n')
		n++
		if len(buf) >= flushAt {
			if _, err := w.Write(buf); err != nil {
				return n - countLines(buf), fmt.Errorf("write simulated events: %w", err)
			}
			buf = buf[:0]
		}
	}
	if _, err := w.Write(buf); err != nil {
		return n - countLines(buf), fmt.Errorf("write simulated events: %w", err)
	}
	s.keepStats(&g.stats)
	return n, nil
}

// countLines counts the lines of a buffer that failed to be written, so n
// reports only what went out (a failed Write may have taken part of it; those
// are not counted either).
func countLines(b []byte) int {
	c := 0
	for _, x := range b {
		if x == '\n' {
			c++
		}
	}
	return c
}

// appendJSON writes ev in the canonical protojson form: fields in number order,
// default values left out, int64 as strings, enums by name, timestamps in
// RFC 3339 UTC.
func (s *Shop) appendJSON(b []byte, ev *simEvent) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, s.idPrefix...)
	b = appendUint(b, ev.n)
	b = append(b, `","occurred_at":"`...)
	b = appendTimestamp(b, s.startMs+ev.at)
	b = append(b, `","source":"`+source+`","type":"`...)
	b = append(b, kindType[ev.kind]...)
	b = append(b, `",`...)
	switch ev.kind {
	case kindProfile:
		b = append(b, `"customer_updated":{`...)
		b = s.appendCustomer(b, ev)
		b = append(b, `,"email":"`...)
		b = appendEmail(b, ev) // ASCII names and fixed domains: nothing to escape
		b = append(b, '"')
		if len(ev.phone) > 0 {
			b = append(b, `,"phone":"`...)
			b = append(b, ev.phone...)
			b = append(b, '"')
		}
		b = append(b, `,"first_name":`...)
		b = appendString(b, ev.first.native)
		b = append(b, `,"last_name":`...)
		b = appendString(b, ev.last.native)
		b = append(b, `,"locale":"`...)
		b = append(b, ev.locale.tag...)
		b = append(b, `","time_zone":"`...)
		b = append(b, ev.zone...)
		b = append(b, `","consent":{`...)
		sep := ""
		if ev.emailConsent != 0 {
			b = append(b, `"email_marketing":"`...)
			b = append(b, ev.emailConsent.String()...)
			b = append(b, '"')
			sep = ","
		}
		if ev.smsConsent != 0 {
			b = append(b, sep...)
			b = append(b, `"sms_marketing":"`...)
			b = append(b, ev.smsConsent.String()...)
			b = append(b, '"')
		}
		b = append(b, '}')
		if len(ev.renewal) > 0 {
			b = append(b, `,"traits":{"renewal_date":"`...)
			b = append(b, ev.renewal...)
			b = append(b, `"}`...)
		}
	case kindOrder:
		b = append(b, `"order_placed":{`...)
		b = s.appendCustomer(b, ev)
		b = appendIDField(b, `,"order_id":"o-`, ev.order, orderDigits)
		b = append(b, `,"total":`...)
		b = s.appendMoney(b, ev.total)
		if len(ev.items) > 0 {
			b = append(b, `,"items":[`...)
			for i, it := range ev.items {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"sku":`...)
				b = appendString(b, it.product.sku)
				b = append(b, `,"name":`...)
				b = appendString(b, it.product.name)
				if it.qty != 0 {
					b = append(b, `,"quantity":"`...)
					b = appendUint(b, uint64(it.qty)) // quantities are positive
					b = append(b, '"')
				}
				b = append(b, `,"unit_price":`...)
				b = s.appendMoney(b, it.product.price)
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		if ev.coupon != "" {
			b = append(b, `,"coupon_code":`...)
			b = appendString(b, ev.coupon)
		}
	case kindRefund:
		b = append(b, `"order_refunded":{`...)
		b = s.appendCustomer(b, ev)
		b = appendIDField(b, `,"order_id":"o-`, ev.order, orderDigits)
		b = appendIDField(b, `,"refund_id":"r-`, ev.refund, refundDigits)
		b = append(b, `,"amount":`...)
		b = s.appendMoney(b, ev.amount)
		b = appendTextField(b, `,"reason":`, ev.text)
	case kindTicketOpened:
		b = append(b, `"ticket_opened":{`...)
		b = s.appendCustomer(b, ev)
		b = appendIDField(b, `,"ticket_id":"t-`, ev.ticket, ticketDigits)
		if ev.category != 0 {
			b = append(b, `,"category":"`...)
			b = append(b, ev.category.String()...)
			b = append(b, '"')
		}
		b = appendTextField(b, `,"subject":`, ev.text)
	case kindTicketResolved:
		b = append(b, `"ticket_resolved":{`...)
		b = s.appendCustomer(b, ev)
		b = appendIDField(b, `,"ticket_id":"t-`, ev.ticket, ticketDigits)
		b = appendTextField(b, `,"resolution":`, ev.text)
	case kindNPS, kindCSAT:
		b = append(b, `"survey_answered":{`...)
		b = s.appendCustomer(b, ev)
		b = appendIDField(b, `,"survey_id":"s-`, ev.survey, surveyDigits)
		if ev.kind == kindNPS {
			b = append(b, `,"kind":"SURVEY_KIND_NPS"`...)
		} else {
			b = append(b, `,"kind":"SURVEY_KIND_CSAT"`...)
		}
		if ev.score != 0 {
			b = append(b, `,"score":`...)
			b = strconv.AppendInt(b, int64(ev.score), 10)
		}
		b = appendTextField(b, `,"comment":`, ev.text)
	}
	return append(b, "}}"...)
}

func (s *Shop) appendCustomer(b []byte, ev *simEvent) []byte {
	b = append(b, `"customer_id":"c-`...)
	b = appendPadded(b, int64(ev.cust)+1, customerDigits)
	return append(b, '"')
}

func appendIDField(b []byte, open string, n int64, width int) []byte {
	b = append(b, open...)
	b = appendPadded(b, n, width)
	return append(b, '"')
}

func appendTextField(b []byte, open, text string) []byte {
	if text == "" {
		return b
	}
	b = append(b, open...)
	return appendString(b, text)
}

func (s *Shop) appendMoney(b []byte, amount int64) []byte {
	b = append(b, '{')
	if amount != 0 {
		b = append(b, `"amount_minor":"`...)
		b = strconv.AppendInt(b, amount, 10)
		b = append(b, `",`...)
	}
	b = append(b, `"currency":"`...)
	b = append(b, s.cfg.Currency...)
	return append(b, `"}`...)
}

// appendString quotes s the way protojson does: only '"', '\\' and control
// characters are escaped, everything else (Arabic, Persian, accents) is
// written as UTF-8. Invalid UTF-8 cannot occur: every text is a constant.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\')
		switch c {
		case '"', '\\':
			b = append(b, c)
		case '\b':
			b = append(b, 'b')
		case '\f':
			b = append(b, 'f')
		case '\n':
			b = append(b, 'n')
		case '\r':
			b = append(b, 'r')
		case '\t':
			b = append(b, 't')
		default:
			b = append(b, 'u')
			b = append(b, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
			b = strconv.AppendUint(b, uint64(c), 16)
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTimestamp writes Unix milliseconds as protojson writes a Timestamp:
// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits (here 0 or 3).
func appendTimestamp(b []byte, unixMs int64) []byte {
	secs := floorDiv(unixMs, 1000)
	ms := unixMs - secs*1000
	days := floorDiv(secs, 86400)
	sod := secs - days*86400
	y, m, d := civil(days)
	b = appendPadded(b, y, 4)
	b = append(b, '-')
	b = appendPadded(b, m, 2)
	b = append(b, '-')
	b = appendPadded(b, d, 2)
	b = append(b, 'T')
	b = appendPadded(b, sod/3600, 2)
	b = append(b, ':')
	b = appendPadded(b, sod/60%60, 2)
	b = append(b, ':')
	b = appendPadded(b, sod%60, 2)
	if ms != 0 {
		b = append(b, '.')
		b = appendPadded(b, ms, 3)
	}
	return append(b, 'Z')
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's days_from_civil inverse).
func civil(days int64) (y, m, d int64) {
	z := days + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}
