package notifier_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// A message is the shop's whose subject it came on: a body naming another
// shop is dead-lettered, on both of the notifier's consumers, and changes
// nothing of that other shop.
func TestMessagesBelongToTheirSubjectsShop(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	s.customers(t, "beta", customer{id: "c", email: "real@beta.example", emailConsent: eventsv1.ConsentState_CONSENT_STATE_GRANTED})

	ev := &eventsv1.Event{Id: "x", TenantId: "beta", Type: "customer.updated", OccurredAt: timestamppb.New(s.clock.Now()),
		Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{CustomerId: "c", Email: "attacker@evil.example"}}}
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pub.PublishDurable(ctx, []bus.Message{{Subject: bus.EventSubject("alpha", "customer.updated"), ID: "alpha/x", Type: "customer.updated", Data: data}}); err != nil {
		t.Fatal(err)
	}
	// A request of beta's published on alpha's subject.
	r := marketingEmail("beta", "r-1", "c", "winback")
	r.RequestedAt = timestamppb.New(s.clock.Now())
	if data, err = proto.Marshal(r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pub.Publish(ctx, bus.Message{Subject: bus.NotificationSubject("alpha", bus.TypeNotificationRequested), ID: "alpha/r-1", Type: bus.TypeNotificationRequested, Data: data}); err != nil {
		t.Fatal(err)
	}

	reasons := map[string]string{}
	testenv.WaitFor(t, "both messages dead-lettered", func() bool {
		rows, err := s.db.Query(ctx, `SELECT msg_id, reason FROM bus_dead_letters WHERE msg_id IN ('alpha/x', 'alpha/r-1')`)
		if err != nil {
			return false
		}
		defer rows.Close()
		for rows.Next() {
			var id, reason string
			if rows.Scan(&id, &reason) == nil {
				reasons[id] = reason
			}
		}
		return len(reasons) == 2
	})
	if !strings.Contains(reasons["alpha/x"], `tenant_id "beta" differs from the subject's tenant "alpha"`) {
		t.Errorf("contact's dead-letter reason %q", reasons["alpha/x"])
	}
	if !strings.Contains(reasons["alpha/r-1"], `tenant_id "beta" is not the shop of subject`) {
		t.Errorf("request's dead-letter reason %q", reasons["alpha/r-1"])
	}
	var email string
	var requests int
	if err := s.db.QueryRow(ctx, `SELECT (SELECT email FROM contacts WHERE tenant = 'beta' AND customer_id = 'c'),
		(SELECT count(*) FROM deliveries WHERE request_id = 'r-1')`).Scan(&email, &requests); err != nil {
		t.Fatal(err)
	}
	if email != "real@beta.example" || requests != 0 {
		t.Errorf("beta's contact email %q, %d deliveries of r-1: want unchanged, none", email, requests)
	}
}
