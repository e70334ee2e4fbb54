package render

import (
	"errors"
	"strings"
	"testing"
	"time"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

func emailTemplate() *notifierv1.Template {
	return &notifierv1.Template{
		Key: "winback_90", Channel: notifierv1.Channel_CHANNEL_EMAIL, Version: 1,
		Variables: []*notifierv1.VariableSpec{{Name: "coupon", Type: TypeCoupon}, {Name: "total", Type: TypeMoney, Optional: true}},
		Variants: []*notifierv1.TemplateVariant{
			{Subject: "We miss you, {{.customer.first_name}}", Html: "<p>Hello {{.customer.first_name}}, use {{coupon .coupon}} for {{discount .coupon}} off.</p>", Text: "Use {{.coupon}}"},
			{Locale: "fa", Subject: "دلمان برایتان تنگ شده", Html: "<p>{{.customer.first_name}} عزیز، کد {{.coupon}}</p>"},
		},
	}
}

func couponVar() map[string]*notifierv1.TemplateValue {
	return map[string]*notifierv1.TemplateValue{"coupon": {Value: &notifierv1.TemplateValue_Coupon{Coupon: &notifierv1.Coupon{Code: "BACK20", Discount: &notifierv1.Coupon_PercentOff{PercentOff: 20}}}}}
}

func TestRTLVariantAndFallback(t *testing.T) {
	c, vs := Compile(emailTemplate())
	if vs != nil {
		t.Fatal(vs)
	}
	m, err := c.Render(Input{Locale: Locale{Tag: "fa-IR"}, Variables: couponVar(), Customer: map[string]string{"first_name": "<b>Sara</b>"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Locale != "fa" || m.Dir != "rtl" || !strings.Contains(m.HTML, `dir="rtl"`) || !strings.Contains(m.HTML, `lang="fa"`) {
		t.Fatalf("fa-IR got variant %q dir %q:\n%s", m.Locale, m.Dir, m.HTML)
	}
	if strings.Contains(m.HTML, "<b>Sara") || !strings.Contains(m.HTML, "&lt;b&gt;Sara") {
		t.Fatalf("customer name not escaped:\n%s", m.HTML)
	}
	m, err = c.Render(Input{Locale: Locale{Tag: "de-DE"}, Variables: couponVar(), Customer: map[string]string{"first_name": "Jo"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Locale != "" || m.Dir != "ltr" || m.Subject != "We miss you, Jo" || !strings.Contains(m.HTML, "BACK20 for 20% off") {
		t.Fatalf("default variant: %+v", m)
	}
}

func TestMissingVariableFailsBeforeRendering(t *testing.T) {
	c, vs := Compile(emailTemplate())
	if vs != nil {
		t.Fatal(vs)
	}
	_, err := c.Render(Input{Locale: Locale{Tag: "en"}})
	var me *MissingError
	if !errors.As(err, &me) || me.Code != "template_missing_variable" || !strings.Contains(me.Reason, `"coupon"`) {
		t.Fatalf("err %v", err)
	}
	bad := map[string]*notifierv1.TemplateValue{"coupon": {Value: &notifierv1.TemplateValue_Text{Text: "X"}}}
	if _, err := c.Render(Input{Variables: bad}); !errors.As(err, &me) || me.Code != "template_variable_type" {
		t.Fatalf("err %v", err)
	}
}

func TestCompileNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*notifierv1.Template)
		field string
		want  string
	}{
		{"undeclared variable", func(t *notifierv1.Template) { t.Variants[0].Html = "<p>{{.points}}</p>" }, "template.variants[0].html", "{{.points}}"},
		{"undeclared via $", func(t *notifierv1.Template) { t.Variants[0].Text = "{{with .coupon}}{{$.order}}{{end}}" }, "template.variants[0].text", "{{.order}}"},
		{"parse error", func(t *notifierv1.Template) { t.Variants[1].Subject = "{{.customer.first_name" }, "template.variants[1].subject", "unclosed"},
		{"no default variant", func(t *notifierv1.Template) { t.Variants[0].Locale = "en" }, "template.variants", "default variant"},
		{"bad key", func(t *notifierv1.Template) { t.Key = "Win Back" }, "template.key", "a-z"},
		{"bad variable type", func(t *notifierv1.Template) { t.Variables[0].Type = "float" }, "template.variables[0].type", "float"},
		{"reserved name", func(t *notifierv1.Template) { t.Variables[0].Name = "customer" }, "template.variables[0].name", "provided"},
		{"missing subject", func(t *notifierv1.Template) { t.Variants[0].Subject = "" }, "template.variants[0].subject", "required"},
		{"wrong function type", func(t *notifierv1.Template) { t.Variants[0].Text = "{{money .coupon}}" }, "template.variants[0].text", "sample values"},
		{"bad locale", func(t *notifierv1.Template) { t.Variants[1].Locale = "not a tag!" }, "template.variants[1].locale", "BCP 47"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl := emailTemplate()
			tc.mod(tpl)
			_, vs := Compile(tpl)
			for _, v := range vs {
				if v.Field == tc.field && strings.Contains(v.Description, tc.want) {
					return
				}
			}
			t.Fatalf("violations %+v, want %s containing %q", vs, tc.field, tc.want)
		})
	}
}

func TestWebhookBodyMustBeJSON(t *testing.T) {
	tpl := &notifierv1.Template{Key: "alert", Channel: notifierv1.Channel_CHANNEL_WEBHOOK,
		Variables: []*notifierv1.VariableSpec{{Name: "score", Type: TypeInteger}},
		Variants:  []*notifierv1.TemplateVariant{{Body: `{"score": {{.score}}, "name": {{json .customer.first_name}}}`}}}
	c, vs := Compile(tpl)
	if vs != nil {
		t.Fatal(vs)
	}
	m, err := c.Render(Input{Tenant: "shop", Variables: map[string]*notifierv1.TemplateValue{"score": {Value: &notifierv1.TemplateValue_Integer{Integer: 3}}}, Customer: map[string]string{"first_name": `A "quoted" name`}})
	if err != nil || m.Body != `{"tenant_id": "shop", "score": 3, "name": "A \"quoted\" name"}` {
		t.Fatalf("%q %v", m.Body, err)
	}
	for body, want := range map[string]string{
		`{"name": {{.customer.first_name}}}`: "not valid JSON",
		`[{{.score}}]`:                       "JSON object",
		`{"tenant_id": "other"}`:             "tenant_id",
		`{"a": 1, "tenant\u005fid": "x"}`:    "tenant_id",
		`{"TENANT_ID": "other"}`:             `"TENANT_ID" member`,
		`{"a": 1, "Tenant\u005FId": "x"}`:    `"Tenant_Id" member`,
	} {
		tpl.Variants[0].Body = body
		if _, vs := Compile(tpl); len(vs) == 0 || vs[0].Field != "template.variants[0].body" || !strings.Contains(vs[0].Description, want) {
			t.Errorf("%s: violations %+v, want %q", body, vs, want)
		}
	}
	// A customer's name breaking out of an unquoted string cannot name
	// another shop either: the send fails instead.
	tpl.Variants[0].Body = `{"name": "{{.customer.first_name}}"}`
	if c, vs = Compile(tpl); vs != nil {
		t.Fatal(vs)
	}
	if m, err := c.Render(Input{Tenant: "shop", Variables: map[string]*notifierv1.TemplateValue{"score": {Value: &notifierv1.TemplateValue_Integer{Integer: 3}}}, Customer: map[string]string{"first_name": `x", "Tenant_Id": "victim`}}); err == nil || !strings.Contains(err.Error(), `"Tenant_Id" member`) {
		t.Fatalf("%q %v, want the Tenant_Id member refused", m.Body, err)
	}
	// An empty object gets the tenant alone.
	tpl.Variants[0].Body = ` {} `
	c, vs = Compile(tpl)
	if vs != nil {
		t.Fatal(vs)
	}
	if m, err := c.Render(Input{Tenant: "shop", Variables: map[string]*notifierv1.TemplateValue{"score": {Value: &notifierv1.TemplateValue_Integer{Integer: 3}}}}); err != nil || m.Body != ` {"tenant_id": "shop"} ` {
		t.Fatalf("%q %v", m.Body, err)
	}
}

func TestLocaleFormatting(t *testing.T) {
	tehran, _ := time.LoadLocation("Asia/Tehran")
	at := time.Date(2026, 3, 20, 22, 30, 0, 0, time.UTC)
	tests := []struct {
		loc        Locale
		money      string
		date, full string
	}{
		{Locale{Tag: "en-GB"}, "€1,234.50", "20 March 2026", "20 March 2026 22:30 UTC"},
		{Locale{Tag: "fa-IR", Zone: tehran}, "۱٬۲۳۴٫۵۰\u00a0€", "۲۰۲۶-۰۳-۲۱", "۲۰۲۶-۰۳-۲۱ ۰۲:۰۰ +0330"},
		{Locale{Tag: "de"}, "1.234,50\u00a0€", "2026-03-20", "2026-03-20 22:30 UTC"},
	}
	for _, tc := range tests {
		m := Money{Minor: 123450, Currency: "EUR", loc: tc.loc}
		tm := Time{T: at, loc: tc.loc}
		if m.String() != tc.money || tm.Date() != tc.date || tm.DateTime() != tc.full {
			t.Errorf("%s: %q %q %q", tc.loc.Tag, m.String(), tm.Date(), tm.DateTime())
		}
	}
	if got := (Money{Minor: 500, Currency: "JPY", loc: Locale{Tag: "en"}}).String(); got != "¥500" {
		t.Errorf("JPY %q", got)
	}
	if got := (Money{Minor: -5, Currency: "EUR", loc: Locale{Tag: "en"}}).String(); got != "€-0.05" {
		t.Errorf("negative %q", got)
	}
}

func TestChainAndDirection(t *testing.T) {
	if got := strings.Join(Chain("fa-IR"), ","); got != "fa-ir,fa," {
		t.Fatal(got)
	}
	for tag, want := range map[string]string{"ar": "rtl", "he-IL": "rtl", "ur": "rtl", "fa_IR": "rtl", "en": "ltr", "": "ltr"} {
		if Direction(tag) != want {
			t.Errorf("%q: %s", tag, Direction(tag))
		}
	}
}
