package notifier_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// TestRequestValuesTheStoreCannotUse: a NUL in an id (which Postgres
// cannot hold in text), an unknown channel, an id too long and a locale
// that is none are INVALID_ARGUMENT naming the field, never INTERNAL, an
// empty list or "is required"; a NOT_FOUND names what was not found,
// without quoting kilobytes back.
func TestRequestValuesTheStoreCannotUse(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	cred := s.token(t, "shop", auth.ScopeAdmin)
	c := s.client()
	email := notifierv1.Channel_CHANNEL_EMAIL
	says := func(t *testing.T, err error, field, want string) {
		t.Helper()
		if d := fieldViolation(t, err, field); !strings.Contains(d, want) {
			t.Errorf("%s: %q, want it to say %q", field, d, want)
		}
	}

	t.Run("a NUL in an id", func(t *testing.T) {
		const nul = "c-\x00x"
		for _, tc := range []struct {
			field string
			call  func() error
		}{
			{"customer_id", func() error {
				_, err := c.GetPreferences(ctx, &notifierv1.GetPreferencesRequest{CustomerId: nul}, cred)
				return err
			}},
			{"customer_id", func() error {
				_, err := c.Unsubscribe(ctx, &notifierv1.UnsubscribeRequest{CustomerId: nul}, cred)
				return err
			}},
			{"customer_id", func() error {
				_, err := c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CustomerId: nul}, cred)
				return err
			}},
			{"campaign_id", func() error {
				_, err := c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CampaignId: nul}, cred)
				return err
			}},
			{"request_id", func() error {
				_, err := c.GetDelivery(ctx, &notifierv1.GetDeliveryRequest{RequestId: nul}, cred)
				return err
			}},
			{"key", func() error {
				_, err := c.GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: nul, Channel: email}, cred)
				return err
			}},
			{"customer_id", func() error {
				_, err := c.SendTest(ctx, &notifierv1.SendTestRequest{CustomerId: nul, Channel: email, TemplateKey: "winback_90"}, cred)
				return err
			}},
		} {
			says(t, tc.call(), tc.field, "holds a NUL byte (\\x00) at byte 2")
		}
	})

	t.Run("an unknown channel", func(t *testing.T) {
		_, err := c.GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: "winback_90", Channel: 99}, cred)
		says(t, err, "channel", "unknown value 99; valid: CHANNEL_EMAIL, CHANNEL_SMS, CHANNEL_WEBHOOK")
		_, err = c.SendTest(ctx, &notifierv1.SendTestRequest{CustomerId: "c", Channel: 99, TemplateKey: "winback_90"}, cred)
		says(t, err, "channel", "unknown value 99")
		_, err = c.ListTemplates(ctx, &notifierv1.ListTemplatesRequest{Channel: 42}, cred)
		says(t, err, "channel", "unknown value 42")
	})

	long := strings.Repeat("x", 100<<10)
	t.Run("ids too long", func(t *testing.T) {
		_, err := c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CustomerId: long}, cred)
		says(t, err, "customer_id", "102400 bytes: at most 256")
		_, err = c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CampaignId: long}, cred)
		says(t, err, "campaign_id", "102400 bytes: at most 256")
		_, err = c.GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: long, Channel: email}, cred)
		says(t, err, "key", "102400 bytes: at most 256")
		if n := len(status.Convert(err).Message()); n > 1000 {
			t.Errorf("the answer quotes %d bytes back", n)
		}
		// Past the address index's row limit it failed as INTERNAL; a
		// repetitive one that compresses under it was stored.
		for _, a := range []string{strings.Repeat("ab3", 1000) + "@example.com", long + "@example.com"} {
			_, err = c.AddSuppression(ctx, &notifierv1.AddSuppressionRequest{Suppression: &notifierv1.Suppression{Channel: email, Address: a}}, cred)
			says(t, err, "suppression.address", "an email address has at most 254")
			_, err = c.RemoveSuppression(ctx, &notifierv1.RemoveSuppressionRequest{Channel: email, Address: a}, cred)
			says(t, err, "address", "an email address has at most 254")
		}
	})

	t.Run("a locale that is none", func(t *testing.T) {
		_, err := c.PreviewTemplate(ctx, &notifierv1.PreviewTemplateRequest{Key: "winback_90", Channel: email, Locale: "not a locale!!"}, cred)
		says(t, err, "locale", `"not a locale!!" is not a BCP 47 language tag`)
		if _, err := c.PreviewTemplate(ctx, &notifierv1.PreviewTemplateRequest{Key: "winback_90", Channel: email, Locale: "fa-IR"}, cred); err != nil {
			t.Errorf("a preview in fa-IR: %v", err)
		}
	})

	t.Run("not found says what", func(t *testing.T) {
		_, err := c.GetDelivery(ctx, &notifierv1.GetDeliveryRequest{RequestId: "o-404"}, cred)
		if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), `delivery "o-404"`) {
			t.Errorf("GetDelivery of an unknown id: %v", err)
		}
		_, err = c.GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: "no_such", Channel: email}, cred)
		if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), `template "no_such"`) {
			t.Errorf("GetTemplate of an unknown key: %v", err)
		}
	})
}
