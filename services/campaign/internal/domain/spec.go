// Package domain is the campaign service's pure logic: the campaign
// definition (decoding, validation, compilation into a Plan), condition
// evaluation over a customer's facts, running steps, holdout assignment,
// coupon codes and the lift statistics. No I/O.
package domain

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/retainhq/retain/platform/currency"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// Event types a campaign can be triggered by or have as its goal.
const (
	EventOrderPlaced     = "order.placed"
	EventTicketResolved  = "ticket.resolved"
	EventSurveyAnswered  = "survey.answered"
	EventCustomerUpdated = "customer.updated"
)

// TriggerEvents are the event types a trigger or goal may name.
var TriggerEvents = []string{EventOrderPlaced, EventTicketResolved, EventSurveyAnswered, EventCustomerUpdated}

// Limits of a campaign definition.
const (
	MaxWait            = 365 * 24 * time.Hour
	MaxHoldoutPercent  = 90
	MaxSteps           = 50
	DefaultAttribution = 30 * 24 * time.Hour
	DefaultSchedule    = 24 * time.Hour
	DefaultExpiry      = 72 * time.Hour
	DefaultCouponValid = 30 * 24 * time.Hour
)

// entryKeys are the keys of once_per_key each trigger event carries
// (Trigger.Key); every trigger has an event id, a churn band change too.
var entryKeys = map[string][]string{
	EventOrderPlaced:    {"order_id", "event_id"},
	EventTicketResolved: {"ticket_id", "event_id"},
	EventSurveyAnswered: {"survey_id", "event_id"},
}

// entryKeysOf returns the once_per_key keys trigger tr's event carries
// (none for a schedule, which has no event).
func entryKeysOf(tr *campaignv1.Trigger) []string {
	switch k := tr.GetKind().(type) {
	case *campaignv1.Trigger_Schedule:
		return nil
	case *campaignv1.Trigger_Event:
		if keys, ok := entryKeys[k.Event]; ok {
			return keys
		}
	}
	return []string{"event_id"}
}

