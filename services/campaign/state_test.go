package campaign_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/server"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
)

// violations are the field violations of a status error, by field.
func violations(err error) map[string]string {
	out := map[string]string{}
	for _, v := range server.Violations(err) {
		out[v.Field] = v.Description
	}
	return out
}

// TestStateOfAFile: a campaign file's state is the state a new campaign
// is created in (paused: it enrolls nobody); an update may repeat the
// current state but not change it, and one that tries stores nothing,
// whatever else it changes.
func TestStateOfAFile(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	tok := s.token(t, "shop")
	decode := func(file string) *campaignv1.Campaign {
		t.Helper()
		c, err := campaignfile.Decode([]byte(file))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	file := sendNow("qa-state", "{once_per_customer: {}}", 0)

	t.Run("created paused, it enrolls nobody", func(t *testing.T) {
		c := s.create(t, "shop", file+"state: CAMPAIGN_STATE_PAUSED\n")
		if c.GetState() != campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED || c.GetVersion() != 1 {
			t.Fatalf("created %v v%d", c.GetState(), c.GetVersion())
		}
		s.publish(t, "shop", orderEv("o1", "c-1", s.clock.Now(), 1000))
		s.caughtUp(t)
		if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'qa-state'`); n != 0 {
			t.Fatalf("%d enrollments in a campaign created paused", n)
		}
	})
	t.Run("an update that would change the state is refused whole", func(t *testing.T) {
		c := decode(strings.Replace(file, "name: ", "name: Renamed ", 1) + "state: CAMPAIGN_STATE_ACTIVE\n")
		_, err := s.client().UpdateCampaign(ctx, &campaignv1.UpdateCampaignRequest{Campaign: c}, tok)
		v := violations(err)["campaign.state"]
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(v, "the campaign is paused") || !strings.Contains(v, "retain campaigns resume qa-state") {
			t.Fatalf("update to active: %v", err)
		}
		g, err := s.client().GetCampaign(ctx, &campaignv1.GetCampaignRequest{Id: "qa-state"}, tok)
		if err != nil || g.GetCampaign().GetVersion() != 1 || g.GetCampaign().GetState() != campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED || strings.HasPrefix(g.GetCampaign().GetName(), "Renamed") {
			t.Fatalf("after a refused update: %v %v", g, err)
		}
	})
	t.Run("with other violations, all are named", func(t *testing.T) {
		c := decode(strings.Replace(file, "holdout_percent: 0", "holdout_percent: 95", 1) + "state: CAMPAIGN_STATE_ARCHIVED\n")
		_, err := s.client().UpdateCampaign(ctx, &campaignv1.UpdateCampaignRequest{Campaign: c}, tok)
		v := violations(err)
		if !strings.Contains(v["campaign.state"], "retain campaigns archive qa-state") || v["campaign.holdout_percent"] == "" {
			t.Fatalf("update: %v", err)
		}
	})
	t.Run("the current state is no change", func(t *testing.T) {
		c := decode(strings.Replace(file, "name: ", "name: Renamed ", 1) + "state: CAMPAIGN_STATE_PAUSED\n")
		up, err := s.client().UpdateCampaign(ctx, &campaignv1.UpdateCampaignRequest{Campaign: c}, tok)
		if err != nil || up.GetCampaign().GetVersion() != 2 || up.GetCampaign().GetState() != campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED {
			t.Fatalf("update: %v %v", up, err)
		}
		up, err = s.client().UpdateCampaign(ctx, &campaignv1.UpdateCampaignRequest{Campaign: c}, tok)
		if err != nil || !up.GetUnchanged() {
			t.Fatalf("the same again: %v %v", up, err)
		}
	})
	t.Run("a new campaign is not created archived", func(t *testing.T) {
		for state, want := range map[string]string{"CAMPAIGN_STATE_ARCHIVED": "not archived", "7": "unknown value 7"} {
			c := decode(sendNow("qa-archived", "{once_per_customer: {}}", 0) + "state: " + state + "\n")
			_, err := s.client().CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: c}, tok)
			if !strings.Contains(violations(err)["campaign.state"], want) {
				t.Fatalf("create %s: %v", state, err)
			}
		}
		if _, err := s.client().GetCampaign(ctx, &campaignv1.GetCampaignRequest{Id: "qa-archived"}, tok); status.Code(err) != codes.NotFound {
			t.Fatalf("a refused campaign was saved: %v", err)
		}
	})
	t.Run("no state is active, as before", func(t *testing.T) {
		if c := s.create(t, "shop", sendNow("qa-active", "{once_per_customer: {}}", 0)); c.GetState() != campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE {
			t.Fatalf("created %v", c.GetState())
		}
	})
}

// TestPreviewSaysPausedAndArchived: the preview of a campaign that
// enrolls nobody still counts who matches, and says that nobody enters.
func TestPreviewSaysPausedAndArchived(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	tok := s.token(t, "shop")
	if _, err := s.client().InstallPlaybook(ctx, &campaignv1.InstallPlaybookRequest{Name: "win-back", Id: "wb2", Paused: true}, tok); err != nil {
		t.Fatal(err)
	}
	s.create(t, "shop", sendNow("thanks", "{once_per_customer: {}}", 0))
	s.publish(t, "shop", orderEv("o1", "c-1", s.clock.Now().Add(-100*day), 1000))
	s.caughtUp(t)
	preview := func(id string) *campaignv1.PreviewAudienceResponse {
		t.Helper()
		pv, err := s.client().PreviewAudience(ctx, &campaignv1.PreviewAudienceRequest{Id: id}, tok)
		if err != nil {
			t.Fatal(err)
		}
		return pv
	}
	if pv := preview("wb2"); pv.GetCount() != 1 || !strings.HasPrefix(pv.GetNote(), "the campaign is paused and enrolls nobody until it is resumed") ||
		!strings.Contains(pv.GetNote(), "once resumed, the next scheduled evaluation enrolls them") {
		t.Fatalf("paused: %v", pv)
	}
	if pv := preview("thanks"); !strings.HasPrefix(pv.GetNote(), "customers who match the customer conditions now; they enter on their next order.placed") {
		t.Fatalf("active: %v", pv)
	}
	if _, err := s.client().ArchiveCampaign(ctx, &campaignv1.ArchiveCampaignRequest{Id: "thanks"}, tok); err != nil {
		t.Fatal(err)
	}
	if pv := preview("thanks"); !strings.HasPrefix(pv.GetNote(), "the campaign is archived and enrolls nobody") || strings.Contains(pv.GetNote(), "they enter") {
		t.Fatalf("archived: %v", pv)
	}
}

// TestPlaybookNotFoundListsThem: installing a playbook that does not
// exist names the ones that do.
func TestPlaybookNotFoundListsThem(t *testing.T) {
	s := setup(t)
	_, err := s.client().InstallPlaybook(context.Background(), &campaignv1.InstallPlaybookRequest{Name: "nope"}, s.token(t, "shop"))
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `playbook "nope": not found; the playbooks are `) || !strings.Contains(err.Error(), "win-back") {
		t.Fatalf("install nope: %v", err)
	}
}
