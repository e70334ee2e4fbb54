package policy

import (
	"testing"
	"time"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

var cfg = Config{CapMax: 2, CapWindow: 7 * 24 * time.Hour, QuietStart: 21 * 60, QuietEnd: 9 * 60, DefaultZone: time.UTC}

func base(now time.Time) Facts {
	return Facts{Now: now, Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_MARKETING,
		Priority: notifierv1.Priority_PRIORITY_NORMAL, Known: true, Address: "a@example.com",
		Consent: "granted", ConsentAt: now.Add(-48 * time.Hour), TimeZone: "Europe/Berlin"}
}

func TestDecide(t *testing.T) {
	noon := time.Date(2026, 6, 10, 10, 0, 0, 0, time.UTC) // 12:00 in Berlin
	tests := []struct {
		name    string
		mod     func(*Facts)
		verdict Verdict
		code    string
		until   time.Time
	}{
		{"consented marketing at noon is sent", func(*Facts) {}, Send, "", time.Time{}},
		{"revoked consent", func(f *Facts) { f.Consent = "revoked" }, Suppress, "consent_revoked", time.Time{}},
		{"no consent on record", func(f *Facts) { f.Consent, f.ConsentAt = "", time.Time{} }, Suppress, "no_consent", time.Time{}},
		{"unsubscribed after consent", func(f *Facts) { f.Pref = &Pref{At: noon.Add(-time.Hour), Source: "one_click"} }, Suppress, "unsubscribed", time.Time{}},
		{"shop consent newer than unsubscribe", func(f *Facts) { f.Pref = &Pref{At: noon.Add(-72 * time.Hour), Source: "api"} }, Send, "", time.Time{}},
		{"resubscribed via API without shop consent", func(f *Facts) {
			f.Consent, f.ConsentAt = "", time.Time{}
			f.Pref = &Pref{Subscribed: true, At: noon.Add(-time.Hour), Source: "api"}
		}, Send, "", time.Time{}},
		{"transactional needs no consent", func(f *Facts) { f.Consent, f.Category = "revoked", notifierv1.Category_CATEGORY_TRANSACTIONAL }, Send, "", time.Time{}},
		{"transactional unsubscribe", func(f *Facts) {
			f.Category = notifierv1.Category_CATEGORY_TRANSACTIONAL
			f.Pref = &Pref{At: noon, Source: "api"}
		}, Suppress, "unsubscribed", time.Time{}},
		{"hard bounce", func(f *Facts) { f.Suppressed = "hard_bounce" }, Suppress, "suppressed_hard_bounce", time.Time{}},
		{"suppression beats transactional", func(f *Facts) { f.Suppressed = "complaint"; f.Category = notifierv1.Category_CATEGORY_TRANSACTIONAL }, Suppress, "suppressed_complaint", time.Time{}},
		{"unknown customer", func(f *Facts) { f.Known = false }, Fail, "unknown_customer", time.Time{}},
		{"no address", func(f *Facts) { f.Address = "" }, Fail, "no_address", time.Time{}},
		{"under the cap", func(f *Facts) { f.CapTimes = []time.Time{noon.Add(-24 * time.Hour)} }, Send, "", time.Time{}},
		{"over the cap, normal: deferred until a slot frees", func(f *Facts) {
			f.CapTimes = []time.Time{noon.Add(-24 * time.Hour), noon.Add(-72 * time.Hour)}
		}, Defer, "frequency_cap", noon.Add(-72 * time.Hour).Add(7 * 24 * time.Hour)},
		{"over the cap, low: dropped", func(f *Facts) {
			f.CapTimes = []time.Time{noon.Add(-24 * time.Hour), noon.Add(-72 * time.Hour)}
			f.Priority = notifierv1.Priority_PRIORITY_LOW
		}, Suppress, "frequency_cap", time.Time{}},
		{"old messages leave the window", func(f *Facts) {
			f.CapTimes = []time.Time{noon.Add(-24 * time.Hour), noon.Add(-8 * 24 * time.Hour)}
		}, Send, "", time.Time{}},
		{"transactional ignores the cap", func(f *Facts) {
			f.CapTimes = []time.Time{noon, noon, noon}
			f.Category = notifierv1.Category_CATEGORY_TRANSACTIONAL
		}, Send, "", time.Time{}},
		{"quiet hours in Tehran", func(f *Facts) { f.TimeZone = "Asia/Tehran"; f.Now = time.Date(2026, 6, 10, 19, 0, 0, 0, time.UTC) },
			Defer, "quiet_hours", time.Date(2026, 6, 11, 9, 0, 0, 0, mustZone("Asia/Tehran"))},
		{"quiet hours after midnight in Los Angeles", func(f *Facts) {
			f.TimeZone = "America/Los_Angeles"
			f.Now = time.Date(2026, 6, 10, 10, 0, 0, 0, time.UTC) // 03:00 PDT
		}, Defer, "quiet_hours", time.Date(2026, 6, 10, 16, 0, 0, 0, time.UTC)},
		{"bad time zone falls back to the default", func(f *Facts) { f.TimeZone = "Mars/Olympus"; f.Now = time.Date(2026, 6, 10, 22, 0, 0, 0, time.UTC) },
			Defer, "quiet_hours", time.Date(2026, 6, 11, 9, 0, 0, 0, time.UTC)},
		{"deferral past expiry suppresses", func(f *Facts) {
			f.Now = time.Date(2026, 6, 10, 20, 0, 0, 0, time.UTC)
			f.Expires = f.Now.Add(time.Hour)
		}, Suppress, "expired", time.Time{}},
		{"expired on arrival", func(f *Facts) { f.Expires = noon }, Suppress, "expired", time.Time{}},
		{"webhook skips customer policies", func(f *Facts) {
			f.Channel, f.Known, f.Consent, f.Suppressed = notifierv1.Channel_CHANNEL_WEBHOOK, false, "revoked", "complaint"
			f.Now = time.Date(2026, 6, 10, 1, 0, 0, 0, time.UTC)
		}, Send, "", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := base(noon)
			tc.mod(&f)
			r := Decide(cfg, f)
			if r.Verdict != tc.verdict || r.Code != tc.code || !r.Until.Equal(tc.until) {
				t.Fatalf("got %s %q until %s (%s), want %s %q until %s", r.Verdict, r.Code, r.Until, r.Reason, tc.verdict, tc.code, tc.until)
			}
			if len(r.Trail) == 0 || r.Trail[len(r.Trail)-1].Verdict != string(tc.verdict) {
				t.Fatalf("trail %+v", r.Trail)
			}
		})
	}
}

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// Quiet hours end at 09:00 local wall time on both sides of a DST change,
// which is 8 or 7 hours after 01:00 UTC depending on the offset.
func TestQuietUntilAcrossDST(t *testing.T) {
	ny := mustZone("America/New_York")
	tests := []struct {
		now, want time.Time
	}{
		// Spring forward: 2026-03-08 02:00 EST -> 03:00 EDT.
		{time.Date(2026, 3, 7, 22, 30, 0, 0, ny), time.Date(2026, 3, 8, 13, 0, 0, 0, time.UTC)},
		{time.Date(2026, 3, 8, 1, 30, 0, 0, ny), time.Date(2026, 3, 8, 13, 0, 0, 0, time.UTC)},
		// Fall back: 2026-11-01 02:00 EDT -> 01:00 EST.
		{time.Date(2026, 10, 31, 23, 0, 0, 0, ny), time.Date(2026, 11, 1, 14, 0, 0, 0, time.UTC)},
		{time.Date(2026, 10, 31, 20, 59, 0, 0, ny), time.Time{}},
	}
	for _, tc := range tests {
		got, quiet := QuietUntil(cfg, tc.now, ny)
		if quiet != !tc.want.IsZero() || !got.Equal(tc.want) {
			t.Errorf("at %s: got %s (%v), want %s", tc.now, got.UTC(), quiet, tc.want)
		}
	}
}
