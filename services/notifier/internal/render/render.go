// Package render compiles and renders message templates: versioned, per
// channel, with per-locale variants chosen through a fallback chain
// (fa-IR -> fa -> default). Rendering is all or nothing: every part of a
// message is rendered (missingkey=error) before anything is sent, and a
// template that refers to a variable it did not declare is refused when it
// is saved.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	htmltemplate "html/template"
	"regexp"
	"slices"
	"strings"
	texttemplate "text/template"
	"text/template/parse"
	"time"

	"golang.org/x/text/language"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// Violation is one bad field of a template.
type Violation struct {
	Field, Description string
}

// Names every template may use besides its declared variables.
const (
	VarCustomer       = "customer"
	VarUnsubscribeURL = "unsubscribe_url"
	VarDir            = "dir"
	VarLang           = "lang"
)

var (
	keyRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)
	types  = []string{TypeText, TypeInteger, TypeMoney, TypeTime, TypeCoupon}
	// customerKeys are the fields of {{.customer}}.
	customerKeys = []string{"first_name", "last_name", "email", "phone", "locale"}
)

// maxPart bounds one template part (subject, html, ...).
const maxPart = 256 << 10

func funcs() map[string]any {
	return map[string]any{
		"money":    func(m Money) string { return m.String() },
		"date":     func(t Time) string { return t.Date() },
		"datetime": func(t Time) string { return t.DateTime() },
		"coupon":   func(c Coupon) string { return c.Code },
		"discount": func(c Coupon) string { return c.Discount() },
		// json writes a value as a JSON literal, for webhook bodies.
		"json": func(v any) (string, error) {
			if s, ok := v.(fmt.Stringer); ok {
				v = s.String()
			}
			b, err := json.Marshal(v)
			return string(b), err
		},
	}
}

// Compiled is a template ready to render.
type Compiled struct {
	T        *notifierv1.Template
	variants []variant
}

type variant struct {
	locale string // lower case, "" = default
	src    *notifierv1.TemplateVariant
	// text parts (subject, text, body) and the html body.
	subject, text, body *texttemplate.Template
	html                *htmltemplate.Template
}

