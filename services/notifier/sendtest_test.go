package notifier_test

import (
	"context"
	"testing"

	"github.com/retainhq/retain/platform/auth"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// TestSendTestHonoursConsentUnlessAskedForTransactional: a test send is
// marketing unless its caller says otherwise, so a customer who
// unsubscribed, or never consented, does not get a marketing template
// because someone tested it on them.
func TestSendTestHonoursConsentUnlessAskedForTransactional(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	cred := s.token(t, "shop", auth.ScopeCampaignsWrite)
	s.customers(t, "shop",
		customer{id: "gone", email: "gone@example.com", emailConsent: granted},
		customer{id: "never", email: "never@example.com"},
	)
	if _, err := s.client().Unsubscribe(ctx, &notifierv1.UnsubscribeRequest{CustomerId: "gone", Channel: notifierv1.Channel_CHANNEL_EMAIL}, cred); err != nil {
		t.Fatal(err)
	}
	send := func(customer string, cat notifierv1.Category) *notifierv1.Delivery {
		t.Helper()
		resp, err := s.client().SendTest(ctx, &notifierv1.SendTestRequest{CustomerId: customer, Channel: notifierv1.Channel_CHANNEL_EMAIL,
			TemplateKey: "winback_90", Category: cat}, cred)
		if err != nil {
			t.Fatal(err)
		}
		return s.delivery(t, "shop", resp.GetRequestId(), "sent", "suppressed", "failed")
	}
	for customer, code := range map[string]string{"gone": "unsubscribed", "never": "no_consent"} {
		d := send(customer, notifierv1.Category_CATEGORY_UNSPECIFIED)
		if d.GetStatus() != "suppressed" || d.GetReasonCode() != code || d.GetCategory() != notifierv1.Category_CATEGORY_MARKETING {
			t.Errorf("%s, no category: %s %s %s %q", customer, d.GetCategory(), d.GetStatus(), d.GetReasonCode(), d.GetReason())
		}
	}
	if n := s.mail.count(); n != 0 {
		t.Fatalf("%d test emails reached customers without marketing consent", n)
	}
	// Asked for, a transactional test needs no marketing consent.
	if d := send("never", notifierv1.Category_CATEGORY_TRANSACTIONAL); d.GetStatus() != "sent" {
		t.Errorf("transactional: %s %s", d.GetStatus(), d.GetReasonCode())
	}
}
