package domain

import (
	"fmt"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// TemplateRef is the notifier template a send step names, and the field
// that names it.
type TemplateRef struct {
	Field   string
	Channel notifierv1.Channel
	Key     string
}

// TemplateRefs lists the templates c's send steps name, leaving out those
// whose key or channel Compile already refuses: each can be looked up.
func TemplateRefs(c *campaignv1.Campaign) []TemplateRef {
	var refs []TemplateRef
	for i, s := range c.GetSteps() {
		send := s.GetSend()
		if send == nil || !tmplRE.MatchString(send.GetTemplateKey()) {
			continue
		}
		if knownChannel(send.GetChannel()) {
			refs = append(refs, TemplateRef{Field: fmt.Sprintf("steps[%d].send.template_key", i), Channel: send.GetChannel(), Key: send.GetTemplateKey()})
		}
	}
	return refs
}

// knownChannel reports whether ch is a channel a send step may use.
func knownChannel(ch notifierv1.Channel) bool {
	return ch != notifierv1.Channel_CHANNEL_UNSPECIFIED && notifierv1.Channel_name[int32(ch)] != ""
}
