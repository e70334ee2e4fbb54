package bus

import (
	"slices"
	"testing"
)

// TestTenantFilters: a consumer's filters narrowed to one tenant's
// subjects, those that cannot match it left out.
func TestTenantFilters(t *testing.T) {
	cases := []struct {
		name    string
		filters []string
		want    []string
	}{
		{"no filter: every subject", nil, []string{"retain.events.shop.>"}},
		{"a type across tenants", []string{"retain.events.*.order.placed"}, []string{"retain.events.shop.order.placed"}},
		{"types with a wildcard", []string{"retain.events.*.order.>", "retain.events.*.*.opened"}, []string{"retain.events.shop.order.>", "retain.events.shop.*.opened"}},
		{"the tenant's own", []string{"retain.events.shop.>"}, []string{"retain.events.shop.>"}},
		{"another tenant's", []string{"retain.events.other.>", "retain.events.other.order.placed"}, nil},
		{"the whole stream", []string{"retain.events.>"}, []string{"retain.events.shop.>"}},
		{"a wildcard prefix", []string{"retain.*.*.order.placed", ">"}, []string{"retain.events.shop.order.placed", "retain.events.shop.>"}},
		{"no type token", []string{"retain.events.*", "retain.events"}, nil},
		{"another stream's", []string{"retain.signals.*.churn.risk_changed"}, nil},
	}
	for _, c := range cases {
		if got := tenantFilters(EventsSubjectPrefix, "shop", c.filters); !slices.Equal(got, c.want) {
			t.Errorf("%s: tenantFilters(%q) = %q, want %q", c.name, c.filters, got, c.want)
		}
	}
}
