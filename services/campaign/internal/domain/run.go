package domain

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Enrollment statuses.
const (
	StatusActive    = "ACTIVE"
	StatusCompleted = "COMPLETED"
	StatusConverted = "CONVERTED"
	StatusExited    = "EXITED"
)

// Cursor is where an enrollment is in its plan: the step to run next and
// when. Due is logical time: a wait adds to the previous step's due time,
// not to the moment the scheduler got to it, so a late scheduler does not
// shift the rest of the sequence.
type Cursor struct {
	Step int // -1: no step left
	Due  time.Time
	// Armed: the branch at Step has started its timeout and decides at
	// Due, or as soon as the goal is reached.
	Armed bool
}

// Actions performs a plan's side effects for one enrollment.
type Actions interface {
	// Send requests the message of step s.
	Send(s *PlanStep) error
	// IssueCoupon issues the coupon of step s.
	IssueCoupon(s *PlanStep) error
}

// Progress is the outcome of Advance.
type Progress struct {
	Cursor Cursor
	Status string
	// Done are the ids of the steps completed by this call, in order.
	Done []string
}

// Advance runs every step of p that is due at now, starting at cur, and
// returns where the enrollment waits next. Holdout members go through the
// same steps, but Actions are never called for them: they are sent
// nothing. converted says whether the goal was reached (for branches).
func (p *Plan) Advance(cur Cursor, now time.Time, tz *time.Location, holdout, converted bool, acts Actions) (Progress, error) {
	pr := Progress{Cursor: cur, Status: StatusActive}
	// No cycles (Compile rejects them): every step runs at most once, a
	// branch twice (arm, decide).
	for range 2*len(p.Steps) + 1 {
		c := &pr.Cursor
		if c.Step < 0 {
			pr.Status = StatusCompleted
			return pr, nil
		}
		if c.Due.After(now) {
			return pr, nil
		}
		s := &p.Steps[c.Step]
		switch s.Kind {
		case KindWait:
			due := c.Due.Add(s.Wait)
			if s.LocalTime != "" {
				due = NextLocalTime(due, tz, s.LocalTime)
			}
			c.Step, c.Due = s.Next, due
		case KindSend:
			if !holdout {
				if err := acts.Send(s); err != nil {
					return pr, fmt.Errorf("step %s: %w", s.ID, err)
				}
			}
			c.Step = s.Next
		case KindCoupon:
			if !holdout {
				if err := acts.IssueCoupon(s); err != nil {
					return pr, fmt.Errorf("step %s: %w", s.ID, err)
				}
			}
			c.Step = s.Next
		case KindBranch:
			// A goal already reached decides the branch at once, whether
			// it came before the branch started or woke it early (the
			// store sets an armed branch's due time to the conversion's
			// arrival); otherwise the branch waits out its timeout.
			if converted {
				c.Armed, c.Step = false, s.IfGoal
				break
			}
			if !c.Armed {
				c.Armed, c.Due = true, c.Due.Add(s.Wait)
				continue
			}
			c.Armed, c.Step = false, s.Otherwise
		case KindExit:
			pr.Done = append(pr.Done, s.ID)
			c.Step = -1
			pr.Status = StatusExited
			return pr, nil
		}
		pr.Done = append(pr.Done, s.ID)
	}
	return pr, fmt.Errorf("campaign %s: steps did not settle", p.Campaign.GetId())
}

// NextLocalTime is the first instant at or after t when the clock in tz
// shows hh:mm.
func NextLocalTime(t time.Time, tz *time.Location, hhmm string) time.Time {
	if tz == nil {
		tz = time.UTC
	}
	h, _ := strconv.Atoi(hhmm[:2])
	m, _ := strconv.Atoi(hhmm[3:])
	lt := t.In(tz)
	at := time.Date(lt.Year(), lt.Month(), lt.Day(), h, m, 0, 0, tz)
	if at.Before(t) {
		at = time.Date(lt.Year(), lt.Month(), lt.Day()+1, h, m, 0, 0, tz)
	}
	return at.UTC()
}

// InHoldout is the deterministic holdout assignment of a customer to a
// campaign: a hash of (tenant, campaign, customer) in 0-9999 below
// percent x 100. The service persists the first assignment, so a later
// change of the percentage does not move anyone between groups.
func InHoldout(tenant, campaign, customer string, percent int32) bool {
	h := sha256.Sum256([]byte(strings.Join([]string{tenant, campaign, customer}, "\x00")))
	return binary.BigEndian.Uint64(h[:8])%10000 < uint64(percent)*100
}

// EnrollmentRef is the id a shop sees for an enrollment: in its request
// ids, the requests' origin and the enrollment listing. It is 128 bits of
// the SHA-256 of the enrollment's natural key (its primary key) in
// lower-case base32, 26 characters, not the row's sequence number: every
// shop draws from that one sequence, so it would tell a shop how many
// enrollments all shops make and how fast that grows (decision 0048). A
// function of the key alone is deterministic, whichever transaction or
// replica runs the step. Postgres text holds no NUL, so the joined key
// names one enrollment.
func EnrollmentRef(tenant, campaign, customer, entryKey string) string {
	h := sha256.Sum256([]byte(strings.Join([]string{tenant, campaign, customer, entryKey}, "\x00")))
	return refEncoding.EncodeToString(h[:16])
}

var refEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RequestID is the notification request id of a step of an enrollment
// (ref: its EnrollmentRef): deterministic, so a retry after a crash
// produces the same id and the outbox and the notifier keep one message.
func RequestID(campaign, ref, step string) string {
	return campaign + "/" + ref + "/" + step
}
