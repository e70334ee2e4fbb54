package retention

import (
	"testing"
	"time"
)

// at parses "2006-01-02" or "2006-01-02T15:04:05Z" as UTC.
func at(t testing.TB, s string) time.Time {
	t.Helper()
	for _, layout := range []string{time.DateOnly, time.RFC3339Nano} {
		if v, err := time.Parse(layout, s); err == nil {
			return v.UTC()
		}
	}
	t.Fatalf("bad test instant %q", s)
	return time.Time{}
}

func period(t testing.TB, from, to string) Period {
	t.Helper()
	p, err := NewPeriod(at(t, from), at(t, to))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wantPercent asserts a defined rate with an exact expected value.
func wantPercent(t *testing.T, name string, r Ratio, want float64) {
	t.Helper()
	got, ok := r.Percent()
	if !ok {
		t.Fatalf("%s = undefined (%d/%d), want %v%%", name, r.Num, r.Den, want)
	}
	if got != want {
		t.Fatalf("%s = %v%% (%d/%d), want %v%%", name, got, r.Num, r.Den, want)
	}
}

func wantUndefined(t *testing.T, name string, r Ratio) {
	t.Helper()
	if got, ok := r.Percent(); ok {
		t.Fatalf("%s = %v%% (%d/%d), want undefined", name, got, r.Num, r.Den)
	}
}

// customers builds n activities named prefix-0.. with the given order
// instants each.
func customers(prefix string, n int, orders ...time.Time) []Activity {
	acts := make([]Activity, n)
	for i := range acts {
		acts[i] = NewActivity(CustomerID(prefix+"-"+itoa(i)), orders)
	}
	return acts
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
