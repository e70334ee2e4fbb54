// Package policy decides whether, and when, a notification request may go
// out: consent and unsubscribe, the suppression list, the frequency cap and
// quiet hours, in that order. It is pure: the caller loads the facts (under a
// per-customer lock) and records the trail.
package policy

import (
	"fmt"
	"time"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// Verdict is where a request goes next.
type Verdict string

const (
	Send     Verdict = "send"
	Suppress Verdict = "suppress"
	Defer    Verdict = "defer"
	Fail     Verdict = "fail"
)

// Config is the tenant-wide policy.
type Config struct {
	// CapMax marketing messages per customer per CapWindow, across every
	// campaign and channel; 0 disables the cap.
	CapMax    int
	CapWindow time.Duration
	// QuietStart and QuietEnd are minutes after local midnight; the quiet
	// window is [start, end), wrapping midnight when start > end. Equal
	// values disable quiet hours; both are in [0, 1440), so a window is at
	// most 23h59m.
	QuietStart, QuietEnd int
	// DefaultZone is used for customers without a (valid) time zone.
	DefaultZone *time.Location
}

// Pref is a customer's own choice for one channel and category.
type Pref struct {
	Subscribed bool
	At         time.Time
	Source     string
}

// Facts is everything the decision depends on.
type Facts struct {
	Now      time.Time
	Channel  notifierv1.Channel
	Category notifierv1.Category
	Priority notifierv1.Priority
	Expires  time.Time

	// Known is false when no customer.updated was seen for the customer.
	Known bool
	// Address is the email address or phone number of the channel.
	Address string
	// Consent is the shop's marketing consent of the channel ("granted",
	// "revoked" or "") and when it took that value: a grant when the
	// shop's reports changed to it (a sync repeating it is no news), a
	// revocation at its latest report (decision 0046).
	Consent   string
	ConsentAt time.Time
	// Pref is the customer's own choice for the channel and category, if any.
	Pref *Pref
	// Suppressed is the suppression reason of Address ("" when not listed).
	Suppressed string
	// CapTimes are when the customer's marketing messages inside the cap
	// window took their slots (including ones queued in this batch).
	CapTimes []time.Time
	TimeZone string
}

// Step is one recorded decision.
type Step struct {
	Stage, Verdict, Code, Reason string
}

// Result is the decision and the trail that led to it.
type Result struct {
	Verdict Verdict
	Code    string
	Reason  string
	// Until is when a deferred request is due again.
	Until time.Time
	Trail []Step
}

func (r *Result) pass(stage, reason string) {
	r.Trail = append(r.Trail, Step{Stage: stage, Verdict: "pass", Reason: reason})
}

func (r *Result) end(stage string, v Verdict, code, reason string) Result {
	r.Verdict, r.Code, r.Reason = v, code, reason
	r.Trail = append(r.Trail, Step{Stage: stage, Verdict: string(v), Code: code, Reason: reason})
	return *r
}

// Decide runs the pipeline. Webhooks go to the shop's own tools, not to the
// customer: consent, suppression, cap and quiet hours do not apply to them.
// Transactional messages need no marketing consent and are exempt from the
// cap and from quiet hours (a receipt is expected now); unsubscribes and the
// suppression list still apply to them.
func Decide(cfg Config, f Facts) Result {
	var r Result
	if Expired(f.Expires, f.Now) {
		return r.end("expiry", Suppress, "expired", fmt.Sprintf("expired at %s before it could be sent", f.Expires.UTC().Format(time.RFC3339)))
	}
	if f.Channel == notifierv1.Channel_CHANNEL_WEBHOOK {
		r.pass("consent", "webhooks go to the shop's own endpoint: consent, suppression, cap and quiet hours do not apply")
		return r.end("send", Send, "", "")
	}
	marketing := f.Category == notifierv1.Category_CATEGORY_MARKETING
	chName := channelWord(f.Channel)
	if !f.Known {
		return r.end("consent", Fail, CodeUnknownCustomer, "no customer.updated was received for this customer: no address, no consent")
	}
	if f.Address == "" {
		return r.end("consent", Fail, CodeNoAddress, fmt.Sprintf("the customer has no %s", AddressWord(f.Channel)))
	}
	// Consent and unsubscribe.
	if !marketing {
		if f.Pref != nil && !f.Pref.Subscribed {
			return r.end("consent", Suppress, "unsubscribed", fmt.Sprintf("the customer unsubscribed from transactional %s messages (%s, %s)", chName, f.Pref.Source, f.Pref.At.UTC().Format(time.RFC3339)))
		}
		r.pass("consent", "transactional: no marketing consent needed, not unsubscribed")
	} else {
		// The latest word wins: the shop's consent (customer.updated) or the
		// customer's own choice (unsubscribe link, preferences API); a
		// shop's grant is as old as its change to granted (ConsentAt).
		state, source, at := f.Consent, "shop", f.ConsentAt
		if f.Pref != nil && (f.ConsentAt.IsZero() || !f.Pref.At.Before(f.ConsentAt)) {
			state, source, at = "revoked", f.Pref.Source, f.Pref.At
			if f.Pref.Subscribed {
				state = ConsentGranted
			}
		}
		when := fmt.Sprintf("(%s, %s)", source, at.UTC().Format(time.RFC3339))
		switch {
		case state == ConsentGranted:
			r.pass("consent", fmt.Sprintf("%s marketing consent granted %s", chName, when))
		case state == "revoked" && source == "shop":
			return r.end("consent", Suppress, "consent_revoked", fmt.Sprintf("%s marketing consent revoked %s", chName, when))
		case state == "revoked":
			return r.end("consent", Suppress, "unsubscribed", fmt.Sprintf("the customer unsubscribed from %s marketing %s", chName, when))
		default:
			return r.end("consent", Suppress, "no_consent", fmt.Sprintf("no %s marketing consent on record: marketing needs an opt-in", chName))
		}
	}
	// Suppression list.
	if f.Suppressed != "" {
		return r.end("suppression", Suppress, "suppressed_"+f.Suppressed, fmt.Sprintf("the %s is on the suppression list (%s)", AddressWord(f.Channel), f.Suppressed))
	}
	r.pass("suppression", "not on the suppression list")
	// Frequency cap.
	if marketing && cfg.CapMax > 0 {
		var inWindow []time.Time
		for _, t := range f.CapTimes {
			if t.After(f.Now.Add(-cfg.CapWindow)) {
				inWindow = append(inWindow, t)
			}
		}
		if len(inWindow) >= cfg.CapMax {
			// The cap frees a slot when the oldest message in the window
			// leaves it; with cap N that is the N-th newest.
			oldest := inWindow[0]
			for _, t := range inWindow {
				if t.Before(oldest) {
					oldest = t
				}
			}
			reason := fmt.Sprintf("%d marketing messages in the last %s (cap %d)", len(inWindow), window(cfg.CapWindow), cfg.CapMax)
			if f.Priority == notifierv1.Priority_PRIORITY_LOW {
				return r.end("frequency_cap", Suppress, "frequency_cap", reason+": low priority, dropped")
			}
			until := oldest.Add(cfg.CapWindow)
			return r.deferTo("frequency_cap", "frequency_cap", reason, until, f.Expires)
		}
		r.pass("frequency_cap", fmt.Sprintf("%d of %d marketing messages in the last %s", len(inWindow), cfg.CapMax, window(cfg.CapWindow)))
	}
	// Quiet hours.
	if marketing {
		loc := zone(cfg, f.TimeZone)
		if end, quiet := QuietUntil(cfg, f.Now, loc); quiet {
			reason := fmt.Sprintf("quiet hours %s-%s in %s (local time %s)", hhmm(cfg.QuietStart), hhmm(cfg.QuietEnd), loc, f.Now.In(loc).Format("15:04 Mon"))
			return r.deferTo("quiet_hours", "quiet_hours", reason, end, f.Expires)
		}
		r.pass("quiet_hours", fmt.Sprintf("local time %s in %s", f.Now.In(loc).Format("15:04"), loc))
	}
	return r.end("send", Send, "", "")
}

// Expired reports whether a request that expires at expires (zero: never)
// has expired at now. Decide refuses such a request, and the sender makes
// no attempt for it: a retry or a reconcile can come after the decision.
func Expired(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}

func (r *Result) deferTo(stage, code, reason string, until, expires time.Time) Result {
	if !expires.IsZero() && until.After(expires) {
		return r.end(stage, Suppress, "expired", fmt.Sprintf("%s: would be deferred to %s, after it expires at %s", reason, until.UTC().Format(time.RFC3339), expires.UTC().Format(time.RFC3339)))
	}
	r.Until = until
	return r.end(stage, Defer, code, fmt.Sprintf("%s: deferred to %s", reason, until.UTC().Format(time.RFC3339)))
}

// The codes of a request that fails for want of the customer's profile:
// the notifier holds it instead while it has not yet applied the shop's
// customer.updated events (app, decision 0047).
const (
	CodeUnknownCustomer = "unknown_customer"
	CodeNoAddress       = "no_address"
)

// ConsentGranted is the shop's "granted" consent value (contacts package).
const ConsentGranted = "granted"

// zone resolves the customer's time zone, falling back to the default.
func zone(cfg Config, name string) *time.Location {
	if name != "" {
		if loc, err := time.LoadLocation(name); err == nil {
			return loc
		}
	}
	if cfg.DefaultZone != nil {
		return cfg.DefaultZone
	}
	return time.UTC
}

// QuietUntil reports whether now falls in the quiet window in loc and, if
// so, the first instant after now at which the customer's local wall clock
// is outside the window. The wall clock is followed through the zone's
// offset changes rather than rebuilt with time.Date (which picks an
// arbitrary side of a gap or a repeated hour): a window end the wall clock
// skips that day (a DST gap) becomes the first instant after the gap, an
// end in a repeated hour is its first occurrence after now, and a day a
// zone skips altogether (Pacific/Apia, 2011-12-30) is skipped here too. The
// result is always strictly after now, so a deferred request never comes
// due inside the window it was deferred for.
//
// QuietStart and QuietEnd must be in [0, 1440) (ParseClock's range): a
// window cannot cover the whole day.
func QuietUntil(cfg Config, now time.Time, loc *time.Location) (time.Time, bool) {
	if cfg.QuietStart == cfg.QuietEnd {
		return time.Time{}, false
	}
	t := now.In(loc)
	if _, quiet := quietExit(cfg, t); !quiet {
		return time.Time{}, false
	}
	// Each pass covers one span of constant UTC offset, in which the wall
	// clock runs with real time; an offset change moves it at once.
	for range maxZoneSpans {
		exit, quiet := quietExit(cfg, t)
		if !quiet {
			return t, true // the offset change itself left the window
		}
		_, next := t.ZoneBounds()
		if next.IsZero() || exit.Before(next) {
			return exit, true
		}
		t = next
	}
	// Not reached with real zones (a window is shorter than a day and
	// offsets change a few times a year); t is still after now.
	return t, true
}

// maxZoneSpans bounds QuietUntil's walk over offset changes.
const maxZoneSpans = 64

// quietExit reports whether t's wall clock (in t's location) is inside the
// quiet window and, if so, the instant its wall clock reaches the window's
// end, assuming t's UTC offset holds until then.
func quietExit(cfg Config, t time.Time) (time.Time, bool) {
	const day = 24 * 60 * 60
	_, off := t.Zone()
	wall := t.Unix() + int64(off) // seconds since the epoch on the local wall clock
	sod := wall % day
	if sod < 0 {
		sod += day
	}
	start, end := int64(cfg.QuietStart)*60, int64(cfg.QuietEnd)*60
	var exit int64 // seconds after the local midnight starting t's day
	switch {
	case start < end && sod >= start && sod < end:
		exit = end
	case start > end && sod >= start:
		exit = day + end
	case start > end && sod < end:
		exit = end
	default:
		return time.Time{}, false
	}
	return t.Add(time.Duration(exit-sod)*time.Second - time.Duration(t.Nanosecond())), true
}

// ParseClock reads "21:00" as minutes after midnight.
func ParseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day like 21:00", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func hhmm(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

func window(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

func channelWord(c notifierv1.Channel) string {
	switch c {
	case notifierv1.Channel_CHANNEL_EMAIL:
		return "email"
	case notifierv1.Channel_CHANNEL_SMS:
		return "SMS"
	}
	return "webhook"
}

// AddressWord names the address a channel sends to, as reasons say it.
func AddressWord(c notifierv1.Channel) string {
	if c == notifierv1.Channel_CHANNEL_SMS {
		return "phone number"
	}
	return "email address"
}
