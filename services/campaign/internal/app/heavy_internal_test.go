package app

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// One shop asking for reports in a loop holds one of the heavy reads'
// turns at most: another shop's report starts at once.
func TestHeavyReadsOneTurnPerTenant(t *testing.T) {
	e := New(nil, Config{}, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	first, err := e.heavyRead(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := e.heavyRead(short, "busy"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the busy shop's second read: %v, want it to wait for its first", err)
	}
	other, err := e.heavyRead(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	// Both turns are taken now: a third shop waits for one.
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := e.heavyRead(short, "third"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third shop's read with both turns taken: %v, want a wait", err)
	}
	first()
	again, err := e.heavyRead(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	again()
	other()
	if n := len(e.heavyTurns); n != 0 {
		t.Errorf("%d tenants' turns left after every read ended, want none", n)
	}
}
