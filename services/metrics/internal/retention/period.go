package retention

import (
	"errors"
	"fmt"
	"time"
)

// Day is 24 hours. Windows are measured in event time, which is UTC, so a
// day never has a daylight-saving jump.
const Day = 24 * time.Hour

// Window is the activity window W: a customer is active at t when they have
// an order in [t-W, t).
type Window time.Duration

const (
	// DefaultWindow is the window used when neither the query nor the tenant
	// names one: 90 days, the usual quarter-sized window for a shop.
	DefaultWindow = Window(90 * Day)
	// MinWindow and MaxWindow bound what a query may ask for. Under a day,
	// "active" measures checkout sessions rather than customers; over ten
	// years, everyone who ever bought is active and the figure says nothing.
	MinWindow = Window(Day)
	MaxWindow = Window(3650 * Day)
)

// WindowDays is a window of n whole days.
func WindowDays(n int) Window { return Window(time.Duration(n) * Day) }

// Duration returns the window as a time.Duration.
func (w Window) Duration() time.Duration { return time.Duration(w) }

// Validate reports a window outside [MinWindow, MaxWindow].
func (w Window) Validate() error {
	if w < MinWindow || w > MaxWindow {
		return fmt.Errorf("window %s: must be between %s and %s", time.Duration(w), time.Duration(MinWindow), time.Duration(MaxWindow))
	}
	return nil
}

// Period is the half-open range of instants [From, To).
type Period struct {
	From time.Time
	To   time.Time
}

// NewPeriod returns [from, to) in UTC, or an error naming the fault.
func NewPeriod(from, to time.Time) (Period, error) {
	p := Period{From: from.UTC(), To: to.UTC()}
	return p, p.Validate()
}

// Validate reports an empty or inverted period.
func (p Period) Validate() error {
	switch {
	case p.From.IsZero():
		return errors.New("period from: is required")
	case p.To.IsZero():
		return errors.New("period to: is required")
	case !p.From.Before(p.To):
		return fmt.Errorf("period: from (%s) must be before to (%s)", p.From.Format(time.RFC3339), p.To.Format(time.RFC3339))
	}
	return nil
}

// SoFar is the part of p that has happened by now: p itself when it ends by
// now, [From, now) when it ends later. A period that starts at or after now
// has nothing in it yet and is an error. Figures are measured up to now, never
// to an instant nobody has reached: at a future end every customer who has not
// ordered by then would count as lost (a retention rate is not a forecast).
// The caller reports the period measured.
func (p Period) SoFar(now time.Time) (Period, error) {
	now = now.UTC()
	if !p.From.Before(now) {
		return p, fmt.Errorf("%s is not in the past (now %s): nothing has happened in the period yet",
			p.From.Format(time.RFC3339Nano), now.Format(time.RFC3339))
	}
	if p.To.After(now) {
		p.To = now
	}
	return p, nil
}

// Contains reports whether t is in [From, To).
func (p Period) Contains(t time.Time) bool {
	return !t.Before(p.From) && t.Before(p.To)
}

// Month is a calendar month in UTC, counted from January of year 0, so that
// "cohort + k" is plain integer addition.
type Month int32

// MaxCohortMonths bounds a cohort table: ten years of cohorts. Beyond that
// the table is unreadable and the query is a mistake.
const MaxCohortMonths = 120

// MonthOf returns the UTC calendar month of t.
func MonthOf(t time.Time) Month {
	t = t.UTC()
	return Month(t.Year()*12 + int(t.Month()) - 1)
}

// MonthFor returns the month of a year and calendar month.
func MonthFor(year int, m time.Month) Month { return Month(year*12 + int(m) - 1) }

// Year and Calendar split a Month back into its parts.
func (m Month) Year() int { return int(m) / 12 }

// Calendar returns the calendar month (January..December).
func (m Month) Calendar() time.Month { return time.Month(int(m)%12 + 1) }

// Start is the first instant of the month, UTC.
func (m Month) Start() time.Time {
	return time.Date(m.Year(), m.Calendar(), 1, 0, 0, 0, 0, time.UTC)
}

// Period is the month as [first instant, first instant of the next month).
func (m Month) Period() Period { return Period{From: m.Start(), To: (m + 1).Start()} }

// String renders the month as YYYY-MM.
func (m Month) String() string { return fmt.Sprintf("%04d-%02d", m.Year(), int(m.Calendar())) }

// CohortRangeSoFar is the cohort range first..last up to the month of now:
// a later last month is now's month (its cells would all be empty, which
// reads as everyone lapsing), and a first month after now's is an error (its
// cohort has no customers yet).
func CohortRangeSoFar(first, last Month, now time.Time) (Month, Month, error) {
	this := MonthOf(now)
	if first > this {
		return first, last, fmt.Errorf("%s is after this month (%s): the cohort has no customers yet", first, this)
	}
	return first, min(last, this), nil
}

// ValidateCohortRange reports a cohort range that is inverted or longer than
// MaxCohortMonths.
func ValidateCohortRange(first, last Month) error {
	if last < first {
		return fmt.Errorf("cohort range: first month %s is after last month %s", first, last)
	}
	if n := int(last-first) + 1; n > MaxCohortMonths {
		return fmt.Errorf("cohort range: %d months from %s to %s, at most %d allowed", n, first, last, MaxCohortMonths)
	}
	return nil
}
