// Package templatefile reads and writes the template files of `retain
// templates apply -f FILE`: YAML, one template per document, e.g.
//
//	key: winback_90
//	channel: email
//	description: 90 days without an order
//	variables:
//	  - {name: coupon, type: coupon}
//	variants:
//	  - locale: ""            # the default variant, required
//	    subject: We miss you, {{.customer.first_name}}
//	    html: <p>Here is {{discount .coupon}} off: {{.coupon}}</p>
//	    text: Here is {{discount .coupon}} off: {{.coupon}}
//	  - locale: fa
//	    subject: ...
//
// Unknown fields are errors, so a typo does not silently drop content.
package templatefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/retainhq/retain/platform/yamlfile"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// MaxSize bounds a template file.
const MaxSize = 4 << 20

type fileVariable struct {
	Name     string `yaml:"name"`
	Type     string `yaml:"type"`
	Optional bool   `yaml:"optional,omitempty"`
}

type fileVariant struct {
	Locale  string `yaml:"locale"`
	Subject string `yaml:"subject,omitempty"`
	HTML    string `yaml:"html,omitempty"`
	Text    string `yaml:"text,omitempty"`
	Body    string `yaml:"body,omitempty"`
}

type fileTemplate struct {
	Key         string         `yaml:"key"`
	Channel     string         `yaml:"channel"`
	Description string         `yaml:"description,omitempty"`
	Variables   []fileVariable `yaml:"variables,omitempty"`
	Variants    []fileVariant  `yaml:"variants"`
}

// ParseChannel reads "email", "sms" or "webhook" (or the enum name).
func ParseChannel(s string) (notifierv1.Channel, error) {
	switch strings.ToLower(strings.TrimPrefix(strings.ToUpper(s), "CHANNEL_")) {
	case "email":
		return notifierv1.Channel_CHANNEL_EMAIL, nil
	case "sms":
		return notifierv1.Channel_CHANNEL_SMS, nil
	case "webhook":
		return notifierv1.Channel_CHANNEL_WEBHOOK, nil
	}
	return 0, fmt.Errorf("channel %q: want email, sms or webhook", s)
}

// ChannelName is the file form of a channel.
func ChannelName(c notifierv1.Channel) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_"))
}

// Parse reads every template of a file. Content is checked by the
// notifier when the templates are saved; Parse checks the shape, of every
// template: the error names each one whose shape is wrong (up to a YAML
// syntax error, after which nothing can be read).
func Parse(data []byte) ([]*notifierv1.Template, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("template file is %d bytes: at most %d", len(data), MaxSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var (
		out  []*notifierv1.Template
		errs []error
	)
	// seen is the template number of each key and channel: a second one
	// in the same file would be saved as a later version of the first,
	// and only the last would take effect.
	seen := map[string]int{}
	for n := 1; ; n++ {
		var ft fileTemplate
		err := dec.Decode(&ft)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("template #%d: %w", n, yamlfile.Error(err)))
			var fields *yaml.LoadErrors
			if errors.As(err, &fields) {
				continue // the document was read past its wrong fields
			}
			break
		}
		t, err := ft.template(n, seen)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, t)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, errors.New("template file holds no template")
	}
	return out, nil
}

// template is template number n of a file; seen has the earlier ones'
// key and channel.
func (ft fileTemplate) template(n int, seen map[string]int) (*notifierv1.Template, error) {
	if ft.Key == "" {
		return nil, fmt.Errorf("template #%d: key is required", n)
	}
	ch, err := ParseChannel(ft.Channel)
	if err != nil {
		return nil, fmt.Errorf("template #%d (%s): %w", n, ft.Key, err)
	}
	id := ft.Key + " " + ChannelName(ch)
	if first, ok := seen[id]; ok {
		return nil, fmt.Errorf("template #%d (%s): the file already has template %s for %s, as template #%d: one per key and channel",
			n, ft.Key, ft.Key, ChannelName(ch), first)
	}
	seen[id] = n
	t := &notifierv1.Template{Key: ft.Key, Channel: ch, Description: ft.Description}
	for _, v := range ft.Variables {
		t.Variables = append(t.Variables, &notifierv1.VariableSpec{Name: v.Name, Type: v.Type, Optional: v.Optional})
	}
	for _, v := range ft.Variants {
		t.Variants = append(t.Variants, &notifierv1.TemplateVariant{Locale: v.Locale, Subject: v.Subject, Html: v.HTML, Text: v.Text, Body: v.Body})
	}
	return t, nil
}

// Format writes a template in the file form (for `retain templates show`).
func Format(t *notifierv1.Template) ([]byte, error) {
	ft := fileTemplate{Key: t.GetKey(), Channel: ChannelName(t.GetChannel()), Description: t.GetDescription()}
	for _, v := range t.GetVariables() {
		ft.Variables = append(ft.Variables, fileVariable{Name: v.GetName(), Type: v.GetType(), Optional: v.GetOptional()})
	}
	for _, v := range t.GetVariants() {
		ft.Variants = append(ft.Variants, fileVariant{Locale: v.GetLocale(), Subject: v.GetSubject(), HTML: v.GetHtml(), Text: v.GetText(), Body: v.GetBody()})
	}
	return yaml.Marshal(ft)
}
