package testenv

import (
	"regexp"
	"testing"
)

func TestDatabaseName(t *testing.T) {
	valid := regexp.MustCompile(`^t_[a-z0-9_]*_[0-9a-f]{10}$`)
	tests := []struct {
		testName   string
		wantPrefix string
	}{
		{"TestMigrate", "t_testmigrate_"},
		{"TestMigrate/concurrent replicas apply each file once", "t_testmigrate_concurrent_replicas_apply_eac"},
		{"TestÜber/ü-ö", "t_test_ber_"},
		{"Test/#01", "t_test_01_"},
	}
	for _, tt := range tests {
		t.Run(tt.testName, func(t *testing.T) {
			got := databaseName(tt.testName)
			if !valid.MatchString(got) || len(got) > 63 {
				t.Fatalf("databaseName(%q) = %q: not a valid, short, unquoted identifier", tt.testName, got)
			}
			if got[:len(tt.wantPrefix)] != tt.wantPrefix {
				t.Fatalf("databaseName(%q) = %q, want prefix %q", tt.testName, got, tt.wantPrefix)
			}
			if again := databaseName(tt.testName); again == got {
				t.Fatalf("two calls gave the same name %q", got)
			}
		})
	}
}
