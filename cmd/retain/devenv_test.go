package main

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// TestWarnUnreadEnv: retain dev names each RETAIN_* variable it ignores,
// a misspelt one with the likely intended name, and is silent about the
// variables of the command and the tests.
func TestWarnUnreadEnv(t *testing.T) {
	if names := serviceSettingsEnv(); !slices.Contains(names, "RETAIN_INGEST_LINGER") || !slices.Contains(names, "RETAIN_NOTIFIER_SMTP_ADDR") {
		t.Fatalf("service settings %v lack ingest's or the notifier's", names)
	}
	var buf bytes.Buffer
	warnUnreadEnv(slog.New(slog.NewTextHandler(&buf, nil)), []string{
		"RETAIN_INGEST_LINGR=5ms", "RETAIN_INGEST_LINGER=5ms", "RETAIN_DATABSE_URL=x",
		"RETAIN_DATABASE_URL=x", "RETAIN_TOKEN=t", "RETAIN_ADDR=a", "RETAIN_TEST_DATABASE_URL=x", "HOME=/root",
	})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"variable=RETAIN_DATABSE_URL did_you_mean=RETAIN_DATABASE_URL",
		"reads no service setting (run the service alone to use it)\" variable=RETAIN_INGEST_LINGER",
		"variable=RETAIN_INGEST_LINGR did_you_mean=RETAIN_INGEST_LINGER",
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) || !strings.Contains(lines[i], "level=WARN") {
			t.Errorf("line %d = %s\nwant it to contain %q", i, lines[i], w)
		}
	}
}
