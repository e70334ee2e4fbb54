package notifier_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/notifier"
)

// syncEvent is a shop's customer.updated for customer c as a profile sync
// sends it: the whole profile, with email marketing consent state, at at.
func syncEvent(id string, at time.Time, state eventsv1.ConsentState) *eventsv1.Event {
	return &eventsv1.Event{Id: id, TenantId: "shop", Type: "customer.updated", OccurredAt: timestamppb.New(at),
		Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{CustomerId: "c", Email: "c@example.com",
			FirstName: "Name-c", Consent: &eventsv1.Consent{EmailMarketing: state}}}}
}

// unsubscribed sets up customer c of shop, granted by the shop an hour
// ago, sent one marketing email, then unsubscribed by its one-click link;
// the clock is an hour after the unsubscribe. No frequency cap: each test
// sends several.
func unsubscribed(t *testing.T) *stack {
	t.Helper()
	s := setup(t, func(c *notifier.Config) { c.CapMax = 0 })
	s.customers(t, "shop", customer{id: "c", email: "c@example.com", emailConsent: granted})
	s.request(t, marketingEmail("shop", "m-0", "c", "winback"), "")
	s.delivery(t, "shop", "m-0", "sent")
	s.oneClickUnsubscribe(t, "c@example.com")
	s.clock.Advance(time.Hour)
	return s
}

// expect sends customer c marketing email id and checks its outcome (and
// reason code) and what GetPreferences shows.
func (s *stack) expect(t *testing.T, id, status, code string, subscribed bool, source string) {
	t.Helper()
	s.request(t, marketingEmail("shop", id, "c", "winback"), "")
	if d := s.delivery(t, "shop", id, "sent", "suppressed"); d.GetStatus() != status || d.GetReasonCode() != code {
		t.Errorf("%s: %s %s (%s), want %s %s", id, d.GetStatus(), d.GetReasonCode(), d.GetReason(), status, code)
	}
	if p := s.emailMarketing(t, "shop", "c"); p.GetSubscribed() != subscribed || p.GetSource() != source {
		t.Errorf("preferences after %s: %v, want subscribed %v from %s", id, p, subscribed, source)
	}
}

// A routine sync re-sends the consent the shop reported before: no news,
// so the unsubscribe stands, also when the sync is re-published.
func TestUnsubscribeOutlastsTheShopRepeatingItsConsent(t *testing.T) {
	s := unsubscribed(t)
	s.customerEvents(t, "", syncEvent("sync-1", s.clock.Now(), granted))
	s.expect(t, "m-1", "suppressed", "unsubscribed", false, "one_click")
	// Redelivered, and re-published past the dedupe window.
	s.customerEvents(t, "", syncEvent("sync-1", s.clock.Now(), granted))
	s.customerEvents(t, "/again", syncEvent("sync-1", s.clock.Now(), granted))
	s.clock.Advance(time.Hour)
	s.customerEvents(t, "", syncEvent("sync-2", s.clock.Now(), granted))
	s.expect(t, "m-2", "suppressed", "unsubscribed", false, "one_click")
}

// The shop revoking and then granting again after the unsubscribe is a new
// consent, the latest word: the customer is subscribed again.
func TestShopConsentGivenAgainAfterAnUnsubscribeWins(t *testing.T) {
	s := unsubscribed(t)
	s.customerEvents(t, "", syncEvent("sync-1", s.clock.Now(), revoked))
	s.expect(t, "m-3", "suppressed", "consent_revoked", false, "shop")
	s.clock.Advance(time.Hour)
	s.customerEvents(t, "", syncEvent("sync-2", s.clock.Now(), granted))
	s.expect(t, "m-4", "sent", "", true, "shop")
	// Repeating that grant changes nothing.
	s.customerEvents(t, "", syncEvent("sync-2", s.clock.Now(), granted), syncEvent("sync-3", s.clock.Now().Add(time.Minute), granted))
	s.expect(t, "m-5", "sent", "", true, "shop")
}