// Compile validates t and parses every part; the violations name the
// fields at fault (template.variants[1].html: ...).
func Compile(t *notifierv1.Template) (*Compiled, []Violation) {
	var vs []Violation
	add := func(field, format string, args ...any) {
		vs = append(vs, Violation{Field: "template." + field, Description: fmt.Sprintf(format, args...)})
	}
	if t == nil {
		return nil, []Violation{{Field: "template", Description: "is required"}}
	}
	if !keyRE.MatchString(t.GetKey()) {
		add("key", "%q: want 1-64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit", t.GetKey())
	}
	ch := t.GetChannel()
	if _, ok := notifierv1.Channel_name[int32(ch)]; !ok || ch == notifierv1.Channel_CHANNEL_UNSPECIFIED {
		add("channel", "is required: CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_WEBHOOK")
	}
	declared := map[string]string{}
	for i, v := range t.GetVariables() {
		f := fmt.Sprintf("variables[%d]", i)
		switch {
		case !nameRE.MatchString(v.GetName()):
			add(f+".name", "%q: want a lower-case identifier (a-z, 0-9, '_')", v.GetName())
		case slices.Contains([]string{VarCustomer, VarUnsubscribeURL, VarDir, VarLang}, v.GetName()):
			add(f+".name", "%q is provided by the notifier and cannot be declared", v.GetName())
		case declared[v.GetName()] != "":
			add(f+".name", "%q is declared twice", v.GetName())
		}
		if !slices.Contains(types, v.GetType()) {
			add(f+".type", "%q: want one of %s", v.GetType(), strings.Join(types, ", "))
		}
		declared[v.GetName()] = v.GetType()
	}
	c := &Compiled{T: t}
	if len(t.GetVariants()) == 0 {
		add("variants", "at least the default variant (locale \"\") is required")
	}
	seen := map[string]bool{}
	for i, v := range t.GetVariants() {
		f := fmt.Sprintf("variants[%d]", i)
		loc := strings.ToLower(v.GetLocale())
		if loc != "" {
			if _, err := language.Parse(loc); err != nil {
				add(f+".locale", "%q is not a BCP 47 language tag (like fa-IR, ar, en)", v.GetLocale())
			}
		}
		if seen[loc] {
			add(f+".locale", "%q appears twice", v.GetLocale())
		}
		seen[loc] = true
		cv := variant{locale: loc, src: v}
		part := func(name, src string, required, allowed bool) *texttemplate.Template {
			switch {
			case src == "" && required:
				add(f+"."+name, "is required for %s templates", channelWord(ch))
				return nil
			case src != "" && !allowed:
				add(f+"."+name, "is not used by %s templates", channelWord(ch))
				return nil
			case src == "":
				return nil
			case len(src) > maxPart:
				add(f+"."+name, "%d bytes: at most %d", len(src), maxPart)
				return nil
			}
			tt, err := texttemplate.New(name).Option("missingkey=error").Funcs(funcs()).Parse(src)
			if err != nil {
				add(f+"."+name, "%s", cleanErr(err))
				return nil
			}
			for _, ref := range undeclared(tt.Tree, declared) {
				add(f+"."+name, "refers to {{.%s}}, which is not declared in variables", ref)
			}
			return tt
		}
		email := ch == notifierv1.Channel_CHANNEL_EMAIL
		cv.subject = part("subject", v.GetSubject(), email, email)
		cv.text = part("text", v.GetText(), false, email)
		cv.body = part("body", v.GetBody(), !email, !email)
		if email && v.GetHtml() == "" && v.GetText() == "" {
			add(f+".html", "an email needs html, text or both")
		}
		if h := v.GetHtml(); h != "" && !email {
			add(f+".html", "is not used by %s templates", channelWord(ch))
		} else if h != "" && len(h) > maxPart {
			add(f+".html", "%d bytes: at most %d", len(h), maxPart)
		} else if h != "" {
			ht, err := htmltemplate.New("html").Option("missingkey=error").Funcs(funcs()).Parse(h)
			if err != nil {
				add(f+".html", "%s", cleanErr(err))
			} else {
				for _, ref := range undeclared(ht.Tree, declared) {
					add(f+".html", "refers to {{.%s}}, which is not declared in variables", ref)
				}
				cv.html = ht
			}
		}
		c.variants = append(c.variants, cv)
	}
	if len(t.GetVariants()) > 0 && !seen[""] {
		add("variants", "the default variant (locale \"\") is required: it is what customers in other languages get")
	}
	if len(vs) > 0 {
		return nil, vs
	}
	// Render every variant with sample values: catches what parsing cannot
	// (a function given the wrong type, a webhook body that is not JSON).
	for i, v := range c.variants {
		in := Input{Locale: Locale{Tag: v.locale, Zone: time.UTC}, Variables: sampleVariables(t.GetVariables()), Customer: map[string]string{"first_name": "Sample"}, UnsubscribeURL: "https://example.com/unsubscribe"}
		if _, err := c.renderVariant(v, in); err != nil {
			vs = append(vs, Violation{Field: fmt.Sprintf("template.variants[%d]", i), Description: "does not render with sample values: " + err.Error()})
		}
	}
	if len(vs) > 0 {
		return nil, vs
	}
	return c, nil
}

func channelWord(c notifierv1.Channel) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_"))
}

func cleanErr(err error) string {
	return strings.TrimPrefix(err.Error(), "template: ")
}

