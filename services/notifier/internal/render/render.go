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
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	texttemplate "text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"
	"google.golang.org/protobuf/proto"
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

// Limits of a template's source. Together with what a template may say
// (checkTree: no loops, no template calls, no functions that build strings
// of any length) they make a rendering one pass over at most maxSource
// bytes.
const (
	maxPart   = 256 << 10 // one part (subject, html, ...)
	maxSource = 1 << 20   // every part of every variant together
	// maxNesting bounds how deep {{if}}, {{with}} (each {{else}} one
	// level more) and parentheses nest.
	maxNesting = 32
	// maxValue bounds one variable's value in a request: comparing or
	// slicing a value costs in proportion to its size, as often as the
	// template says.
	maxValue = 64 << 10
	// maxFuncOutput bounds what the functions of one rendering produce,
	// written or kept in variables: json's result grows with its input,
	// and a template may call it many times.
	maxFuncOutput = 1 << 20
)

// What one part of a message may render to (the README's Templates).
const (
	maxSubject   = 1000      // bytes of an email subject
	maxEmailPart = 256 << 10 // bytes of an email's html fragment or text
	maxSMS       = 1600      // characters of an SMS: ten 160-character segments
	maxWebhook   = 64 << 10  // bytes of a webhook body
)

// limit is what one part may render to, and how it is said in errors.
type limit struct {
	max   int
	runes bool // count characters, not bytes
	what  string
}

var (
	subjectLimit = limit{maxSubject, false, "1,000 bytes, the most an email subject may hold"}
	emailLimit   = limit{maxEmailPart, false, "256 KB, the most an email part may hold"}
	smsLimit     = limit{maxSMS, true, "1,600 characters, the most an SMS may hold (ten segments)"}
	webhookLimit = limit{maxWebhook, false, "64 KB, the most a webhook body may hold"}
)

// limitError is a rendering stopped at a limit.
type limitError struct{ Reason string }

func (e *limitError) Error() string { return e.Reason }

// limitWriter holds what a part renders to and fails the rendering at
// the part's limit, so a template cannot build a message of any size.
type limitWriter struct {
	b   strings.Builder
	n   int
	lim limit
}

func (w *limitWriter) Write(p []byte) (int, error) {
	n := len(p)
	if w.lim.runes {
		// The first byte of each character counts, so a character split
		// between two writes counts once.
		n = 0
		for _, c := range p {
			if utf8.RuneStart(c) {
				n++
			}
		}
	}
	if w.n+n > w.lim.max {
		return 0, &limitError{Reason: "renders to more than " + w.lim.what}
	}
	w.n += n
	return w.b.Write(p)
}

// funcs are the functions templates may call besides allowedBuiltins; c
// meters what they produce in a rendering.
func (c *Compiled) funcs() map[string]any {
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
			if err != nil {
				return "", err
			}
			return c.spend("json", string(b))
		},
	}
}

