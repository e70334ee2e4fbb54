package render

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/currency"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"golang.org/x/text/number"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// Locale is a customer's language and time zone: how money and dates are
// written to them.
type Locale struct {
	Tag  string
	Zone *time.Location
}

func (l Locale) printer() *message.Printer {
	tag, err := language.Parse(l.Tag)
	if err != nil {
		return message.NewPrinter(language.English)
	}
	// Regional tags (fa-IR) keep Latin digits in CLDR data where the base
	// language has native ones; customers expect their language's digits.
	if base, conf := tag.Base(); conf != language.No {
		tag = language.Make(base.String())
	}
	return message.NewPrinter(tag)
}

func (l Locale) lang() string {
	tag, err := language.Parse(l.Tag)
	if err != nil {
		return "en"
	}
	base, _ := tag.Base()
	return base.String()
}

func (l Locale) zone() *time.Location {
	if l.Zone == nil {
		return time.UTC
	}
	return l.Zone
}

// Money is an amount in minor units, written in the customer's locale.
type Money struct {
	Minor    int64
	Currency string
	loc      Locale
}

// String writes the amount exactly (no floats) with the locale's digits,
// separators and the currency's symbol.
func (m Money) String() string {
	p := m.loc.printer()
	unit, err := currency.ParseISO(m.Currency)
	scale := 2
	symbol := m.Currency
	if err == nil {
		scale, _ = currency.Standard.Rounding(unit)
		symbol = p.Sprint(currency.Symbol(unit))
	}
	neg := m.Minor < 0
	v := m.Minor
	if neg {
		v = -v
	}
	pow := int64(1)
	for range scale {
		pow *= 10
	}
	s := p.Sprint(number.Decimal(v / pow))
	if scale > 0 {
		frac := fmt.Sprintf("%0*d", scale, v%pow)
		sep := []rune(p.Sprint(number.Decimal(1.5)))[1]
		zero, _ := utf8.DecodeRuneInString(p.Sprint(number.Decimal(0)))
		var b strings.Builder
		b.WriteRune(sep)
		for _, r := range frac {
			b.WriteRune(zero + (r - '0'))
		}
		s += b.String()
	}
	if neg {
		s = "-" + s
	}
	if m.loc.lang() == "en" {
		return symbol + s
	}
	return s + "\u00a0" + symbol
}

// Time is an instant, written in the customer's time zone.
type Time struct {
	T   time.Time
	loc Locale
}

// String is the date, as {{date .x}} writes it.
func (t Time) String() string { return t.Date() }

// Date writes the local date: "2 January 2026" in English, the numeric
// ISO date with the locale's digits elsewhere (month names in every
// language are out of scope of a small safe function set).
func (t Time) Date() string {
	l := t.T.In(t.loc.zone())
	if t.loc.lang() == "en" {
		return l.Format("2 January 2006")
	}
	return t.digits(l.Format("2006-01-02"))
}

// DateTime adds the local time of day and the zone abbreviation.
func (t Time) DateTime() string {
	l := t.T.In(t.loc.zone())
	if t.loc.lang() == "en" {
		return l.Format("2 January 2006 15:04 MST")
	}
	return t.digits(l.Format("2006-01-02 15:04")) + " " + l.Format("MST")
}

func (t Time) digits(s string) string {
	zero, _ := utf8.DecodeRuneInString(t.loc.printer().Sprint(number.Decimal(0)))
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return zero + (r - '0')
		}
		return r
	}, s)
}

// Coupon is a discount code issued to the customer.
type Coupon struct {
	Code       string
	PercentOff int32
	AmountOff  *Money
	Expires    *Time
}

// String is the code, what {{.coupon}} prints.
func (c Coupon) String() string { return c.Code }

// Discount writes the discount: "20%" or an amount.
func (c Coupon) Discount() string {
	if c.AmountOff != nil {
		return c.AmountOff.String()
	}
	return strconv.Itoa(int(c.PercentOff)) + "%"
}

// Value converts a request's template value for rendering in loc; the type
// name is what a VariableSpec declares.
func Value(v *notifierv1.TemplateValue, loc Locale) (any, string) {
	switch x := v.GetValue().(type) {
	case *notifierv1.TemplateValue_Text:
		return x.Text, TypeText
	case *notifierv1.TemplateValue_Integer:
		return x.Integer, TypeInteger
	case *notifierv1.TemplateValue_Money:
		return Money{Minor: x.Money.GetAmountMinor(), Currency: x.Money.GetCurrency(), loc: loc}, TypeMoney
	case *notifierv1.TemplateValue_Time:
		return Time{T: x.Time.AsTime(), loc: loc}, TypeTime
	case *notifierv1.TemplateValue_Coupon:
		c := Coupon{Code: x.Coupon.GetCode(), PercentOff: x.Coupon.GetPercentOff()}
		if a := x.Coupon.GetAmountOff(); a != nil {
			c.AmountOff = &Money{Minor: a.GetAmountMinor(), Currency: a.GetCurrency(), loc: loc}
		}
		if e := x.Coupon.GetExpiresAt(); e != nil {
			c.Expires = &Time{T: e.AsTime(), loc: loc}
		}
		return c, TypeCoupon
	}
	return nil, ""
}

// Variable types a template may declare.
const (
	TypeText    = "text"
	TypeInteger = "integer"
	TypeMoney   = "money"
	TypeTime    = "time"
	TypeCoupon  = "coupon"
)

// zeroValue is what an optional variable absent from a request renders as.
func zeroValue(typ string, loc Locale) any {
	switch typ {
	case TypeMoney:
		return Money{loc: loc}
	case TypeCoupon:
		return Coupon{}
	case TypeInteger:
		return int64(0)
	}
	return ""
}
