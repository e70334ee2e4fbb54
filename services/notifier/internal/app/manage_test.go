package app_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

// TestPreferenceCallsDoNotDeadlock: two callers set one customer's email
// and SMS choices at once, listing them in opposite orders, many times
// over; the rows are always written in one order, so neither call waits
// on the other in a cycle (SQLSTATE 40P01).
func TestPreferenceCallsDoNotDeadlock(t *testing.T) {
	pool := testenv.MigratedPool(t, store.Migrations)
	e, err := app.New(pool, app.Config{Lease: 30 * time.Second, SendTimeout: 5 * time.Second, MaxAttempts: 3,
		RetryInitial: time.Second, RetryMax: time.Minute, SendBatch: 50, SendWorkers: 1, PollInterval: time.Second},
		nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pref := func(ch notifierv1.Channel, subscribed bool) *notifierv1.ChannelPreference {
		return &notifierv1.ChannelPreference{Channel: ch, Category: notifierv1.Category_CATEGORY_MARKETING, Subscribed: subscribed}
	}
	const rounds = 60
	set := func(first, second notifierv1.Channel) func(int) error {
		return func(r int) error {
			ps := []*notifierv1.ChannelPreference{pref(first, r%2 == 0), pref(second, r%2 == 1)}
			return e.SetPreferences(context.Background(), "acme", "c-1", ps, "api", "")
		}
	}
	testenv.Concurrently(t, rounds,
		set(notifierv1.Channel_CHANNEL_EMAIL, notifierv1.Channel_CHANNEL_SMS),
		set(notifierv1.Channel_CHANNEL_SMS, notifierv1.Channel_CHANNEL_EMAIL))
}
