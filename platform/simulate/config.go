package simulate

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"time"

	"github.com/retainhq/retain/platform/tenant"
)

// Config describes the shop to simulate. Start from DefaultConfig: a literal
// Config leaves the model parameters at zero, which Validate rejects.
type Config struct {
	// Customers is the number of customers acquired over the window.
	Customers int
	// Days is the length of the window; every event happens in
	// [Start, Start+Days).
	Days int
	// Start of the window. Truncated to the millisecond, the resolution of the
	// generated timestamps.
	Start time.Time
	// Seed makes the run reproducible: same Config, same bytes.
	Seed int64
	// Tenant is informational: events never carry it, ingest takes the tenant
	// from the caller's token. Checked against the tenant id syntax when set.
	Tenant string
	// Currency of every amount, ISO-4217 (upper case). Amounts are in its minor
	// units (two decimals for EUR, none for JPY, three for KWD).
	Currency string

	// AcquisitionDecay shapes when customers arrive: 0 spreads them uniformly
	// over the window, k > 0 front-loads them with density proportional to
	// exp(-k * t/window) (k = 1: about 2.7 times more sign-ups on the first day
	// than on the last), which leaves older cohorts to measure retention on.
	AcquisitionDecay float64

	// PurchaseShape (r) and PurchaseScale (alpha, in weeks) give the
	// heterogeneity of purchase rates: lambda ~ Gamma(shape r, rate alpha)
	// purchases per week. Defaults are the CDNOW fit (r=0.24, alpha=4.4).
	PurchaseShape float64
	PurchaseScale float64
	// RateScale multiplies every customer's purchase rate, for shops whose
	// customers buy more often than CDNOW's (1 keeps the fit; see
	// HighVolumeConfig for load tests).
	RateScale float64
	// DropoutA and DropoutB give the dropout probability after each repeat
	// purchase, p ~ Beta(a, b). Defaults are the CDNOW fit (a=0.79, b=2.43).
	DropoutA float64
	DropoutB float64

	// OrderValueMedian is the median order value in major units of Currency
	// (45 means 45.00 EUR). Catalog prices scale with it.
	OrderValueMedian float64
	// OrderValueSpread is the standard deviation of the log of each customer's
	// typical order value (heterogeneity between customers).
	OrderValueSpread float64
	// OrderValueJitter is the standard deviation of the log of one order's
	// value around the customer's typical value.
	OrderValueJitter float64
	// CouponRate is the share of orders that redeem a coupon (10-20% off).
	CouponRate float64
	// RefundRate is the share of orders refunded a few days later (doubled for
	// customers about to leave); PartialRefundShare of those refund only part.
	RefundRate         float64
	PartialRefundShare float64

	// TicketsPerYear is the base rate of support tickets per customer-year
	// while the customer is active.
	TicketsPerYear float64
	// ChurnLeadDays is how long before dropping out a customer is "about to
	// leave": tickets come ChurnTicketBoost times as often, mostly about
	// prices, and surveys turn sour.
	ChurnLeadDays    int
	ChurnTicketBoost float64

	// NPSRate is the share of orders followed by an NPS answer (3-14 days
	// later); CSATRate the share of resolved tickets followed by a CSAT answer.
	NPSRate  float64
	CSATRate float64

	// SubscriptionShare of customers carry the trait renewal_date (a yearly
	// subscription renewing a year after sign-up).
	SubscriptionShare float64
	// EmailConsentRate of customers grant email marketing (the rest revoke);
	// PhoneRate have a phone number, and of those SMSConsentRate grant SMS.
	EmailConsentRate float64
	PhoneRate        float64
	SMSConsentRate   float64
}

// DefaultConfig is a 2,000-customer shop over the year 2025 with the CDNOW
// purchase process unscaled: about a third of the customers order again within
// the year (about 2 orders per customer, 8,000 events in all).
func DefaultConfig() Config {
	return Config{
		Customers:          2000,
		Days:               365,
		Start:              time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Seed:               1,
		Currency:           "EUR",
		AcquisitionDecay:   1,
		PurchaseShape:      0.24,
		PurchaseScale:      4.4,
		RateScale:          1,
		DropoutA:           0.79,
		DropoutB:           2.43,
		OrderValueMedian:   45,
		OrderValueSpread:   0.5,
		OrderValueJitter:   0.3,
		CouponRate:         0.08,
		RefundRate:         0.04,
		PartialRefundShare: 0.4,
		TicketsPerYear:     0.3,
		ChurnLeadDays:      30,
		ChurnTicketBoost:   20,
		NPSRate:            0.2,
		CSATRate:           0.5,
		SubscriptionShare:  0.12,
		EmailConsentRate:   0.85,
		PhoneRate:          0.8,
		SMSConsentRate:     0.4,
	}
}

