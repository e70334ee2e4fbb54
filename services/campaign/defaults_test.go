package campaign_test

import (
	"fmt"
	"os"
	"testing"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/notifier/templatefile"
)

// defaultsFile holds the templates the notifier installs for every shop,
// one per playbook send (read from the source: the package embedding it is
// the notifier's internal one).
const defaultsFile = "../notifier/internal/defaults/defaults.yaml"

type templateRef struct {
	key string
	ch  notifierv1.Channel
}

// defaultTemplates reads the notifier's default templates as the notifier
// does.
func defaultTemplates(t *testing.T) map[templateRef]*notifierv1.Template {
	t.Helper()
	data, err := os.ReadFile(defaultsFile)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := templatefile.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	out := map[templateRef]*notifierv1.Template{}
	for _, tpl := range ts {
		out[templateRef{tpl.GetKey(), tpl.GetChannel()}] = tpl
	}
	return out
}

// valueType is the notifier's type name of a template value, as a
// template's variables declare it.
func valueType(v *notifierv1.TemplateValue) string {
	switch v.GetValue().(type) {
	case *notifierv1.TemplateValue_Text:
		return "text"
	case *notifierv1.TemplateValue_Integer:
		return "integer"
	case *notifierv1.TemplateValue_Money:
		return "money"
	case *notifierv1.TemplateValue_Time:
		return "time"
	case *notifierv1.TemplateValue_Coupon:
		return "coupon"
	}
	return "nothing"
}

// checkDefaultTemplates checks the messages the playbooks sent (sent holds
// every playbook's) against the notifier's default templates they name:
//   - every send step of every playbook sent a message, with a template
//     the defaults have for its channel;
//   - a variable a message gives that its template declares has the
//     declared type (else the notifier fails the delivery), and a variable
//     the template requires is given;
//   - every variable a default template reads is given, with its type, by
//     some playbook's message, or is text, which a campaign's
//     send.variables can give: else no campaign fills it and the message
//     always reads as if it were empty.
func checkDefaultTemplates(t *testing.T, sent []notification) {
	t.Helper()
	defaults := defaultTemplates(t)
	pbs, err := domain.Playbooks()
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]*notifierv1.NotificationRequested{} // campaign/step: a message it sent
	given := map[string]bool{}                              // "name type" of every variable given
	for _, n := range sent {
		steps[n.GetOrigin().GetCampaignId()+"/"+n.GetOrigin().GetStepId()] = n.NotificationRequested
		for name, v := range n.GetVariables() {
			given[name+" "+valueType(v)] = true
		}
	}
	for _, pb := range pbs {
		for _, st := range pb.Campaign.GetSteps() {
			send := st.GetSend()
			if send == nil {
				continue
			}
			where := fmt.Sprintf("playbook %s, step %s (%s %s)", pb.Name, st.GetId(), send.GetTemplateKey(), send.GetChannel())
			tpl := defaults[templateRef{send.GetTemplateKey(), send.GetChannel()}]
			if tpl == nil {
				t.Errorf("%s: the notifier has no default template for it", where)
				continue
			}
			n := steps[pb.Campaign.GetId()+"/"+st.GetId()]
			if n == nil {
				t.Errorf("%s: sent nothing in this test", where)
				continue
			}
			for _, spec := range tpl.GetVariables() {
				v, ok := n.GetVariables()[spec.GetName()]
				switch {
				case !ok && !spec.GetOptional():
					t.Errorf("%s: the template requires %s (%s), the message has none", where, spec.GetName(), spec.GetType())
				case ok && valueType(v) != spec.GetType():
					t.Errorf("%s: the template declares %s as %s, the message gives %s", where, spec.GetName(), spec.GetType(), valueType(v))
				}
			}
		}
	}
	for ref, tpl := range defaults {
		for _, spec := range tpl.GetVariables() {
			if spec.GetType() != "text" && !given[spec.GetName()+" "+spec.GetType()] {
				t.Errorf("default template %s (%s) reads %s (%s), which no playbook's message gives", ref.key, ref.ch, spec.GetName(), spec.GetType())
			}
		}
	}
}
