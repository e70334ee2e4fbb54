package notifier_test

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/auth"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// TestPageTokensContinueOnlyTheirQuery: a next_page_token pages the list
// it came from; given with another channel or campaign it is refused,
// naming the field, rather than skipping rows or answering an empty page.
func TestPageTokensContinueOnlyTheirQuery(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	cred := s.token(t, "shop", auth.ScopeAdmin)
	c := s.client()
	wantRefused := func(t *testing.T, err error, says string) {
		t.Helper()
		if d := fieldViolation(t, err, "page_token"); !strings.Contains(d, says) {
			t.Fatalf("page_token: %s; want it to say %q", d, says)
		}
	}

	t.Run("suppressions", func(t *testing.T) {
		for _, sup := range []*notifierv1.Suppression{
			{Channel: notifierv1.Channel_CHANNEL_EMAIL, Address: "a@example.com", Reason: "hard_bounce"},
			{Channel: notifierv1.Channel_CHANNEL_EMAIL, Address: "b@example.com", Reason: "hard_bounce"},
			{Channel: notifierv1.Channel_CHANNEL_SMS, Address: "+4915112345678", Reason: "complaint"},
		} {
			if _, err := c.AddSuppression(ctx, &notifierv1.AddSuppressionRequest{Suppression: sup}, cred); err != nil {
				t.Fatal(err)
			}
		}
		email := &notifierv1.ListSuppressionsRequest{Channel: notifierv1.Channel_CHANNEL_EMAIL, PageSize: 1}
		first, err := c.ListSuppressions(ctx, email, cred)
		if err != nil || len(first.GetSuppressions()) != 1 || first.GetNextPageToken() == "" {
			t.Fatalf("first email page = %v, %v", first, err)
		}
		_, err = c.ListSuppressions(ctx, &notifierv1.ListSuppressionsRequest{Channel: notifierv1.Channel_CHANNEL_SMS, PageToken: first.GetNextPageToken()}, cred)
		wantRefused(t, err, "was returned for another channel")
		_, err = c.ListSuppressions(ctx, &notifierv1.ListSuppressionsRequest{Channel: notifierv1.Channel_CHANNEL_EMAIL, PageToken: "garbage"}, cred)
		wantRefused(t, err, "is malformed")
		next, err := c.ListSuppressions(ctx, &notifierv1.ListSuppressionsRequest{Channel: notifierv1.Channel_CHANNEL_EMAIL, PageSize: 5, PageToken: first.GetNextPageToken()}, cred)
		if err != nil || len(next.GetSuppressions()) != 1 || next.GetSuppressions()[0].GetAddress() != "b@example.com" || next.GetNextPageToken() != "" {
			t.Fatalf("second email page = %v, %v", next, err)
		}
	})

	t.Run("deliveries", func(t *testing.T) {
		s.customers(t, "shop", customer{id: "c", email: "c@example.com", emailConsent: granted})
		for _, r := range []struct{ id, campaign string }{{"w1", "win-back"}, {"w2", "win-back"}, {"t1", "thank-you"}, {"t2", "thank-you"}} {
			s.request(t, marketingEmail("shop", r.id, "c", r.campaign), "")
			s.delivery(t, "shop", r.id, "sent", "suppressed")
		}
		first, err := c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CampaignId: "win-back", PageSize: 1}, cred)
		if err != nil || len(first.GetDeliveries()) != 1 || first.GetNextPageToken() == "" {
			t.Fatalf("first win-back page = %v, %v", first, err)
		}
		_, err = c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CampaignId: "thank-you", PageToken: first.GetNextPageToken()}, cred)
		wantRefused(t, err, "was returned for another campaign_id")
		_, err = c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CustomerId: "c", PageToken: first.GetNextPageToken()}, cred)
		wantRefused(t, err, "was returned for another customer_id, campaign_id")
		next, err := c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CampaignId: "win-back", PageToken: first.GetNextPageToken()}, cred)
		if err != nil || len(next.GetDeliveries()) != 1 || next.GetDeliveries()[0].GetRequestId() == first.GetDeliveries()[0].GetRequestId() {
			t.Fatalf("second win-back page = %v, %v", next, err)
		}
	})
}
