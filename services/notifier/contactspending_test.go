package notifier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
)

// The requests consumer runs apart from the contacts consumer, and may be
// ahead of it: a request for a customer whose customer.updated is on the
// stream but not yet applied waits for it instead of failing
// (docs/decisions/0047). The contacts consumer is paused on the server
// here, as a slow or stopped one is.
func TestRequestWaitsForItsCustomersProfileOnTheStream(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	// Known, but without an email address yet.
	s.customers(t, "shop", customer{id: "known", phone: "+4915112345678"})
	if _, err := s.pub.JS.PauseConsumer(ctx, bus.EventsStream, notifier.ContactsConsumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	late := s.customerUpdates("shop", customer{id: "late", email: "late@example.com", emailConsent: granted},
		customer{id: "known", email: "known@example.com", phone: "+4915112345678", emailConsent: granted})
	late[1].Id, late[1].OccurredAt = "cu-known-2", timestamppb.New(s.clock.Now())
	s.publishCustomerEvents(t, "", late...)
	s.request(t, marketingEmail("shop", "r-late", "late", "winback"), "")
	s.request(t, marketingEmail("shop", "r-known", "known", "winback"), "")
	// Another shop's customer without a profile fails at once: the
	// contacts consumer's backlog is all the first shop's.
	s.request(t, marketingEmail("other", "r-nobody", "nobody", "winback"), "")
	if d := s.delivery(t, "other", "r-nobody", "failed", "sent", "deferred"); d.GetStatus() != "failed" || d.GetReasonCode() != "unknown_customer" {
		t.Errorf("other shop's unknown customer: %s %q", d.GetStatus(), d.GetReasonCode())
	}

	for _, id := range []string{"r-late", "r-known"} {
		d := s.delivery(t, "shop", id, "deferred", "failed", "sent")
		if d.GetStatus() != "deferred" || d.GetReasonCode() != "contacts_pending" {
			t.Fatalf("%s while its customer.updated is not applied: %s %q (%s)", id, d.GetStatus(), d.GetReasonCode(), d.GetReason())
		}
	}
	// Looked at again while still pending: held, not failed, and not
	// reported again.
	for range 3 {
		due := s.delivery(t, "shop", "r-late", "deferred").GetDueAt().AsTime()
		s.clock.Set(due)
		testenv.WaitFor(t, "the held request looked at again", func() bool {
			d := s.delivery(t, "shop", "r-late", "deferred", "failed", "sent")
			return d.GetStatus() != "deferred" || d.GetDueAt().AsTime().After(due)
		})
	}
	if d := s.delivery(t, "shop", "r-late", "deferred", "failed", "sent"); d.GetStatus() != "deferred" || d.GetReasonCode() != "contacts_pending" {
		t.Fatalf("r-late looked at again while pending: %s %q", d.GetStatus(), d.GetReasonCode())
	}
	// NATS away: the backlog cannot be read, and a failure is for good,
	// so the request is held still.
	s.nats.Shutdown()
	due := s.delivery(t, "shop", "r-late", "deferred").GetDueAt().AsTime()
	s.clock.Set(due)
	testenv.WaitFor(t, "the held request looked at again without NATS", func() bool {
		d := s.delivery(t, "shop", "r-late", "deferred", "failed", "sent")
		return d.GetStatus() != "deferred" || d.GetDueAt().AsTime().After(due)
	})
	if d := s.delivery(t, "shop", "r-late", "deferred", "failed", "sent"); d.GetStatus() != "deferred" || d.GetReasonCode() != "contacts_pending" {
		t.Fatalf("r-late looked at again without NATS: %s %q", d.GetStatus(), d.GetReasonCode())
	}
	if !strings.Contains(s.logs.String(), "notifier cannot tell whether it has applied the shop's customer.updated events") {
		t.Errorf("the unread backlog is not logged:\n%s", s.logs.String())
	}
	s.nats.Restart(t)

	if _, err := s.pub.JS.ResumeConsumer(ctx, bus.EventsStream, notifier.ContactsConsumer); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r-late", "r-known"} {
		testenv.WaitFor(t, id+" sent once the profile is applied", func() bool {
			s.clock.Advance(time.Second)
			return s.delivery(t, "shop", id, "deferred", "failed", "sent").GetStatus() == "sent"
		})
		d := s.delivery(t, "shop", id, "sent")
		var trail []string
		for _, x := range d.GetDecisions() {
			trail = append(trail, x.GetStage()+":"+x.GetVerdict()+":"+x.GetReasonCode())
		}
		if got := strings.Join(trail, " "); !strings.HasPrefix(got, "consent:defer:contacts_pending consent:pass:") || strings.Count(got, "contacts_pending") != 1 {
			t.Errorf("%s decision trail %s", id, got)
		}
		if !strings.Contains(d.GetDecisions()[0].GetReason(), "waiting for the customer's profile") {
			t.Errorf("%s hold reason %q", id, d.GetDecisions()[0].GetReason())
		}
		os := s.outcomes(t, id)
		if len(os) != 2 || os[0].GetOutcome() != notifierv1.Outcome_OUTCOME_DEFERRED || os[0].GetReasonCode() != "contacts_pending" ||
			os[1].GetOutcome() != notifierv1.Outcome_OUTCOME_SENT {
			t.Errorf("%s outcomes %v", id, os)
		}
	}
	if len(s.mail.to("late@example.com")) != 1 || len(s.mail.to("known@example.com")) != 1 {
		t.Errorf("mailbox holds %d messages", s.mail.count())
	}
	// One deferral each, counted under its own reason, not "other".
	if n := testenv.CounterSum(t, s.metrics, "retain.notifier.deliveries", "outcome=deferred", "channel=email", "reason=contacts_pending"); n != 2 {
		t.Errorf("%d deferrals counted as contacts_pending, want 2", n)
	}

	// With the contacts caught up, a customer no customer.updated ever
	// named still fails.
	s.request(t, marketingEmail("shop", "r-never", "never", "winback"), "")
	if d := s.delivery(t, "shop", "r-never", "failed", "sent", "deferred"); d.GetStatus() != "failed" || d.GetReasonCode() != "unknown_customer" {
		t.Errorf("customer never updated, contacts caught up: %s %q", d.GetStatus(), d.GetReasonCode())
	}
	if os := s.outcomes(t, "r-never"); len(os) != 1 || os[0].GetOutcome() != notifierv1.Outcome_OUTCOME_FAILED {
		t.Errorf("r-never outcomes %v", os)
	}
}
