package notifier_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/testenv"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// capRequests are a customer's marketing emails as campaigns send them: a
// campaign of priority 60 asks for PRIORITY_NORMAL, one of 40 for
// PRIORITY_LOW (services/campaign). The low ones are requested first, the
// normal one last, so that batch order and requested time both favour the
// low ones.
func capRequests(cust string, at time.Time) []*notifierv1.NotificationRequested {
	var rs []*notifierv1.NotificationRequested
	for i, id := range []string{"b-3", "b-1", "b-2"} { // published out of request id order
		r := marketingEmail("shop", cust+"/"+id, cust, "nudge")
		r.Priority = notifierv1.Priority_PRIORITY_LOW
		r.RequestedAt = timestamppb.New(at.Add(time.Duration(i) * time.Minute))
		rs = append(rs, r)
	}
	// b-1 and b-2 tie on requested time: the request id decides.
	rs[2].RequestedAt = rs[1].RequestedAt
	a := marketingEmail("shop", cust+"/a", cust, "vip")
	a.RequestedAt = timestamppb.New(at.Add(10 * time.Minute))
	return append(rs, a)
}

// checkCapOrder expects the cap's two slots to have gone to the normal
// request and the earliest low one (b-3), and the other low ones dropped.
func checkCapOrder(t *testing.T, s *stack, cust, addr string) {
	t.Helper()
	want := map[string]string{"a": "sent ", "b-3": "sent ", "b-1": "suppressed frequency_cap", "b-2": "suppressed frequency_cap"}
	for _, id := range []string{"a", "b-3", "b-1", "b-2"} {
		var d *notifierv1.Delivery
		testenv.WaitFor(t, id+" to be decided after quiet hours", func() bool {
			resp, err := s.client().GetDelivery(context.Background(), &notifierv1.GetDeliveryRequest{RequestId: cust + "/" + id}, s.token(t, "shop", auth.ScopeRead))
			d = resp.GetDelivery()
			return err == nil && (d.GetStatus() == "sent" || d.GetStatus() == "suppressed" || d.GetStatus() == "deferred" && d.GetReasonCode() != "quiet_hours")
		})
		if got := d.GetStatus() + " " + d.GetReasonCode(); got != want[id] {
			t.Errorf("%s: %s (%s), want %s", id, got, d.GetReason(), want[id])
		}
	}
	if n := len(s.mail.to(addr)); n != 2 {
		t.Errorf("%d emails to %s, want 2", n, addr)
	}
}

// Deferred requests that come due together are decided by priority: when
// quiet hours hold a priority-60 campaign's email and three of a
// priority-40 one until the morning, the cap's two slots do not both go to
// the low ones (which would push the normal one back a week).
func TestDeferredRequestsDueTogetherTakeCapSlotsByPriority(t *testing.T) {
	s := setup(t)
	s.customers(t, "shop", customer{id: "c", email: "c@example.com", tz: "Europe/Berlin", emailConsent: granted})
	evening := time.Date(2026, 6, 10, 20, 0, 0, 0, time.UTC) // 22:00 in Berlin
	s.clock.Set(evening)
	for _, r := range capRequests("c", evening.Add(-30*time.Minute)) {
		s.request(t, r, "")
	}
	morning := time.Date(2026, 6, 11, 7, 0, 0, 0, time.UTC) // 09:00 in Berlin
	for _, id := range []string{"a", "b-1", "b-2", "b-3"} {
		d := s.delivery(t, "shop", "c/"+id, "deferred")
		if d.GetReasonCode() != "quiet_hours" || !d.GetDueAt().AsTime().Equal(morning) {
			t.Fatalf("%s: %s until %s", id, d.GetReasonCode(), d.GetDueAt().AsTime())
		}
	}
	s.clock.Set(morning.Add(time.Second))
	checkCapOrder(t, s, "c", "c@example.com")
}

// New requests in one consumer batch are decided by priority too.
func TestNewRequestsInOneBatchTakeCapSlotsByPriority(t *testing.T) {
	s := setup(t)
	s.customers(t, "shop", customer{id: "d", email: "d@example.com", tz: "Europe/Berlin", emailConsent: granted})
	// Published while the notifier is down, so that one batch holds them.
	s.stop()
	for _, r := range capRequests("d", s.clock.Now().Add(-30*time.Minute)) {
		s.request(t, r, "")
	}
	s.start(t)
	checkCapOrder(t, s, "d", "d@example.com")
}

// The cap's freed slot goes to the higher-ranked campaign, across
// batches: a priority-60 campaign's email and, an hour later and in
// another batch, a priority-90 one's both wait over the full cap (ranks
// as the campaign service sends them); when one slot frees, the
// priority-90 email takes it, although the other was requested and
// deferred first, and the priority-60 one waits for the next slot.
func TestFreedCapSlotGoesToTheHigherRankAcrossBatches(t *testing.T) {
	s := setup(t)
	s.customers(t, "shop", customer{id: "r", email: "r@example.com", tz: "UTC", emailConsent: granted})
	start := s.clock.Now() // noon UTC: no quiet hours
	for _, id := range []string{"fill-1", "fill-2"} {
		s.request(t, marketingEmail("shop", "r/"+id, "r", "other"), "")
		s.delivery(t, "shop", "r/"+id, "sent")
		s.clock.Advance(30 * time.Minute)
	}
	for _, x := range []struct {
		id   string
		rank int32
	}{{"p60", 60}, {"p90", 90}} {
		r := marketingEmail("shop", "r/"+x.id, "r", x.id)
		r.Rank = x.rank
		r.ExpiresAt = timestamppb.New(start.Add(14 * 24 * time.Hour)) // a step's expires_after long enough to wait a week
		s.request(t, r, "")
		d := s.delivery(t, "shop", "r/"+x.id, "deferred")
		if d.GetReasonCode() != "frequency_cap" || !d.GetDueAt().AsTime().Equal(start.Add(7*24*time.Hour)) || d.GetRank() != x.rank {
			t.Fatalf("%s: %s until %s, rank %d", x.id, d.GetReasonCode(), d.GetDueAt().AsTime(), d.GetRank())
		}
		s.clock.Advance(time.Hour)
	}
	s.clock.Set(start.Add(7*24*time.Hour + time.Minute))
	var winner string
	testenv.WaitFor(t, "the freed slot to be taken", func() bool {
		for _, id := range []string{"p60", "p90"} {
			resp, err := s.client().GetDelivery(context.Background(), &notifierv1.GetDeliveryRequest{RequestId: "r/" + id}, s.token(t, "shop", auth.ScopeRead))
			if err == nil && resp.GetDelivery().GetStatus() == "sent" {
				winner = id
				return true
			}
		}
		return false
	})
	if winner != "p90" {
		t.Fatalf("the freed slot went to %s, want p90", winner)
	}
	d := s.delivery(t, "shop", "r/p60", "deferred")
	if d.GetReasonCode() != "frequency_cap" || !d.GetDueAt().AsTime().Equal(start.Add(7*24*time.Hour+30*time.Minute)) {
		t.Errorf("p60: %s until %s, want frequency_cap until the next slot", d.GetReasonCode(), d.GetDueAt().AsTime())
	}
	if n := len(s.mail.to("r@example.com")); n != 3 {
		t.Errorf("%d emails, want 3", n)
	}
}