// HighVolumeConfig is DefaultConfig with customers who buy ten times as often
// and leave less readily: about 10 orders and 13.5 events per customer over
// the year (a million customers give ~9.6M orders, 13.5M events), for load
// tests and benchmarks.
func HighVolumeConfig(customers int) Config {
	c := DefaultConfig()
	c.Customers = customers
	c.RateScale = 10
	c.DropoutB = 20
	return c
}

// Limits that keep the arithmetic safe and the output meaningful.
const (
	maxCustomers = 50_000_000
	maxDays      = 100 * 366
)

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Customers < 1 || c.Customers > maxCustomers {
		bad("customers must be in [1, %d], got %d", maxCustomers, c.Customers)
	}
	if c.Days < 1 || c.Days > maxDays {
		bad("days must be in [1, %d], got %d", maxDays, c.Days)
	}
	if c.Start.IsZero() {
		bad("start must be set")
	} else if y := c.Start.UTC().Year(); y < 1970 || y > 9000 {
		bad("start year must be in [1970, 9000], got %d", y)
	}
	if c.Tenant != "" && !tenant.Valid(c.Tenant) {
		bad("tenant %q must match [a-z0-9][a-z0-9_-]{0,62}", c.Tenant)
	}
	if !validCurrency(c.Currency) {
		bad("currency %q must be an ISO-4217 code of three upper-case letters", c.Currency)
	}
	positive := []struct {
		name string
		v    float64
	}{
		{"purchase shape (r)", c.PurchaseShape},
		{"purchase scale (alpha)", c.PurchaseScale},
		{"rate scale", c.RateScale},
		{"dropout a", c.DropoutA},
		{"dropout b", c.DropoutB},
		{"order value median", c.OrderValueMedian},
	}
	for _, p := range positive {
		if !(p.v > 0) || math.IsInf(p.v, 0) {
			bad("%s must be a positive number, got %v (start from DefaultConfig)", p.name, p.v)
		}
	}
	nonNegative := []struct {
		name string
		v    float64
	}{
		{"acquisition decay", c.AcquisitionDecay},
		{"order value spread", c.OrderValueSpread},
		{"order value jitter", c.OrderValueJitter},
		{"tickets per year", c.TicketsPerYear},
		{"churn ticket boost", c.ChurnTicketBoost},
	}
	for _, p := range nonNegative {
		if !(p.v >= 0) || math.IsInf(p.v, 0) {
			bad("%s must be a non-negative number, got %v", p.name, p.v)
		}
	}
	// Beyond this a single heavy buyer would place millions of orders.
	if c.RateScale > 1000 {
		bad("rate scale must be at most 1000, got %v", c.RateScale)
	}
	if c.AcquisitionDecay > 50 {
		bad("acquisition decay must be at most 50, got %v", c.AcquisitionDecay)
	}
	if c.OrderValueSpread > 3 || c.OrderValueJitter > 3 {
		bad("order value spread and jitter must be at most 3 (log scale)")
	}
	// An order value must stay far from int64 overflow even at 10 sigma.
	if c.OrderValueMedian > 1e9 {
		bad("order value median must be at most 1e9, got %v", c.OrderValueMedian)
	}
	if c.TicketsPerYear > 1000 {
		bad("tickets per year must be at most 1000, got %v", c.TicketsPerYear)
	}
	probabilities := []struct {
		name string
		v    float64
	}{
		{"coupon rate", c.CouponRate},
		{"refund rate", c.RefundRate},
		{"partial refund share", c.PartialRefundShare},
		{"NPS rate", c.NPSRate},
		{"CSAT rate", c.CSATRate},
		{"subscription share", c.SubscriptionShare},
		{"email consent rate", c.EmailConsentRate},
		{"phone rate", c.PhoneRate},
		{"SMS consent rate", c.SMSConsentRate},
	}
	for _, p := range probabilities {
		if !(p.v >= 0 && p.v <= 1) {
			bad("%s must be in [0, 1], got %v", p.name, p.v)
		}
	}
	// The refund rate is doubled for customers about to leave.
	if c.RefundRate > 0.5 {
		bad("refund rate must be at most 0.5, got %v", c.RefundRate)
	}
	if c.ChurnLeadDays < 0 || c.ChurnLeadDays > 365 {
		bad("churn lead days must be in [0, 365], got %d", c.ChurnLeadDays)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid simulate config: %w", errors.Join(errs...))
	}
	return nil
}

// fingerprint identifies everything that shapes the output except the seed
// (which event ids carry on their own). It goes into event ids so that two
// different shops generated with the same seed and sent to one tenant are not
// taken for duplicates of each other.
func (c Config) fingerprint() uint32 {
	// Tenant does not change the events; Start only to the millisecond.
	c.Seed, c.Tenant, c.Start = 0, "", time.UnixMilli(c.Start.UnixMilli()).UTC()
	h := fnv.New64a()
	fmt.Fprintf(h, "%+v", c)
	s := h.Sum64()
	return uint32(s ^ s>>32)
}

func validCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