// allowedBuiltins are the builtin functions a template may call: each
// works in proportion to what it is given. The others build strings of
// any length from few bytes of source (print, printf, println; html, js,
// urlquery, whose escaping html parts get by themselves) or call what
// they are given (call).
var allowedBuiltins = []string{"and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "slice"}

// spend counts a function's result against the rendering's budget.
func (c *Compiled) spend(fn, s string) (string, error) {
	c.funcOut += len(s)
	if c.funcOut > maxFuncOutput {
		return "", &limitError{Reason: fmt.Sprintf("%s: the template's functions produced more than 1 MB in one rendering", fn)}
	}
	return s, nil
}

// Compiled is a template ready to render. It renders one message at a
// time (its functions meter the rendering in progress).
type Compiled struct {
	T        *notifierv1.Template
	variants []variant

	mu      sync.Mutex
	funcOut int // bytes the functions produced in this rendering
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
	fns := c.funcs()
	if len(t.GetVariants()) == 0 {
		add("variants", "at least the default variant (locale \"\") is required")
	}
	size := 0
	for _, v := range t.GetVariants() {
		size += len(v.GetSubject()) + len(v.GetHtml()) + len(v.GetText()) + len(v.GetBody())
	}
	if size > maxSource {
		add("variants", "%d bytes of template source in all variants: at most %d", size, maxSource)
	}
	seen := map[string]bool{}
	for i, v := range t.GetVariants() {
		f := fmt.Sprintf("variants[%d]", i)
		loc := strings.ToLower(v.GetLocale())
		if loc != "" {
			if err := CheckLocale(v.GetLocale()); err != nil {
				add(f+".locale", "%s", err)
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
			tt, err := texttemplate.New(name).Option("missingkey=error").Funcs(fns).Parse(src)
			if err != nil {
				add(f+"."+name, "%s", cleanErr(err))
				return nil
			}
			if p := checkTree(tt.Tree, len(tt.Templates()), fns); p != "" {
				add(f+"."+name, "%s", p)
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
			ht, err := htmltemplate.New("html").Option("missingkey=error").Funcs(fns).Parse(h)
			if err != nil {
				add(f+".html", "%s", cleanErr(err))
			} else if p := checkTree(ht.Tree, len(ht.Templates()), fns); p != "" {
				add(f+".html", "%s", p)
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
			field := fmt.Sprintf("template.variants[%d]", i)
			var pe *partError
			if errors.As(err, &pe) {
				field += "." + pe.part
				err = pe.err
			}
			vs = append(vs, Violation{Field: field, Description: "does not render with sample values: " + err.Error()})
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

// checkTree says what a parsed part may not do, or "": loop ({{range}}),
// define or call templates ({{define}}, {{template}}, {{block}}), call a
// function that builds strings of any length, or nest deeper than
// maxNesting. What remains runs each action once. templates is how many
// templates the part's source defines, itself included; fns are the
// notifier's functions.
func checkTree(tree *parse.Tree, templates int, fns map[string]any) string {
	const noTemplates = "{{define}}, {{template}} and {{block}} are not supported: a template is one message"
	if templates > 1 {
		return noTemplates
	}
	var problem string
	var walk func(n parse.Node, depth int)
	walk = func(n parse.Node, depth int) {
		if problem != "" {
			return
		}
		if depth > maxNesting {
			problem = fmt.Sprintf("nests {{if}}, {{with}}, {{else}} and parentheses more than %d levels deep", maxNesting)
			return
		}
		switch x := n.(type) {
		case *parse.ListNode:
			if x == nil {
				return
			}
			for _, c := range x.Nodes {
				walk(c, depth)
			}
		case *parse.ActionNode:
			walk(x.Pipe, depth)
		case *parse.PipeNode:
			if x == nil {
				return
			}
			for _, c := range x.Cmds {
				walk(c, depth)
			}
		case *parse.CommandNode:
			for _, a := range x.Args {
				if _, paren := a.(*parse.PipeNode); paren {
					walk(a, depth+1)
				} else {
					walk(a, depth)
				}
			}
		case *parse.ChainNode:
			walk(x.Node, depth)
		case *parse.IdentifierNode:
			if _, ok := fns[x.Ident]; !ok && !slices.Contains(allowedBuiltins, x.Ident) {
				problem = fmt.Sprintf("calls %s, which templates may not use; functions: %s, %s",
					x.Ident, strings.Join(slices.Sorted(maps.Keys(fns)), ", "), strings.Join(allowedBuiltins, ", "))
			}
		case *parse.IfNode:
			walk(x.Pipe, depth)
			walk(x.List, depth+1)
			walk(x.ElseList, depth+1)
		case *parse.WithNode:
			walk(x.Pipe, depth)
			walk(x.List, depth+1)
			walk(x.ElseList, depth+1)
		case *parse.RangeNode:
			problem = "{{range}} is not supported: no template value is a list"
		case *parse.TemplateNode:
			problem = noTemplates
		}
	}
	walk(tree.Root, 0)
	return problem
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
	// Tenant is the shop, which a webhook body names in tenant_id.
	Tenant         string
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
// gives it with another type, or gives one too long.
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
		if n := proto.Size(v); n > maxValue {
			return Message{}, &MissingError{Code: "template_variable_too_long", Reason: fmt.Sprintf("template %s v%d: the request's variable %q is %d bytes: at most %d", c.T.GetKey(), c.T.GetVersion(), s.GetName(), n, maxValue)}
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

// CheckLocale reports a locale that is not a BCP 47 language tag, as a
// template's variants and a preview's request give them.
func CheckLocale(tag string) error {
	if _, err := language.Parse(strings.ToLower(tag)); err != nil {
		// A tag is a few bytes; a long one is not worth quoting back.
		if len(tag) > 64 {
			return fmt.Errorf("%d bytes: not a BCP 47 language tag (like fa-IR, ar, en)", len(tag))
		}
		return fmt.Errorf("%q is not a BCP 47 language tag (like fa-IR, ar, en)", tag)
	}
	return nil
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

// partError is a part of a message that did not render.
type partError struct {
	part string
	err  error
}

func (e *partError) Error() string { return e.part + ": " + e.err.Error() }
func (e *partError) Unwrap() error { return e.err }

func (c *Compiled) renderVariant(v variant, in Input) (Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.funcOut = 0
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
	bodyLimit := smsLimit
	if c.T.GetChannel() == notifierv1.Channel_CHANNEL_WEBHOOK {
		bodyLimit = webhookLimit
	}
	var err error
	if m.Subject, err = execute(v.subject, data, subjectLimit); err != nil {
		return Message{}, &partError{"subject", err}
	}
	m.Subject = strings.Join(strings.Fields(m.Subject), " ") // no header injection
	if m.Text, err = execute(v.text, data, emailLimit); err != nil {
		return Message{}, &partError{"text", err}
	}
	if m.Body, err = execute(v.body, data, bodyLimit); err != nil {
		return Message{}, &partError{"body", err}
	}
	if c.T.GetChannel() == notifierv1.Channel_CHANNEL_WEBHOOK {
		if m.Body, err = withTenant(m.Body, in.Tenant); err != nil {
			return Message{}, &partError{"body", err}
		}
	}
	if v.html != nil {
		body, err := execute(v.html, data, emailLimit)
		if err != nil {
			return Message{}, &partError{"html", err}
		}
		align := "left"
		if dir == "rtl" {
			align = "right"
		}
		var doc bytes.Buffer
		if err := layout.Execute(&doc, map[string]any{"Lang": loc.lang(), "Dir": dir, "Align": align, "Subject": m.Subject, "Body": htmltemplate.HTML(body)}); err != nil {
			return Message{}, fmt.Errorf("html layout: %w", err)
		}
		m.HTML = doc.String()
	}
	return m, nil
}

// withTenant adds "tenant_id": tenant as the first member of a webhook
// body. One endpoint receives every shop's webhooks and the signature
// covers the body, so a receiver can trust the shop the body names; the
// body must therefore be an object that does not name one itself, in any
// letter case: Go's encoding/json matches object keys to struct fields
// case-insensitively (the last match wins), so a receiver decoding into a
// TenantID field would read a shop's "TENANT_ID" (or a customer's name
// breaking out of an unquoted string) over the notifier's own.
func withTenant(body, tenant string) (string, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &members); err != nil || members == nil {
		// Parsed once on the send path; which message fits only matters here.
		if !json.Valid([]byte(body)) {
			return "", errors.New("the rendered webhook body is not valid JSON (use {{json .x}} for values)")
		}
		return "", errors.New("the rendered webhook body is not a JSON object ({...})")
	}
	for k := range members {
		if strings.EqualFold(k, "tenant_id") {
			return "", fmt.Errorf("the rendered webhook body has a %q member: the notifier adds the shop's own tenant_id", k)
		}
	}
	id, _ := json.Marshal(tenant) // a string always marshals
	member := `"tenant_id": ` + string(id)
	if len(members) > 0 {
		member += ", "
	}
	i := strings.IndexByte(body, '{') + 1
	return body[:i] + member + body[i:], nil
}

// execute renders one part within lim.
func execute[T interface {
	*texttemplate.Template | *htmltemplate.Template
	Execute(io.Writer, any) error
}](t T, data any, lim limit) (string, error) {
	if t == nil {
		return "", nil
	}
	w := &limitWriter{lim: lim}
	if err := t.Execute(w, data); err != nil {
		var le *limitError
		if errors.As(err, &le) {
			return "", le
		}
		return "", errors.New(cleanErr(err))
	}
	return w.b.String(), nil
}
