package importer

import (
	"fmt"
	"math"
	"strings"

	"github.com/retainhq/retain/platform/currency"
)

// ParseAmount parses a decimal amount such as "1234.50" into minor units of
// currency (123450 for GBP) exactly, without going through floating point.
//
// Accepted: an optional sign, digits, and an optional fraction. The fraction
// may not have more significant decimals than the currency's minor unit
// ("12.345" is rejected for GBP, "1.5" for JPY); extra trailing zeros
// ("12.500") are accepted because they lose nothing. Thousands separators,
// currency symbols and exponents are rejected rather than guessed at: "1,234"
// means 1234 in one country and 1.234 in another.
func ParseAmount(s, code string) (int64, error) {
	exp, ok := currency.Exponent(code)
	if !ok {
		return 0, fmt.Errorf("%q is not an ISO 4217 currency code", code)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("is empty")
	}
	neg := false
	digits := s
	switch digits[0] {
	case '-':
		neg = true
		digits = digits[1:]
	case '+':
		digits = digits[1:]
	}
	whole, frac, hasPoint := strings.Cut(digits, ".")
	if whole == "" || (hasPoint && frac == "") || !allDigits(whole) || !allDigits(frac) {
		return 0, fmt.Errorf("%s is not a decimal amount such as \"1234.50\" (digits, an optional '.', no thousands separators or symbols)", quoteValue(s))
	}
	significant := strings.TrimRight(frac, "0")
	if len(significant) > exp {
		return 0, fmt.Errorf("%s has %d decimal places; %s allows at most %d", quoteValue(s), len(frac), code, exp)
	}
	// Pad the fraction to exactly exp digits: "12.5" GBP -> "12" + "50".
	frac = significant + strings.Repeat("0", exp-len(significant))
	var v int64
	for _, c := range []byte(whole + frac) {
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, fmt.Errorf("%s is too large", quoteValue(s))
		}
		v = v*10 + d
	}
	if neg {
		v = -v
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func quoteValue(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
