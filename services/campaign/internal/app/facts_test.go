package app

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// FuzzFactsAdd feeds the facts consumer's decoder any subject and bytes: it
// never panics, an accepted event of a type the campaigns use adds exactly
// one goal (every such event can reach a goal) for a named customer, and a
// trigger only when fresh.
func FuzzFactsAdd(f *testing.F) {
	at := timestamppb.New(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	for _, s := range []struct {
		subject string
		ev      *eventsv1.Event
	}{
		{"retain.events.shop.order.placed", &eventsv1.Event{Id: "o1", OccurredAt: at, Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
			CustomerId: "c", OrderId: "o1", Total: &eventsv1.Money{AmountMinor: 4200, Currency: "EUR"}, CouponCode: "loyal-abcde"}}}},
		{"retain.events.shop.survey.answered", &eventsv1.Event{Id: "s1", OccurredAt: at, Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
			CustomerId: "c", SurveyId: "nps", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: 3}}}},
		{"retain.events.shop.ticket.resolved", &eventsv1.Event{Id: "t1", OccurredAt: at, Payload: &eventsv1.Event_TicketResolved{TicketResolved: &eventsv1.TicketResolved{
			CustomerId: "c", TicketId: "t1"}}}},
		{"retain.events.shop.customer.updated", &eventsv1.Event{Id: "u1", OccurredAt: at, Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{
			CustomerId: "c", Locale: "fa-IR", TimeZone: "Asia/Tehran", Traits: map[string]string{"renewal_date": "2026-04-01"}}}}},
		{"retain.events.shop.order.refunded", &eventsv1.Event{Id: "r1", OccurredAt: at}},
		{"retain.events..order.placed", &eventsv1.Event{}},
		{"retain.events.shop.order.placed", &eventsv1.Event{Id: "o2", TenantId: "other", OccurredAt: at}},
	} {
		f.Add(s.subject, testenv.Marshal(f, s.ev), true)
	}
	f.Fuzz(func(t *testing.T, subject string, data []byte, fresh bool) {
		var b factsBatch
		if err := b.add(subject, "msg-1", data, func(time.Time) bool { return fresh }); err != nil {
			if err.Error() == "" {
				t.Fatal("an empty reason to reject")
			}
			return
		}
		tenant, _, _ := strings.Cut(strings.TrimPrefix(subject, "retain.events."), ".")
		var ev eventsv1.Event
		if err := proto.Unmarshal(data, &ev); err != nil || (ev.GetTenantId() != "" && ev.GetTenantId() != tenant) {
			t.Fatalf("accepted an event of tenant %q on %s (%v)", ev.GetTenantId(), subject, err)
		}
		var tenants []string
		for _, o := range b.orders {
			tenants = append(tenants, o.Tenant)
		}
		for _, p := range b.profiles {
			tenants = append(tenants, p.Tenant)
		}
		for _, tr := range b.trigs {
			tenants = append(tenants, tr.tenant)
		}
		for _, r := range b.redeems {
			tenants = append(tenants, r.Tenant)
		}
		for _, g := range b.goals {
			tenants = append(tenants, g.Tenant)
		}
		for _, got := range tenants {
			if got != tenant {
				t.Fatalf("a fact of tenant %q from %s", got, subject)
			}
		}
		switch len(b.goals) {
		case 0:
			if len(tenants) != 0 {
				t.Fatalf("facts without a goal event: %+v", b)
			}
		case 1:
			if b.goals[0].CustomerID == "" {
				t.Fatalf("a goal without a customer: %+v", b.goals[0])
			}
			want := 0
			if fresh {
				want = 1
			}
			if len(b.trigs) != want {
				t.Fatalf("fresh %v: %d triggers, want %d", fresh, len(b.trigs), want)
			}
		default:
			t.Fatalf("one event made %d goals", len(b.goals))
		}
	})
}
