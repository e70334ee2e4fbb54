// Package currency knows the ISO 4217 currencies an order can be priced in
// and the decimal places of their minor units, for every service and tool
// that turns minor units into amounts or back.
package currency

import (
	"fmt"
	"strconv"
	"strings"
)

// iso4217 maps every active ISO 4217 alphabetic currency code that has defined
// minor units to its minor-unit exponent (the number of decimal places of its
// minor unit: 2 for GBP pence, 0 for JPY, 3 for KWD fils).
//
// Source: the ISO 4217 maintenance agency's List One (current currency and
// funds). Codes with "N.A." minor units (precious metals XAU XAG XPD XPT, bond
// market units XBA-XBD, XDR, XSU, XUA, the testing code XTS and "no currency"
// XXX) are deliberately left out: an order cannot be priced in them. ANG, SLL
// and ZWL are kept while shops still export history in them after their 2023-25
// replacements (XCG, SLE, ZWG) were introduced.
//
// The table is a read-only value: nothing writes to it after initialisation.
var iso4217 = map[string]int{
	"AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2,
	"AWG": 2, "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0,
	"BMD": 2, "BND": 2, "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2,
	"BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4,
	"CLP": 0, "CNY": 2, "COP": 2, "COU": 2, "CRC": 2, "CUC": 2, "CUP": 2, "CVE": 2,
	"CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2,
	"EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2,
	"GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2,
	"ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0,
	"KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2,
	"KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2,
	"MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
	"MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2,
	"NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2,
	"PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2,
	"RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2,
	"SLE": 2, "SLL": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2,
	"SZL": 2, "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2,
	"TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2,
	"UYW": 4, "UZS": 2, "VED": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0,
	"XCD": 2, "XCG": 2, "XOF": 0, "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
	"ZWL": 2,
}

// Known reports whether code is a known ISO 4217 alphabetic code. The
// comparison is exact: callers upper-case codes first where that is allowed.
func Known(code string) bool {
	_, ok := iso4217[code]
	return ok
}

// Check says what is wrong with code as a currency, or nil: an ISO 4217
// alphabetic code, upper case. Every service refuses the same codes in the
// same words, and a lower-case code gets its upper-case form as the hint.
func Check(code string) error {
	switch {
	case Known(code):
		return nil
	case Known(strings.ToUpper(code)):
		return fmt.Errorf("%q must be upper case: %q", code, strings.ToUpper(code))
	}
	return fmt.Errorf("%q is not an ISO 4217 currency code (like EUR)", code)
}

// Decimal writes minor units of code as a plain decimal amount in major
// units, exactly (no floats): 123450 GBP is "1234.50", 1500 JPY "1500",
// -5 EUR "-0.05". An unknown code is taken to have two decimal places.
func Decimal(minor int64, code string) string {
	exp, ok := Exponent(code)
	if !ok {
		exp = 2
	}
	sign, u := "", uint64(minor)
	if minor < 0 {
		sign, u = "-", -u // the magnitude, even of math.MinInt64
	}
	s := strconv.FormatUint(u, 10)
	if exp == 0 {
		return sign + s
	}
	if len(s) <= exp {
		s = strings.Repeat("0", exp-len(s)+1) + s
	}
	return sign + s[:len(s)-exp] + "." + s[len(s)-exp:]
}

// Exponent returns the number of decimal places of code's minor unit (2 for
// GBP, 0 for JPY, 3 for KWD) and whether code is known.
func Exponent(code string) (int, bool) {
	e, ok := iso4217[code]
	return e, ok
}
