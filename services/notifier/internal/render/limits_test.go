package render

import (
	"errors"
	"strings"
	"testing"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

func smsTemplate(body string) *notifierv1.Template {
	return &notifierv1.Template{Key: "t", Channel: notifierv1.Channel_CHANNEL_SMS,
		Variables: []*notifierv1.VariableSpec{{Name: "x", Type: TypeText}, {Name: "n", Type: TypeInteger}},
		Variants:  []*notifierv1.TemplateVariant{{Body: body}}}
}

// TestWorkIsBounded: nothing a template can say makes a rendering do more
// than a pass over its source: loops, template calls and the functions
// that build strings of any length are refused when it is compiled, by
// reading it: Compile runs nothing of a template it refuses so.
func TestWorkIsBounded(t *testing.T) {
	deep := strings.Repeat("{{if .x}}", maxNesting+1) + strings.Repeat("{{end}}", maxNesting+1)
	parens := "{{if " + strings.Repeat("(not ", maxNesting+1) + ".x" + strings.Repeat(")", maxNesting+1) + "}}{{end}}"
	for _, tc := range []struct{ body, want string }{
		{`{{range 100000}}{{range 100000}}{{end}}{{end}}ok`, "{{range}}"},
		{`{{range 20000}}{{range 1000}}0123456789{{end}}{{end}}`, "{{range}}"},
		{`{{range .n}}a{{end}}`, "{{range}}"},
		{`{{range $k, $v := .customer}}{{$v}}{{end}}`, "{{range}}"},
		{`{{define "a"}}{{template "b"}}{{template "b"}}{{end}}{{define "b"}}x{{end}}{{template "a"}}`, "{{template}}"},
		{`{{block "a" .}}x{{end}}`, "{{template}}"},
		{`{{define "a"}}x{{end}}y`, "{{define}}"},
		{`{{$a := printf "%s%s" .x .x}}{{$a}}`, "printf"},
		{`{{print .x}}`, "print"},
		{`{{if html .x}}{{end}}`, "html"},
		{`{{urlquery .x}}`, "urlquery"},
		{`{{js .x}}`, "js"},
		{`{{call .x}}`, "call"},
		{deep, "levels"},
		{parens, "levels"},
	} {
		_, vs := Compile(smsTemplate(tc.body))
		if len(vs) == 0 || vs[0].Field != "template.variants[0].body" || !strings.Contains(vs[0].Description, tc.want) ||
			strings.Contains(vs[0].Description, "does not render") {
			t.Errorf("%.60s: violations %+v, want template.variants[0].body naming %s, found before rendering", tc.body, vs, tc.want)
		}
	}
	// What stays: conditions, comparisons and the notifier's functions.
	ok := `{{if and (gt .n 2) (ne .x "")}}{{slice .x 0 1}}{{index .customer "first_name"}} {{len .x}}{{else if not .x}}-{{end}}` +
		strings.Repeat("{{with $.x}}", maxNesting) + "{{.}}" + strings.Repeat("{{end}}", maxNesting)
	if _, vs := Compile(smsTemplate(ok)); vs != nil {
		t.Fatalf("%+v", vs)
	}
}

// TestSourceIsBounded: a part, and all parts together, have a size limit.
func TestSourceIsBounded(t *testing.T) {
	_, vs := Compile(smsTemplate(strings.Repeat("a", maxPart+1)))
	if len(vs) == 0 || vs[0].Field != "template.variants[0].body" {
		t.Errorf("one part too large: %+v", vs)
	}
	tpl := emailTemplate()
	tpl.Variants = nil
	for _, loc := range []string{"", "de", "fr", "fa", "ar"} {
		big := strings.Repeat("a", maxPart-10)
		tpl.Variants = append(tpl.Variants, &notifierv1.TemplateVariant{Locale: loc, Subject: "s", Html: big})
	}
	_, vs = Compile(tpl)
	if len(vs) == 0 || vs[0].Field != "template.variants" || !strings.Contains(vs[0].Description, "at most") {
		t.Errorf("all parts too large: %+v", vs)
	}
}

// TestOutputIsBounded: each part renders to at most its channel's limit;
// past it the rendering stops with an error naming the part and the limit.
func TestOutputIsBounded(t *testing.T) {
	text := func(s string) map[string]*notifierv1.TemplateValue {
		return map[string]*notifierv1.TemplateValue{"x": {Value: &notifierv1.TemplateValue_Text{Text: s}}, "n": {Value: &notifierv1.TemplateValue_Integer{Integer: 1}}}
	}
	render := func(tpl *notifierv1.Template, x string) (Message, error) {
		t.Helper()
		c, vs := Compile(tpl)
		if vs != nil {
			t.Fatal(vs)
		}
		return c.Render(Input{Variables: text(x)})
	}
	// SMS counts characters: 1,600 Persian letters are 3,200 bytes and fit.
	if m, err := render(smsTemplate("{{.x}}"), strings.Repeat("س", maxSMS)); err != nil || len([]rune(m.Body)) != maxSMS {
		t.Errorf("an SMS of %d characters: %v", maxSMS, err)
	}
	_, err := render(smsTemplate("{{.x}}!"), strings.Repeat("س", maxSMS))
	var le *limitError
	if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), "body: ") || !strings.Contains(err.Error(), "1,600 characters") {
		t.Errorf("an SMS of %d characters: %v", maxSMS+1, err)
	}
	hook := &notifierv1.Template{Key: "t", Channel: notifierv1.Channel_CHANNEL_WEBHOOK, Variables: []*notifierv1.VariableSpec{{Name: "x", Type: TypeText}},
		Variants: []*notifierv1.TemplateVariant{{Body: `{"a": {{json .x}}, "b": {{json .x}}}`}}}
	if _, err := render(hook, strings.Repeat("a", maxWebhook/2)); !errors.As(err, &le) || !strings.HasPrefix(err.Error(), "body: ") {
		t.Errorf("a webhook over %d bytes: %v", maxWebhook, err)
	}
	email := &notifierv1.Template{Key: "t", Channel: notifierv1.Channel_CHANNEL_EMAIL, Variables: []*notifierv1.VariableSpec{{Name: "x", Type: TypeText}},
		Variants: []*notifierv1.TemplateVariant{{Subject: "{{.x}}", Html: strings.Repeat("<p>{{.x}}</p>", 5), Text: "{{.x}}"}}}
	if _, err := render(email, strings.Repeat("a", maxSubject+1)); !errors.As(err, &le) || !strings.HasPrefix(err.Error(), "subject: ") {
		t.Errorf("a subject over %d bytes: %v", maxSubject, err)
	}
	email.Variants[0].Subject = "s"
	if _, err := render(email, strings.Repeat("<", maxEmailPart/16)); !errors.As(err, &le) || !strings.HasPrefix(err.Error(), "html: ") {
		t.Errorf("html over %d bytes once escaped: %v", maxEmailPart, err)
	}
	// Text a template holds itself is over the limit when it is saved.
	_, vs := Compile(smsTemplate(strings.Repeat("a", maxSMS+1)))
	if len(vs) == 0 || vs[0].Field != "template.variants[0].body" || !strings.Contains(vs[0].Description, "1,600 characters") {
		t.Errorf("violations %+v", vs)
	}
}

