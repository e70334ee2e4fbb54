package defaults

import (
	"testing"

	"github.com/retainhq/retain/services/notifier/internal/render"
)

func TestDefaultsCompile(t *testing.T) {
	ts, err := Templates()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, tpl := range ts {
		if _, vs := render.Compile(tpl); vs != nil {
			t.Errorf("%s %s: %v", tpl.GetKey(), tpl.GetChannel(), vs)
		}
		keys[tpl.GetKey()] = true
	}
	for _, k := range []string{"thank_you_feedback", "onboarding_1", "onboarding_2", "loyalty_reward", "winback_90", "winback_180", "vip_care", "detractor_apology", "detractor_support_alert", "passive_nudge", "churn_outreach", "renewal_reminder"} {
		if !keys[k] {
			t.Errorf("no default template %s", k)
		}
	}
}
