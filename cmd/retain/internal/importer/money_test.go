package importer

import (
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/currency"
)

func TestDecimalRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		minor int64
		code  string
		want  string
	}{
		{123450, "GBP", "1234.50"}, {5, "GBP", "0.05"}, {0, "EUR", "0.00"}, {1500, "JPY", "1500"}, {1, "KWD", "0.001"},
		{100_000_000_000_000, "GBP", "1000000000000.00"},
	} {
		if got := currency.Decimal(tt.minor, tt.code); got != tt.want {
			t.Errorf("currency.Decimal(%d, %s) = %q, want %q", tt.minor, tt.code, got, tt.want)
		}
		if back, err := ParseAmount(tt.want, tt.code); err != nil || back != tt.minor {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d", tt.want, back, err, tt.minor)
		}
	}
}

func TestParseAmount(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		currency string
		want     int64
		errPart  string
	}{
		{"two decimals", "1234.50", "GBP", 123450, ""},
		{"one decimal is padded", "12.5", "GBP", 1250, ""},
		{"whole amount", "12", "USD", 1200, ""},
		{"zero", "0.00", "EUR", 0, ""},
		{"surrounding space", " 7.05 ", "EUR", 705, ""},
		{"leading plus", "+3.10", "EUR", 310, ""},
		{"negative kept for validation to judge", "-3.10", "EUR", -310, ""},
		{"extra trailing zeros lose nothing", "12.500", "GBP", 1250, ""},
		{"zero-decimal currency", "1500", "JPY", 1500, ""},
		{"zero-decimal currency with .0", "1500.0", "JPY", 1500, ""},
		{"three-decimal currency", "1.234", "KWD", 1234, ""},
		{"three-decimal currency padded", "1.2", "BHD", 1200, ""},
		{"largest int64", "92233720368547758.07", "USD", 9223372036854775807, ""},
		{"too many decimals", "12.345", "GBP", 0, `has 3 decimal places; GBP allows at most 2`},
		{"decimals in a zero-decimal currency", "1500.5", "JPY", 0, "JPY allows at most 0"},
		{"overflow", "92233720368547758.08", "USD", 0, "too large"},
		{"thousands separator", "1,234.50", "GBP", 0, "not a decimal amount"},
		{"currency symbol", "£12.50", "GBP", 0, "not a decimal amount"},
		{"exponent", "1e3", "GBP", 0, "not a decimal amount"},
		{"trailing point", "12.", "GBP", 0, "not a decimal amount"},
		{"leading point", ".5", "GBP", 0, "not a decimal amount"},
		{"two points", "1.2.3", "GBP", 0, "not a decimal amount"},
		{"sign only", "-", "GBP", 0, "not a decimal amount"},
		{"empty", "  ", "GBP", 0, "is empty"},
		{"unknown currency", "1", "ABC", 0, "not an ISO 4217"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAmount(tt.in, tt.currency)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("ParseAmount(%q, %s) = %d, %v; want error containing %q", tt.in, tt.currency, got, err, tt.errPart)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseAmount(%q, %s) = %d, %v; want %d", tt.in, tt.currency, got, err, tt.want)
			}
		})
	}
}
