package event

import (
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// Normalize sets the fields ingest owns and cleans up harmless client
// sloppiness before Validate runs:
//
//   - tenant_id comes from the caller's credential (the ingestor refuses
//     an event whose own tenant_id names another);
//   - received_at = now;
//   - id is generated with newID when empty (after trimming);
//   - type is set from the payload when empty; a client value that disagrees
//     is kept so that Validate can report it;
//   - surrounding white space is trimmed from every string field;
//   - currency codes are upper-cased;
//   - locale separators '_' become '-' ("en_GB" -> "en-GB");
//   - an unspecified ticket category becomes OTHER.
//
// It never fails: anything it cannot fix is left for Validate to report.
func Normalize(ev *eventsv1.Event, tenant string, now time.Time, newID func() string) {
	if ev == nil {
		return
	}
	ev.TenantId = tenant
	ev.ReceivedAt = timestamppb.New(now)
	ev.Id = strings.TrimSpace(ev.Id)
	if ev.Id == "" && newID != nil {
		ev.Id = newID()
	}
	ev.Source = strings.TrimSpace(ev.Source)
	ev.Type = strings.TrimSpace(ev.Type)
	if ev.Type == "" {
		ev.Type = TypeOf(ev)
	}

	switch pl := ev.GetPayload().(type) {
	case *eventsv1.Event_CustomerUpdated:
		normalizeCustomer(pl.CustomerUpdated)
	case *eventsv1.Event_OrderPlaced:
		o := pl.OrderPlaced
		if o == nil {
			return
		}
		trim(&o.CustomerId, &o.OrderId, &o.CouponCode)
		normalizeMoney(o.Total)
		for _, it := range o.Items {
			if it == nil {
				continue
			}
			trim(&it.Sku, &it.Name)
			normalizeMoney(it.UnitPrice)
		}
	case *eventsv1.Event_OrderRefunded:
		r := pl.OrderRefunded
		if r == nil {
			return
		}
		trim(&r.CustomerId, &r.OrderId, &r.RefundId, &r.Reason)
		normalizeMoney(r.Amount)
	case *eventsv1.Event_TicketOpened:
		t := pl.TicketOpened
		if t == nil {
			return
		}
		trim(&t.CustomerId, &t.TicketId, &t.Subject)
		if t.Category == eventsv1.TicketCategory_TICKET_CATEGORY_UNSPECIFIED {
			t.Category = eventsv1.TicketCategory_TICKET_CATEGORY_OTHER
		}
	case *eventsv1.Event_TicketResolved:
		t := pl.TicketResolved
		if t == nil {
			return
		}
		trim(&t.CustomerId, &t.TicketId, &t.Resolution)
	case *eventsv1.Event_SurveyAnswered:
		s := pl.SurveyAnswered
		if s == nil {
			return
		}
		trim(&s.CustomerId, &s.SurveyId, &s.Comment)
	}
}

func trim(fields ...*string) {
	for _, f := range fields {
		*f = strings.TrimSpace(*f)
	}
}

func normalizeMoney(m *eventsv1.Money) {
	if m == nil {
		return
	}
	m.Currency = strings.ToUpper(strings.TrimSpace(m.Currency))
}

func normalizeCustomer(c *eventsv1.CustomerUpdated) {
	if c == nil {
		return
	}
	trim(&c.CustomerId, &c.Email, &c.Phone, &c.FirstName, &c.LastName, &c.Locale, &c.TimeZone)
	c.Locale = strings.ReplaceAll(c.Locale, "_", "-")
	if len(c.Traits) == 0 {
		return
	}
	// Trimming keys can make two keys collide (" vip" and "vip"); walking
	// the keys in sorted order makes the survivor deterministic instead of
	// depending on map iteration order.
	keys := make([]string, 0, len(c.Traits))
	for k := range c.Traits {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(c.Traits))
	for _, k := range keys {
		tk := strings.TrimSpace(k)
		if _, dup := out[tk]; dup {
			continue
		}
		out[tk] = strings.TrimSpace(c.Traits[k])
	}
	c.Traits = out
}