var (
	idRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	prefixRE = regexp.MustCompile(`^[A-Z0-9]{0,8}$`)
	localRE  = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)
	tmplRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,127}$`)
	varRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// Violation is one bad field of a campaign definition.
type Violation struct {
	Field       string
	Description string
}

// InvalidError is a campaign definition that fails validation.
type InvalidError struct{ Violations []Violation }

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid campaign: " + strings.Join(parts, "; ")
}

// With returns e (a new one when e is nil) with vs added; a nil e with
// none stays nil, so the result says whether anything is invalid.
func (e *InvalidError) With(vs ...Violation) *InvalidError {
	if len(vs) == 0 {
		return e
	}
	if e == nil {
		e = &InvalidError{}
	}
	e.Violations = append(e.Violations, vs...)
	return e
}

// ValidID reports whether s is a valid campaign or step id.
func ValidID(s string) bool { return idRE.MatchString(s) }

// ParseDuration reads "3d", "2w", "36h", "90m" or any Go duration, and
// combinations like "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("is empty")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9') {
			i++
		}
		if i == 0 || i == len(rest) {
			break
		}
		unit := rest[i]
		if unit != 'd' && unit != 'w' {
			break
		}
		n, err := strconv.ParseInt(rest[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		mult := 24 * time.Hour
		if unit == 'w' {
			mult *= 7
		}
		total += time.Duration(n) * mult
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (e.g. 3d, 36h, 90m)", s)
		}
		total += d
	}
	if total < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return total, nil
}

// Step kinds of a compiled plan.
const (
	KindWait = iota + 1
	KindSend
	KindCoupon
	KindBranch
	KindExit
)

// PlanStep is a step with its durations parsed and jumps resolved.
type PlanStep struct {
	ID        string
	Kind      int
	Wait      time.Duration
	LocalTime string // "HH:MM" or empty
	Send      *campaignv1.Send
	Expiry    time.Duration
	Coupon    *campaignv1.IssueCoupon
	Valid     time.Duration
	Next      int // index of the next step; -1: the enrollment completes
	IfGoal    int
	Otherwise int
}

// Plan is a validated campaign version ready to run.
type Plan struct {
	Campaign    *campaignv1.Campaign
	Steps       []PlanStep
	Attribution time.Duration
	GoalEvent   string
	// EntryEvery is the re-entry gap of once_per; 0 with EntryKey "" means
	// once per customer.
	EntryEvery time.Duration
	// EntryKey is the event field of once_per_key.
	EntryKey string
	Schedule time.Duration
	// Renewal: a condition tests the customer's renewal date, which the
	// sends then carry as renewal_date.
	Renewal bool
}

// Compile validates a new definition c and compiles it. It reports every
// violation at once, each naming its field.
func Compile(c *campaignv1.Campaign) (*Plan, error) { return compile(c, false) }

// CompileStored compiles a version stored earlier. The rules a later
// release added (a branch whose goal ends the enrollment, a once_per_key
// the trigger's event does not carry) are not applied: the version was
// accepted and runs as it was saved, rather than stopping every batch
// that loads it.
func CompileStored(c *campaignv1.Campaign) (*Plan, error) { return compile(c, true) }

func compile(c *campaignv1.Campaign, stored bool) (*Plan, error) {
	var vs []Violation
	bad := func(field, format string, args ...any) {
		vs = append(vs, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
	dur := func(field, s string, def, lo time.Duration) time.Duration {
		if s == "" {
			return def
		}
		d, err := ParseDuration(s)
		if err != nil {
			bad(field, "%v", err)
			return def
		}
		if d < lo {
			bad(field, "%s is too short: at least %s", s, lo)
		} else if d > MaxWait {
			bad(field, "%s is longer than a year", s)
		}
		return d
	}
	p := &Plan{Campaign: c}
	if !idRE.MatchString(c.GetId()) {
		bad("id", "%q does not match %s", c.GetId(), idRE.String())
	}
	if strings.TrimSpace(c.GetName()) == "" {
		bad("name", "is required")
	} else if len(c.GetName()) > 200 {
		bad("name", "%d bytes: at most 200", len(c.GetName()))
	}
	if h := c.GetHoldoutPercent(); h < 0 || h > MaxHoldoutPercent {
		bad("holdout_percent", "%d is outside 0-%d", h, MaxHoldoutPercent)
	}
	if pr := c.GetPriority(); pr < 0 || pr > 100 {
		bad("priority", "%d is outside 0-100", pr)
	}

	// Trigger.
	tr := c.GetTrigger()
	switch k := tr.GetKind().(type) {
	case nil:
		bad("trigger", "is required: one of event, churn_band, schedule")
	case *campaignv1.Trigger_Event:
		if !slices.Contains(TriggerEvents, k.Event) {
			bad("trigger.event", "unknown trigger %q: want one of %s", k.Event, strings.Join(TriggerEvents, ", "))
		}
	case *campaignv1.Trigger_ChurnBand:
		if k.ChurnBand == churnv1.RiskBand_RISK_BAND_UNSPECIFIED || churnv1.RiskBand_name[int32(k.ChurnBand)] == "" {
			bad("trigger.churn_band", "unknown band %d: want RISK_BAND_LOW, _MEDIUM or _HIGH", k.ChurnBand)
		}
	case *campaignv1.Trigger_Schedule:
		p.Schedule = dur("trigger.schedule.every", k.Schedule.GetEvery(), DefaultSchedule, time.Minute)
		if len(c.GetConditions()) == 0 {
			bad("conditions", "a scheduled trigger needs at least one condition (or it would enter every customer)")
		}
	}

	// Conditions.
	for i, cond := range c.GetConditions() {
		f := fmt.Sprintf("conditions[%d]", i)
		switch k := cond.GetKind().(type) {
		case nil:
			bad(f, "is empty: set one condition")
		case *campaignv1.Condition_NpsScore:
			checkRange(bad, f+".nps_score", k.NpsScore.Min, k.NpsScore.Max, 0, 10)
			if tr.GetEvent() != EventSurveyAnswered {
				bad(f+".nps_score", "needs trigger.event survey.answered")
			}
		case *campaignv1.Condition_OrderCount:
			checkRange(bad, f+".order_count", k.OrderCount.Min, k.OrderCount.Max, 0, 1_000_000)
			if w := k.OrderCount.GetWithinDays(); w < 0 || w > 3650 {
				bad(f+".order_count.within_days", "%d is outside 0-3650", w)
			}
		case *campaignv1.Condition_OrderTotalAtLeast:
			m := k.OrderTotalAtLeast
			if m.GetAmountMinor() < 0 {
				bad(f+".order_total_at_least.amount_minor", "must not be negative, got %d", m.GetAmountMinor())
			}
			// As ingest checks orders: a code it refuses matches no order.
			if err := currency.Check(m.GetCurrency()); err != nil {
				bad(f+".order_total_at_least.currency", "%v", err)
			}
			if tr.GetEvent() != EventOrderPlaced {
				bad(f+".order_total_at_least", "needs trigger.event order.placed")
			}
		case *campaignv1.Condition_Locale:
			if k.Locale == "" || len(k.Locale) > 35 {
				bad(f+".locale", "want a BCP 47 language tag or prefix such as \"de\"")
			}
		case *campaignv1.Condition_DaysSinceLastOrderAtLeast:
			if d := k.DaysSinceLastOrderAtLeast; d < 1 || d > 3650 {
				bad(f+".days_since_last_order_at_least", "%d is outside 1-3650", d)
			}
		case *campaignv1.Condition_RenewalWithinDays:
			p.Renewal = true
			if d := k.RenewalWithinDays; d < 0 || d > 366 {
				bad(f+".renewal_within_days", "%d is outside 0-366", d)
			}
		case *campaignv1.Condition_TopRevenuePercent:
			if d := k.TopRevenuePercent; d < 1 || d > 100 {
				bad(f+".top_revenue_percent", "%d is outside 1-100", d)
			}
		case *campaignv1.Condition_ChurnBand:
			if k.ChurnBand == churnv1.RiskBand_RISK_BAND_UNSPECIFIED || churnv1.RiskBand_name[int32(k.ChurnBand)] == "" {
				bad(f+".churn_band", "unknown band %d", k.ChurnBand)
			}
		case *campaignv1.Condition_RfmSegment:
			if len(k.RfmSegment.GetSegments()) == 0 {
				bad(f+".rfm_segment.segments", "set at least one segment, e.g. RFM_SEGMENT_CHAMPIONS")
			}
			for j, seg := range k.RfmSegment.GetSegments() {
				if seg == metricsv1.RFMSegment_RFM_SEGMENT_UNSPECIFIED || metricsv1.RFMSegment_name[int32(seg)] == "" {
					bad(fmt.Sprintf("%s.rfm_segment.segments[%d]", f, j), "unknown segment %d: want RFM_SEGMENT_CHAMPIONS, _LOYAL, ... _LOST", seg)
				}
			}
		}
	}

	// Goal.
	p.GoalEvent = EventOrderPlaced
	if g := c.GetGoal().GetEvent(); g != "" {
		if !slices.Contains(TriggerEvents, g) {
			bad("goal.event", "unknown event %q: want one of %s", g, strings.Join(TriggerEvents, ", "))
		}
		p.GoalEvent = g
	}
	p.Attribution = dur("goal.attribution_window", c.GetGoal().GetAttributionWindow(), DefaultAttribution, time.Hour)

	// Entry policy.
	switch k := c.GetEntry().GetPolicy().(type) {
	case *campaignv1.EntryPolicy_OncePer:
		p.EntryEvery = dur("entry.once_per", k.OncePer, 0, time.Hour)
	case *campaignv1.EntryPolicy_OncePerKey:
		// A key the event does not carry would fall back to the event id
		// (Trigger.Key): once per event, not what the file says.
		keys := entryKeysOf(tr)
		_, event := tr.GetKind().(*campaignv1.Trigger_Event)
		switch {
		case keys == nil:
			bad("entry.once_per_key", "needs an event trigger (a schedule has no event to key by)")
		case stored || slices.Contains(keys, k.OncePerKey):
		case tr.GetKind() == nil || event && !slices.Contains(TriggerEvents, tr.GetEvent()):
			// The trigger's own violation says what is wrong.
		default:
			bad("entry.once_per_key", "%s has no key %q: want one of %s", triggerName(tr), k.OncePerKey, strings.Join(keys, ", "))
		}
		p.EntryKey = k.OncePerKey
	}

	// Steps.
	steps := c.GetSteps()
	if len(steps) == 0 {
		bad("steps", "at least one step is required")
	} else if len(steps) > MaxSteps {
		bad("steps", "%d steps: at most %d", len(steps), MaxSteps)
	}
	index := map[string]int{}
	for i, s := range steps {
		if !idRE.MatchString(s.GetId()) {
			bad(fmt.Sprintf("steps[%d].id", i), "%q does not match %s", s.GetId(), idRE.String())
		} else if _, dup := index[s.GetId()]; dup {
			bad(fmt.Sprintf("steps[%d].id", i), "%q is used by another step", s.GetId())
		} else {
			index[s.GetId()] = i
		}
	}
	jump := func(field, target string, def int) int {
		if target == "" {
			return def
		}
		j, ok := index[target]
		if !ok {
			bad(field, "no step has id %q", target)
			return -1
		}
		return j
	}
	p.Steps = make([]PlanStep, len(steps))
	for i, s := range steps {
		f := fmt.Sprintf("steps[%d]", i)
		ps := PlanStep{ID: s.GetId()}
		follow := i + 1
		if follow == len(steps) {
			follow = -1
		}
		ps.Next = jump(f+".next", s.GetNext(), follow)
		switch a := s.GetAction().(type) {
		case nil:
			bad(f, "has no action: set one of wait, send, issue_coupon, branch, exit")
		case *campaignv1.Step_Wait:
			ps.Kind = KindWait
			if a.Wait.GetDuration() == "" && a.Wait.GetUntilLocalTime() == "" {
				bad(f+".wait", "set duration, until_local_time or both")
			}
			if a.Wait.GetDuration() != "" {
				ps.Wait = dur(f+".wait.duration", a.Wait.GetDuration(), 0, 0)
			}
			if lt := a.Wait.GetUntilLocalTime(); lt != "" {
				if !localRE.MatchString(lt) {
					bad(f+".wait.until_local_time", "%q: want HH:MM, 00:00-23:59", lt)
				}
				ps.LocalTime = lt
			}
		case *campaignv1.Step_Send:
			ps.Kind = KindSend
			ps.Send = a.Send
			if a.Send.GetTemplateKey() == "" {
				bad(f+".send.template_key", "is required: the notifier template to send")
			} else if !tmplRE.MatchString(a.Send.GetTemplateKey()) {
				bad(f+".send.template_key", "%q does not match %s", a.Send.GetTemplateKey(), tmplRE.String())
			}
			if !knownChannel(a.Send.GetChannel()) {
				bad(f+".send.channel", "is required: CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_WEBHOOK")
			}
			if cat := a.Send.GetCategory(); notifierv1.Category_name[int32(cat)] == "" {
				bad(f+".send.category", "unknown category %d", cat)
			}
			for k := range a.Send.GetVariables() {
				if !varRE.MatchString(k) {
					bad(f+".send.variables", "name %q does not match %s", k, varRE.String())
				}
			}
			ps.Expiry = dur(f+".send.expires_after", a.Send.GetExpiresAfter(), DefaultExpiry, time.Minute)
		case *campaignv1.Step_IssueCoupon:
			ps.Kind = KindCoupon
			ps.Coupon = a.IssueCoupon
			if !prefixRE.MatchString(a.IssueCoupon.GetPrefix()) {
				bad(f+".issue_coupon.prefix", "%q: want up to 8 upper-case letters and digits", a.IssueCoupon.GetPrefix())
			}
			switch d := a.IssueCoupon.GetDiscount().(type) {
			case nil:
				bad(f+".issue_coupon", "set percent_off or amount_off")
			case *campaignv1.IssueCoupon_PercentOff:
				if d.PercentOff < 1 || d.PercentOff > 100 {
					bad(f+".issue_coupon.percent_off", "%d is outside 1-100", d.PercentOff)
				}
			case *campaignv1.IssueCoupon_AmountOff:
				if d.AmountOff.GetAmountMinor() <= 0 {
					bad(f+".issue_coupon.amount_off.amount_minor", "must be positive, got %d", d.AmountOff.GetAmountMinor())
				}
				if err := currency.Check(d.AmountOff.GetCurrency()); err != nil {
					bad(f+".issue_coupon.amount_off.currency", "%v", err)
				}
			}
			ps.Valid = dur(f+".issue_coupon.valid_for", a.IssueCoupon.GetValidFor(), DefaultCouponValid, time.Hour)
		case *campaignv1.Step_Branch:
			ps.Kind = KindBranch
			if a.Branch.GetTimeout() == "" {
				bad(f+".branch.timeout", "is required")
			} else {
				ps.Wait = dur(f+".branch.timeout", a.Branch.GetTimeout(), 0, time.Minute)
			}
			if !c.GetGoal().GetContinueAfterGoal() && !stored {
				// Reaching the goal ends the enrollment before a branch
				// could see it: the branch would only ever wait.
				bad(f+".branch", "its if_goal is never taken: reaching the goal ends the enrollment first (set goal.continue_after_goal: true, or use a wait)")
			}
			ps.IfGoal = jump(f+".branch.if_goal", a.Branch.GetIfGoal(), follow)
			ps.Otherwise = jump(f+".branch.otherwise", a.Branch.GetOtherwise(), follow)
		case *campaignv1.Step_Exit:
			ps.Kind = KindExit
			ps.Next = -1
		}
		p.Steps[i] = ps
	}
	// Every jump is a step's index or -1, even in a definition with other
	// violations, so a cycle is reported with them.
	if cyc := findCycle(p.Steps); cyc != "" {
		bad("steps", "step cycle %s: steps must not loop", cyc)
	}
	if len(vs) > 0 {
		return nil, &InvalidError{Violations: vs}
	}
	return p, nil
}

// triggerName names an event or churn band trigger in a violation.
func triggerName(tr *campaignv1.Trigger) string {
	if _, ok := tr.GetKind().(*campaignv1.Trigger_Event); ok {
		return "trigger.event " + tr.GetEvent()
	}
	return "trigger.churn_band"
}

func checkRange(bad func(string, string, ...any), field string, lo, hi *int32, min, max int32) {
	if lo == nil && hi == nil {
		bad(field, "set min, max or both")
		return
	}
	if lo != nil && (*lo < min || *lo > max) {
		bad(field+".min", "%d is outside %d-%d", *lo, min, max)
	}
	if hi != nil && (*hi < min || *hi > max) {
		bad(field+".max", "%d is outside %d-%d", *hi, min, max)
	}
	if lo != nil && hi != nil && *lo > *hi {
		bad(field, "min %d is above max %d", *lo, *hi)
	}
}

// findCycle returns a cycle of step ids as "a -> b -> a", or "".
func findCycle(steps []PlanStep) string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(steps))
	var path []int
	var found []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		path = append(path, i)
		for _, j := range successors(steps[i]) {
			if j < 0 {
				continue
			}
			if color[j] == grey {
				k := slices.Index(path, j)
				found = append(slices.Clone(path[k:]), j)
				return true
			}
			if color[j] == white && visit(j) {
				return true
			}
		}
		path = path[:len(path)-1]
		color[i] = black
		return false
	}
	for i := range steps {
		if color[i] == white && visit(i) {
			ids := make([]string, len(found))
			for n, j := range found {
				ids[n] = steps[j].ID
			}
			return strings.Join(ids, " -> ")
		}
	}
	return ""
}

func successors(s PlanStep) []int {
	if s.Kind == KindBranch {
		return []int{s.IfGoal, s.Otherwise}
	}
	return []int{s.Next}
}
