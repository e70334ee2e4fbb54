package consumer

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/metrics/internal/retention"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// FuzzDecodeInto feeds the metrics consumer's decoder any subject and
// bytes: it never panics, and what it accepts is at most one fact of the
// subject's tenant that the projections can apply (ids present, amounts
// and scores in range).
func FuzzDecodeInto(f *testing.F) {
	at := timestamppb.New(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	for _, s := range []struct {
		subject string
		ev      *eventsv1.Event
	}{
		{"retain.events.shop.order.placed", &eventsv1.Event{Id: "o1", TenantId: "shop", OccurredAt: at, Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
			CustomerId: "c", OrderId: "o1", Total: &eventsv1.Money{AmountMinor: 4200, Currency: "EUR"}}}}},
		{"retain.events.shop.order.refunded", &eventsv1.Event{Id: "r1", OccurredAt: at, Payload: &eventsv1.Event_OrderRefunded{OrderRefunded: &eventsv1.OrderRefunded{
			RefundId: "r1", OrderId: "o1", Amount: &eventsv1.Money{AmountMinor: 100, Currency: "EUR"}}}}},
		{"retain.events.shop.survey.answered", &eventsv1.Event{Id: "s1", OccurredAt: at, Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{
			CustomerId: "c", Kind: eventsv1.SurveyKind_SURVEY_KIND_CSAT, Score: 4}}}},
		{"retain.events.other.order.placed", &eventsv1.Event{Id: "o2", TenantId: "shop", OccurredAt: at}},
		{"retain.events.shop", &eventsv1.Event{}},
	} {
		f.Add(s.subject, testenv.Marshal(f, s.ev))
	}
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		byTenant := map[string]*store.Facts{}
		err := decodeInto(&bus.Delivery{ID: "msg-1", Subject: subject, Data: data}, byTenant)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty reason to reject")
			}
			return
		}
		if len(byTenant) != 1 {
			t.Fatalf("accepted into %d tenants", len(byTenant))
		}
		for _, fs := range byTenant {
			if n := len(fs.Orders) + len(fs.Refunds) + len(fs.Answers); n > 1 {
				t.Fatalf("one message made %d facts", n)
			}
			for _, o := range fs.Orders {
				if o.ID == "" || o.Customer == "" || o.Currency == "" || o.TotalMinor < 0 {
					t.Fatalf("accepted order %+v", o)
				}
			}
			for _, r := range fs.Refunds {
				if r.ID == "" || r.OrderID == "" || r.AmountMinor <= 0 || r.Currency == "" {
					t.Fatalf("accepted refund %+v", r)
				}
			}
			for _, a := range fs.Answers {
				if a.Customer == "" || (a.Kind == retention.SurveyNPS && (a.Score < 0 || a.Score > 10)) ||
					(a.Kind == retention.SurveyCSAT && (a.Score < 1 || a.Score > 5)) {
					t.Fatalf("accepted answer %+v", a)
				}
			}
		}
	})
}
