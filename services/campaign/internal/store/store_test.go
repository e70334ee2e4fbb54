package store

import "testing"

func TestMigrationsParse(t *testing.T) {
	ms, err := Migrations.Migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("migrations: %d, %v", len(ms), err)
	}
}