// undeclared lists the top-level names a template refers to that are
// neither declared nor provided. Inside {{range}} and {{with}} dot is
// something else, so only $-rooted references are checked there.
func undeclared(tree *parse.Tree, declared map[string]string) []string {
	var out []string
	check := func(name string) {
		if _, ok := declared[name]; ok {
			return
		}
		if slices.Contains([]string{VarCustomer, VarUnsubscribeURL, VarDir, VarLang}, name) || slices.Contains(out, name) {
			return
		}
		out = append(out, name)
	}
	var walk func(n parse.Node, dotIsRoot bool)
	walk = func(n parse.Node, dotIsRoot bool) {
		switch x := n.(type) {
		case nil:
		case *parse.ListNode:
			if x == nil {
				return
			}
			for _, c := range x.Nodes {
				walk(c, dotIsRoot)
			}
		case *parse.ActionNode:
			walk(x.Pipe, dotIsRoot)
		case *parse.PipeNode:
			if x == nil {
				return
			}
			for _, c := range x.Cmds {
				walk(c, dotIsRoot)
			}
		case *parse.CommandNode:
			for _, a := range x.Args {
				walk(a, dotIsRoot)
			}
		case *parse.FieldNode:
			if dotIsRoot && len(x.Ident) > 0 {
				check(x.Ident[0])
			}
		case *parse.VariableNode:
			if len(x.Ident) > 1 && x.Ident[0] == "$" {
				check(x.Ident[1])
			}
		case *parse.ChainNode:
			walk(x.Node, dotIsRoot)
		case *parse.IfNode:
			walk(x.Pipe, dotIsRoot)
			walk(x.List, dotIsRoot)
			walk(x.ElseList, dotIsRoot)
		case *parse.RangeNode:
			walk(x.Pipe, dotIsRoot)
			walk(x.List, false)
			walk(x.ElseList, dotIsRoot)
		case *parse.WithNode:
			walk(x.Pipe, dotIsRoot)
			walk(x.List, false)
			walk(x.ElseList, dotIsRoot)
		case *parse.TemplateNode:
			walk(x.Pipe, dotIsRoot)
		}
	}
	if tree != nil {
		walk(tree.Root, true)
	}
	return out
}

func sampleVariables(specs []*notifierv1.VariableSpec) map[string]*notifierv1.TemplateValue {
	out := map[string]*notifierv1.TemplateValue{}
	t := timestamppb.New(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC))
	for _, s := range specs {
		var v *notifierv1.TemplateValue
		switch s.GetType() {
		case TypeInteger:
			v = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Integer{Integer: 3}}
		case TypeMoney:
			v = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Money{Money: &eventsv1.Money{AmountMinor: 4250, Currency: "EUR"}}}
		case TypeTime:
			v = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Time{Time: t}}
		case TypeCoupon:
			v = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Coupon{Coupon: &notifierv1.Coupon{Code: "SAMPLE20", Discount: &notifierv1.Coupon_PercentOff{PercentOff: 20}, ExpiresAt: t}}}
		default:
			v = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Text{Text: "sample"}}
		}
		out[s.GetName()] = v
	}
	return out
}

// Input is what one rendering needs.
type Input struct {
	Locale         Locale
	Variables      map[string]*notifierv1.TemplateValue
	Customer       map[string]string
	UnsubscribeURL string
}

// Message is a rendered message.
type Message struct {
	Locale  string // the variant used ("" = default)
	Subject string
	HTML    string // a whole document with lang and dir
	Text    string
	Body    string
	Dir     string
}

// MissingError is a request that lacks a variable the template declares,
// or gives it with another type.
type MissingError struct {
	Code, Reason string
}

func (e *MissingError) Error() string { return e.Reason }

// Render picks the variant for in.Locale and renders every part, or
// returns an error and nothing.
func (c *Compiled) Render(in Input) (Message, error) {
	for _, s := range c.T.GetVariables() {
		v, ok := in.Variables[s.GetName()]
		if !ok || v.GetValue() == nil {
			if s.GetOptional() {
				continue
			}
			return Message{}, &MissingError{Code: "template_missing_variable", Reason: fmt.Sprintf("template %s v%d needs variable %q (%s), the request has none", c.T.GetKey(), c.T.GetVersion(), s.GetName(), s.GetType())}
		}
		if _, typ := Value(v, in.Locale); typ != s.GetType() {
			return Message{}, &MissingError{Code: "template_variable_type", Reason: fmt.Sprintf("template %s v%d declares variable %q as %s, the request gives %s", c.T.GetKey(), c.T.GetVersion(), s.GetName(), s.GetType(), typ)}
		}
	}
	return c.renderVariant(c.pick(in.Locale.Tag), in)
}

