package service

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/config"
)

// TestLogUnknownEnv: what Main found is logged as one warning a variable,
// naming it and the likely intended name.
func TestLogUnknownEnv(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	logUnknownEnv(context.Background(), log)
	if buf.Len() != 0 {
		t.Fatalf("logged without unknown variables: %s", buf.String())
	}
	ctx := withUnknownEnv(context.Background(), []config.UnknownVar{{Name: "RETAIN_INGEST_LINGR", Suggestion: "RETAIN_INGEST_LINGER"}, {Name: "RETAIN_X"}})
	logUnknownEnv(ctx, log)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "variable=RETAIN_INGEST_LINGR did_you_mean=RETAIN_INGEST_LINGER") ||
		!strings.Contains(lines[1], "variable=RETAIN_X") || strings.Contains(lines[1], "did_you_mean") {
		t.Errorf("logged:\n%s", buf.String())
	}
}