// TestValuesAreBounded: a request's value is compared or sliced as often
// as the template says, so its size is bounded.
func TestValuesAreBounded(t *testing.T) {
	c, vs := Compile(smsTemplate(`{{if eq .x "a"}}a{{end}}`))
	if vs != nil {
		t.Fatal(vs)
	}
	_, err := c.Render(Input{Variables: map[string]*notifierv1.TemplateValue{"n": {Value: &notifierv1.TemplateValue_Integer{Integer: 1}},
		"x": {Value: &notifierv1.TemplateValue_Text{Text: strings.Repeat("a", maxValue)}}}})
	var me *MissingError
	if !errors.As(err, &me) || me.Code != "template_variable_too_long" || !strings.Contains(me.Reason, `"x"`) {
		t.Fatalf("err %v", err)
	}
}

// TestFunctionOutputIsBounded: the json function's results, kept in
// variables or written, count against one budget per rendering, so
// calling it over and over does not multiply its work: the rendering
// stops at the first call past the budget.
func TestFunctionOutputIsBounded(t *testing.T) {
	hook := &notifierv1.Template{Key: "t", Channel: notifierv1.Channel_CHANNEL_WEBHOOK, Variables: []*notifierv1.VariableSpec{{Name: "x", Type: TypeText}},
		Variants: []*notifierv1.TemplateVariant{{Body: strings.Repeat("{{$a := json .x}}", 100) + `{}`}}}
	c, vs := Compile(hook)
	if vs != nil {
		t.Fatal(vs)
	}
	// Values are at most maxValue; the functions' budget is spent by many
	// calls on one, each producing maxValue+2 bytes (every quote escaped).
	_, err := c.Render(Input{Variables: map[string]*notifierv1.TemplateValue{"x": {Value: &notifierv1.TemplateValue_Text{Text: strings.Repeat(`"`, maxValue/2)}}}})
	var le *limitError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "json") {
		t.Errorf("err %v", err)
	}
	if perCall := maxValue + 2; c.funcOut > maxFuncOutput+perCall {
		t.Errorf("the functions produced %d bytes (%d calls) before the rendering stopped, want it stopped at the first call past %d",
			c.funcOut, c.funcOut/perCall, maxFuncOutput)
	}
}