// pick walks the fallback chain: fa-IR, fa, then the default variant.
func (c *Compiled) pick(tag string) variant {
	for _, cand := range Chain(tag) {
		for _, v := range c.variants {
			if v.locale == cand {
				return v
			}
		}
	}
	return c.variants[0]
}

// Chain is the fallback chain of a locale: "zh-Hant-TW" gives zh-hant-tw,
// zh-hant, zh, "".
func Chain(tag string) []string {
	tag = strings.ToLower(strings.ReplaceAll(tag, "_", "-"))
	var out []string
	for tag != "" {
		out = append(out, tag)
		i := strings.LastIndexByte(tag, '-')
		if i < 0 {
			break
		}
		tag = tag[:i]
	}
	return append(out, "")
}

// rtlLanguages are written right to left.
var rtlLanguages = []string{"ar", "fa", "he", "iw", "ur", "ps", "sd", "yi", "ckb", "dv", "ug", "syr"}

// Direction is "rtl" for right-to-left languages, else "ltr".
func Direction(tag string) string {
	base, _, _ := strings.Cut(strings.ToLower(strings.ReplaceAll(tag, "_", "-")), "-")
	if slices.Contains(rtlLanguages, base) {
		return "rtl"
	}
	return "ltr"
}

var layout = htmltemplate.Must(htmltemplate.New("layout").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}" dir="{{.Dir}}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Subject}}</title></head>
<body dir="{{.Dir}}" style="direction: {{.Dir}}; text-align: {{.Align}}">
{{.Body}}
</body>
</html>
`))

func (c *Compiled) renderVariant(v variant, in Input) (Message, error) {
	// The message's language is the customer's (for digits and direction)
	// when the variant matches it, else the variant's own.
	tag := in.Locale.Tag
	if v.locale == "" || !slices.Contains(Chain(tag), v.locale) {
		tag = v.locale
	}
	if tag == "" {
		tag = "en"
	}
	loc := Locale{Tag: tag, Zone: in.Locale.Zone}
	data := map[string]any{}
	for _, s := range c.T.GetVariables() {
		if val, ok := in.Variables[s.GetName()]; ok && val.GetValue() != nil {
			data[s.GetName()], _ = Value(val, loc)
		} else {
			data[s.GetName()] = zeroValue(s.GetType(), loc)
		}
	}
	cust := map[string]string{}
	for _, k := range customerKeys {
		cust[k] = in.Customer[k]
	}
	dir := Direction(tag)
	data[VarCustomer] = cust
	data[VarUnsubscribeURL] = in.UnsubscribeURL
	data[VarDir] = dir
	data[VarLang] = loc.lang()
	m := Message{Locale: v.locale, Dir: dir}
	var err error
	if m.Subject, err = execText(v.subject, data); err != nil {
		return Message{}, fmt.Errorf("subject: %w", err)
	}
	m.Subject = strings.Join(strings.Fields(m.Subject), " ") // no header injection
	if m.Text, err = execText(v.text, data); err != nil {
		return Message{}, fmt.Errorf("text: %w", err)
	}
	if m.Body, err = execText(v.body, data); err != nil {
		return Message{}, fmt.Errorf("body: %w", err)
	}
	if c.T.GetChannel() == notifierv1.Channel_CHANNEL_WEBHOOK && !json.Valid([]byte(m.Body)) {
		return Message{}, fmt.Errorf("body: the rendered webhook body is not valid JSON (use {{json .x}} for values)")
	}
	if v.html != nil {
		var b bytes.Buffer
		if err := v.html.Execute(&b, data); err != nil {
			return Message{}, fmt.Errorf("html: %s", cleanErr(err))
		}
		align := "left"
		if dir == "rtl" {
			align = "right"
		}
		var doc bytes.Buffer
		if err := layout.Execute(&doc, map[string]any{"Lang": loc.lang(), "Dir": dir, "Align": align, "Subject": m.Subject, "Body": htmltemplate.HTML(b.String())}); err != nil {
			return Message{}, fmt.Errorf("html layout: %w", err)
		}
		m.HTML = doc.String()
	}
	return m, nil
}

func execText(t *texttemplate.Template, data any) (string, error) {
	if t == nil {
		return "", nil
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s", cleanErr(err))
	}
	return b.String(), nil
}