// Out of order: the shop's revoke and re-grant after the unsubscribe
// arrive grant first. Alone the grant looks like a repeat (the unsubscribe
// stands); once the revoke before it arrives, it is a new consent.
func TestShopConsentGivenAgainArrivingOutOfOrder(t *testing.T) {
	s := unsubscribed(t)
	revokedAt := s.clock.Now()
	s.clock.Advance(time.Hour)
	s.customerEvents(t, "", syncEvent("sync-2", s.clock.Now(), granted))
	s.expect(t, "m-6", "suppressed", "unsubscribed", false, "one_click")
	s.customerEvents(t, "", syncEvent("sync-1", revokedAt, revoked))
	s.expect(t, "m-7", "sent", "", true, "shop")
	// Both again, in one batch and in either order: nothing changes.
	s.customerEvents(t, "/again", syncEvent("sync-2", s.clock.Now(), granted), syncEvent("sync-1", revokedAt, revoked))
	s.expect(t, "m-8", "sent", "", true, "shop")
}

// Reports from before the unsubscribe arriving late (a revoke and grant
// the shop sent before it, redelivered after) do not undo it.
func TestLateShopReportsFromBeforeAnUnsubscribeDoNotUndoIt(t *testing.T) {
	s := unsubscribed(t)
	before := s.clock.Now().Add(-90 * time.Minute) // after the first grant, before the unsubscribe
	s.customerEvents(t, "", syncEvent("old-2", before.Add(time.Minute), granted), syncEvent("old-1", before, revoked))
	s.expect(t, "m-9", "suppressed", "unsubscribed", false, "one_click")
}

// During a rolling upgrade a replica from before decision 0046 applies
// the shop's syncs after the unsubscribe: its upsert writes only the
// latest report's columns and leaves the run this version stored (granted
// since before the unsubscribe) as it was. A sync repeating the grant, the
// shop's routine, does not undo the unsubscribe, then or once every
// replica is upgraded. A revocation and new grant through that replica
// cannot be told from a repeat (the grant overwrote the revocation): the
// unsubscribe stands too, erring on sending nothing the customer refused,
// until the shop changes its consent again through an upgraded replica.
func TestUnsubscribeOutlastsSyncsOfAReplicaNotYetUpgraded(t *testing.T) {
	s := unsubscribed(t)
	s.oldReplicaSync(t, "sync-1", s.clock.Now(), "granted")
	s.expect(t, "m-10", "suppressed", "unsubscribed", false, "one_click")
	s.clock.Advance(time.Hour)
	s.oldReplicaSync(t, "sync-2", s.clock.Now(), "revoked")
	s.clock.Advance(time.Hour)
	s.oldReplicaSync(t, "sync-3", s.clock.Now(), "granted")
	s.expect(t, "m-11", "suppressed", "unsubscribed", false, "one_click")
	s.clock.Advance(time.Hour)
	s.customerEvents(t, "", syncEvent("sync-4", s.clock.Now(), granted))
	s.expect(t, "m-12", "suppressed", "unsubscribed", false, "one_click")
	s.clock.Advance(time.Hour)
	s.customerEvents(t, "", syncEvent("sync-5", s.clock.Now(), revoked))
	s.clock.Advance(time.Hour)
	s.customerEvents(t, "", syncEvent("sync-6", s.clock.Now(), granted))
	s.expect(t, "m-13", "sent", "", true, "shop")
}

// oldReplicaSync applies the shop's report of customer c's email consent
// as the contacts upsert from before migration 0005 did: the report
// replaces the consent columns it knew if it is newer.
func (s *stack) oldReplicaSync(t *testing.T, id string, at time.Time, consent string) {
	t.Helper()
	if _, err := s.db.Exec(context.Background(), `UPDATE contacts SET email_consent = $1, email_consent_at = $2, email_consent_ev = $3
		WHERE tenant = 'shop' AND customer_id = 'c' AND ($2, $3, $1) > (email_consent_at, email_consent_ev, email_consent)`,
		consent, at.Truncate(time.Microsecond), id); err != nil {
		t.Fatal(err)
	}
}
