package domain

import (
	"crypto/rand"
	"fmt"
	"strings"
)

// CouponAlphabet has no look-alike characters (no 0/O, 1/I/L, 2/Z, 5/S,
// 8/B), so a code read over the phone or typed from a screenshot is
// typed right.
const CouponAlphabet = "ACDEFGHJKMNPQRTUVWXY34679"

// couponChars is the random part's length: 25^10 ~ 2^46 codes, so
// guessing a valid one is hopeless and collisions are rare (the store
// retries them anyway).
const couponChars = 10

// NewCouponCode returns PREFIX-XXXXX-XXXXX with the random part from
// crypto/rand.
func NewCouponCode(prefix string) (string, error) {
	var b strings.Builder
	if prefix != "" {
		b.WriteString(prefix)
		b.WriteByte('-')
	}
	buf := make([]byte, 1)
	// 250 = 10 x 25: rejecting bytes above it keeps every character equally
	// likely.
	for n := 0; n < couponChars; {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("coupon code: %w", err)
		}
		if buf[0] >= 250 {
			continue
		}
		if n == couponChars/2 {
			b.WriteByte('-')
		}
		b.WriteByte(CouponAlphabet[int(buf[0])%len(CouponAlphabet)])
		n++
	}
	return b.String(), nil
}

// NormalizeCoupon is how codes from orders are compared: upper case,
// without spaces.
func NormalizeCoupon(code string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(code), " ", ""))
}
