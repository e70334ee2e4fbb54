package campaign_test

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/server"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
)

// TestRequestValuesTheStoreCannotUse: a NUL in a customer id (which
// Postgres cannot hold in text) and a send's unknown channel are
// INVALID_ARGUMENT naming the field, not INTERNAL or "is required".
func TestRequestValuesTheStoreCannotUse(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	tok := s.token(t, "shop")
	says := func(t *testing.T, err error, field, want string) {
		t.Helper()
		for _, v := range server.Violations(err) {
			if v.Field == field && strings.Contains(v.Description, want) {
				return
			}
		}
		t.Errorf("%v, want %s: %s", err, field, want)
	}

	_, err := s.client().ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "c-\x00x"}, tok)
	says(t, err, "customer_id", "holds a NUL byte (\\x00) at byte 2")

	c, err := campaignfile.Decode([]byte(sendNow("welcome", "{once_per_customer: {}}", 0)))
	if err != nil {
		t.Fatal(err)
	}
	c.GetSteps()[0].GetSend().Channel = 99
	_, err = s.client().CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: c}, tok)
	says(t, err, "campaign.steps[0].send.channel", "unknown value 99; valid: CHANNEL_EMAIL, CHANNEL_SMS, CHANNEL_WEBHOOK")
}
