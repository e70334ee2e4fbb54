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
		c, vs := render.Compile(tpl)
		if vs != nil {
			t.Errorf("%s %s: %v", tpl.GetKey(), tpl.GetChannel(), vs)
			continue
		}
		// Within the limits of what templates may say and render to.
		for _, v := range tpl.GetVariants() {
			m, err := c.Render(render.Input{Locale: render.Locale{Tag: v.GetLocale()}, Customer: map[string]string{"first_name": "Sara"}})
			if err != nil || m.Subject+m.Body == "" {
				t.Errorf("%s %s %q: %+v %v", tpl.GetKey(), tpl.GetChannel(), v.GetLocale(), m, err)
			}
		}
		keys[tpl.GetKey()] = true
	}
	for _, k := range []string{"thank_you_feedback", "onboarding_1", "onboarding_2", "loyalty_reward", "winback_90", "winback_180", "vip_care", "detractor_apology", "detractor_support_alert", "passive_nudge", "churn_outreach", "renewal_reminder"} {
		if !keys[k] {
			t.Errorf("no default template %s", k)
		}
	}
}
