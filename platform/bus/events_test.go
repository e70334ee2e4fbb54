package bus_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func TestDecodeEvent(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	good := testenv.Marshal(t, &eventsv1.Event{Id: "e1", TenantId: "shop", OccurredAt: at})
	for _, tc := range []struct {
		name, subject string
		data          []byte
		want          string // error substring; "" accepts
	}{
		{"accepted", "retain.events.shop.order.placed", good, ""},
		{"tenant_id unset", "retain.events.shop.order.placed", testenv.Marshal(t, &eventsv1.Event{Id: "e1", OccurredAt: at}), ""},
		{"other stream", "retain.signals.shop.order.placed", good, "is not retain.events.<tenant>.<type>"},
		{"no type", "retain.events.shop", good, "is not retain.events.<tenant>.<type>"},
		{"bad tenant", "retain.events.Shop!.order.placed", good, "is not retain.events.<tenant>.<type>"},
		{"not protobuf", "retain.events.shop.order.placed", []byte{0xff, 0xff}, "cannot decode retain.events.v1.Event"},
		{"another tenant's event", "retain.events.other.order.placed", good, `tenant_id "shop" differs from the subject's tenant "other"`},
		{"no time", "retain.events.shop.order.placed", testenv.Marshal(t, &eventsv1.Event{Id: "e1"}), "occurred_at: is required"},
		{"invalid time", "retain.events.shop.order.placed", testenv.Marshal(t, &eventsv1.Event{Id: "e1", OccurredAt: &timestamppb.Timestamp{Nanos: -1}}), "occurred_at:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tenant, typ, ev, err := bus.DecodeEvent(tc.subject, tc.data)
			if tc.want == "" {
				if err != nil || tenant != "shop" || typ != "order.placed" || ev.GetId() != "e1" {
					t.Fatalf("got %q %q %v, %v", tenant, typ, ev, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestSplitSubject: the tenant and type of <prefix>.<tenant>.<type>, and a
// refusal naming the subject for anything else.
func TestSplitSubject(t *testing.T) {
	if tn, typ, err := bus.SplitSubject(bus.SignalsSubjectPrefix, bus.SignalsSubjectPrefix+".shop.churn.risk_changed"); err != nil || tn != "shop" || typ != "churn.risk_changed" {
		t.Fatalf("got %q %q %v", tn, typ, err)
	}
	for _, s := range []string{bus.EventsSubjectPrefix + ".shop.order.placed", bus.SignalsSubjectPrefix + ".shop", bus.SignalsSubjectPrefix + ".Shop!.x", bus.SignalsSubjectPrefix + ".shop."} {
		_, _, err := bus.SplitSubject(bus.SignalsSubjectPrefix, s)
		if err == nil || !strings.Contains(err.Error(), s) || !strings.Contains(err.Error(), bus.SignalsSubjectPrefix+".<tenant>.<type>") {
			t.Errorf("%s: %v", s, err)
		}
	}
}
