package currency

import (
	"fmt"
	"testing"
)

func TestExponent(t *testing.T) {
	tests := []struct {
		code  string
		exp   int
		known bool
	}{
		{"GBP", 2, true},
		{"USD", 2, true},
		{"EUR", 2, true},
		{"JPY", 0, true},
		{"KRW", 0, true},
		{"KWD", 3, true},
		{"BHD", 3, true},
		{"CLF", 4, true},
		{"gbp", 0, false},
		{"XXX", 0, false},
		{"XAU", 0, false},
		{"ABC", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			exp, ok := Exponent(tt.code)
			if ok != tt.known || exp != tt.exp {
				t.Errorf("Exponent(%q) = %d, %v; want %d, %v", tt.code, exp, ok, tt.exp, tt.known)
			}
			if Known(tt.code) != tt.known {
				t.Errorf("Known(%q) = %v", tt.code, !tt.known)
			}
		})
	}
}

func TestCurrencyTableIsWellFormed(t *testing.T) {
	if len(iso4217) < 150 {
		t.Errorf("only %d currencies; the ISO 4217 list has about 170", len(iso4217))
	}
	for code, exp := range iso4217 {
		if len(code) != 3 || code[0] < 'A' || code[0] > 'Z' || code[1] < 'A' || code[1] > 'Z' || code[2] < 'A' || code[2] > 'Z' {
			t.Errorf("%q is not three upper-case letters", code)
		}
		if exp < 0 || exp > 4 {
			t.Errorf("%s has exponent %d", code, exp)
		}
	}
}

func TestCheck(t *testing.T) {
	for code, want := range map[string]string{
		"EUR":  "",
		"JPY":  "",
		"eur":  `"eur" must be upper case: "EUR"`,
		"XYZ":  `"XYZ" is not an ISO 4217 currency code (like EUR)`,
		"EURO": `"EURO" is not an ISO 4217 currency code (like EUR)`,
		"":     `"" is not an ISO 4217 currency code (like EUR)`,
	} {
		err := Check(code)
		if got := fmt.Sprint(err); (want == "" && err != nil) || (want != "" && got != want) {
			t.Errorf("Check(%q) = %v, want %q", code, err, want)
		}
	}
}

func TestDecimal(t *testing.T) {
	for _, tt := range []struct {
		minor int64
		code  string
		want  string
	}{
		{123450, "GBP", "1234.50"}, {5, "GBP", "0.05"}, {0, "EUR", "0.00"}, {1500, "JPY", "1500"}, {1, "KWD", "0.001"},
		{-5, "EUR", "-0.05"}, {-123450, "GBP", "-1234.50"}, {100_000_000_000_000, "GBP", "1000000000000.00"},
		{-9223372036854775808, "EUR", "-92233720368547758.08"}, {42, "XYZ", "0.42"},
	} {
		if got := Decimal(tt.minor, tt.code); got != tt.want {
			t.Errorf("Decimal(%d, %s) = %q, want %q", tt.minor, tt.code, got, tt.want)
		}
	}
}
