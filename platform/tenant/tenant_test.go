package tenant

import (
	"errors"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	cases := []struct {
		id   string
		want bool
	}{
		{"demo", true},
		{"a", true},
		{"shop-1_eu", true},
		{"0shop", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-shop", false},
		{"_shop", false},
		{"Shop", false},
		{"shop.eu", false},
		{"shop eu", false},
		{"shop/1", false},
		{"shop*", false},
		{"shop>", false},
		{"ümlaut", false},
	}
	for _, c := range cases {
		if got := Valid(c.id); got != c.want {
			t.Errorf("Valid(%q) = %v, want %v", c.id, got, c.want)
		}
		err := Validate(c.id)
		if (err == nil) != c.want {
			t.Errorf("Validate(%q) = %v", c.id, err)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), Pattern)) {
			t.Errorf("Validate(%q) error %q should wrap ErrInvalid and name the pattern", c.id, err)
		}
	}
}
