package domain

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
)

const valid = `
id: t
name: Test
trigger: {event: order.placed}
steps:
  - id: a
    send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}
`

func mustDecode(t *testing.T, s string) *campaignv1.Campaign {
	t.Helper()
	c, err := campaignfile.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCompileRejectsBadCampaignsNamingTheField(t *testing.T) {
	tests := []struct {
		name, file, field, words string
	}{
		{"unknown trigger", `{id: t, name: T, trigger: {event: order.shipped}, steps: [{id: a, exit: {}}]}`, "trigger.event", "unknown trigger"},
		{"no trigger", `{id: t, name: T, steps: [{id: a, exit: {}}]}`, "trigger", "required"},
		{"step cycle", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, wait: {duration: 1d}, next: b}, {id: b, wait: {duration: 1d}, next: a}]}`, "steps", "cycle a -> b -> a"},
		{"branch cycle", `{id: t, name: T, trigger: {event: order.placed}, goal: {continue_after_goal: true}, steps: [{id: a, branch: {timeout: 1d, if_goal: a, otherwise: b}}, {id: b, exit: {}}]}`, "steps", "cycle"},
		{"branch the goal never reaches", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, branch: {timeout: 1d, if_goal: b, otherwise: b}}, {id: b, exit: {}}]}`, "steps[0].branch", "never taken"},
		{"missing template", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, send: {channel: CHANNEL_EMAIL}}]}`, "steps[0].send.template_key", "required"},
		{"missing channel", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, send: {template_key: x}}]}`, "steps[0].send.channel", "required"},
		{"holdout above 90", `{id: t, name: T, holdout_percent: 95, trigger: {event: order.placed}, steps: [{id: a, exit: {}}]}`, "holdout_percent", "95 is outside 0-90"},
		{"holdout negative", `{id: t, name: T, holdout_percent: -1, trigger: {event: order.placed}, steps: [{id: a, exit: {}}]}`, "holdout_percent", "outside"},
		{"wait over a year", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, wait: {duration: 400d}}]}`, "steps[0].wait.duration", "longer than a year"},
		{"bad wait", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, wait: {duration: soon}}]}`, "steps[0].wait.duration", "not a duration"},
		{"bad local time", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, wait: {until_local_time: "25:00"}}]}`, "steps[0].wait.until_local_time", "HH:MM"},
		{"unknown jump", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, exit: {}, next: zz}]}`, "steps[0].next", "no step has id"},
		{"duplicate step", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, exit: {}}, {id: a, exit: {}}]}`, "steps[1].id", "another step"},
		{"no steps", `{id: t, name: T, trigger: {event: order.placed}}`, "steps", "at least one"},
		{"bad id", `{id: "Big ID", name: T, trigger: {event: order.placed}, steps: [{id: a, exit: {}}]}`, "id", "does not match"},
		{"nps without survey", `{id: t, name: T, trigger: {event: order.placed}, conditions: [{nps_score: {max: 6}}], steps: [{id: a, exit: {}}]}`, "conditions[0].nps_score", "survey.answered"},
		{"nps out of range", `{id: t, name: T, trigger: {event: survey.answered}, conditions: [{nps_score: {max: 11}}], steps: [{id: a, exit: {}}]}`, "conditions[0].nps_score.max", "outside 0-10"},
		{"schedule without conditions", `{id: t, name: T, trigger: {schedule: {every: 1d}}, steps: [{id: a, exit: {}}]}`, "conditions", "at least one"},
		{"bad entry key", `{id: t, name: T, trigger: {event: order.placed}, entry: {once_per_key: color}, steps: [{id: a, exit: {}}]}`, "entry.once_per_key", `trigger.event order.placed has no key "color": want one of order_id, event_id`},
		{"entry key of another event", `{id: t, name: T, trigger: {event: order.placed}, entry: {once_per_key: ticket_id}, steps: [{id: a, exit: {}}]}`, "entry.once_per_key", `trigger.event order.placed has no key "ticket_id": want one of order_id, event_id`},
		{"entry key of a survey on a ticket", `{id: t, name: T, trigger: {event: ticket.resolved}, entry: {once_per_key: survey_id}, steps: [{id: a, exit: {}}]}`, "entry.once_per_key", `want one of ticket_id, event_id`},
		{"entry key of a profile", `{id: t, name: T, trigger: {event: customer.updated}, entry: {once_per_key: order_id}, steps: [{id: a, exit: {}}]}`, "entry.once_per_key", `want one of event_id`},
		{"entry key of a churn band", `{id: t, name: T, trigger: {churn_band: RISK_BAND_HIGH}, entry: {once_per_key: order_id}, steps: [{id: a, exit: {}}]}`, "entry.once_per_key", `trigger.churn_band has no key "order_id": want one of event_id`},
		{"condition currency lower case", `{id: t, name: T, trigger: {event: order.placed}, conditions: [{order_total_at_least: {amount_minor: 5000, currency: eur}}], steps: [{id: a, exit: {}}]}`, "conditions[0].order_total_at_least.currency", `"eur" must be upper case: "EUR"`},
		{"condition currency unknown", `{id: t, name: T, trigger: {event: order.placed}, conditions: [{order_total_at_least: {amount_minor: 5000, currency: XYZ}}], steps: [{id: a, exit: {}}]}`, "conditions[0].order_total_at_least.currency", "not an ISO 4217 currency code"},
		{"coupon currency unknown", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, issue_coupon: {amount_off: {amount_minor: 500, currency: XYZ}}}]}`, "steps[0].issue_coupon.amount_off.currency", "not an ISO 4217 currency code"},
		{"coupon amount zero", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, issue_coupon: {amount_off: {amount_minor: 0, currency: EUR}}}]}`, "steps[0].issue_coupon.amount_off.amount_minor", "must be positive"},
		{"coupon percent", `{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, issue_coupon: {percent_off: 150}}]}`, "steps[0].issue_coupon.percent_off", "1-100"},
		{"rfm segment unspecified", `{id: t, name: T, trigger: {schedule: {}}, conditions: [{locale: de}, {rfm_segment: {segments: [RFM_SEGMENT_LOYAL, RFM_SEGMENT_UNSPECIFIED]}}], steps: [{id: a, exit: {}}]}`, "conditions[1].rfm_segment.segments[1]", "unknown segment 0"},
		{"rfm segment unknown number", `{id: t, name: T, trigger: {schedule: {}}, conditions: [{rfm_segment: {segments: [99]}}], steps: [{id: a, exit: {}}]}`, "conditions[0].rfm_segment.segments[0]", "unknown segment 99"},
		{"rfm segment none", `{id: t, name: T, trigger: {schedule: {}}, conditions: [{rfm_segment: {segments: []}}], steps: [{id: a, exit: {}}]}`, "conditions[0].rfm_segment.segments", "at least one"},
		{"attribution over a year", `{id: t, name: T, trigger: {event: order.placed}, goal: {attribution_window: 2y}, steps: [{id: a, exit: {}}]}`, "goal.attribution_window", "not a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(mustDecode(t, tt.file))
			inv, ok := err.(*InvalidError)
			if !ok {
				t.Fatalf("Compile = %v, want an InvalidError", err)
			}
			for _, v := range inv.Violations {
				if v.Field == tt.field && strings.Contains(v.Description, tt.words) {
					return
				}
			}
			t.Fatalf("violations %+v lack %s: ...%s...", inv.Violations, tt.field, tt.words)
		})
	}
}

// TestCompileReportsTheCycleWithOtherViolations: every violation at
// once, the step cycle too.
func TestCompileReportsTheCycleWithOtherViolations(t *testing.T) {
	_, err := Compile(mustDecode(t, `{id: t, name: T, holdout_percent: 95, trigger: {event: order.placed}, entry: {once_per_key: ticket_id},
steps: [{id: a, wait: {duration: 1d}, next: b}, {id: b, wait: {duration: 1d}, next: a}]}`))
	inv, ok := err.(*InvalidError)
	if !ok {
		t.Fatalf("Compile = %v, want an InvalidError", err)
	}
	var got []string
	for _, v := range inv.Violations {
		got = append(got, v.Field+": "+v.Description)
	}
	want := []string{
		"holdout_percent: 95 is outside 0-90",
		`entry.once_per_key: trigger.event order.placed has no key "ticket_id": want one of order_id, event_id`,
		"steps: step cycle a -> b -> a: steps must not loop",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("violations\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCompileStoredKeepsWhatWasAccepted: a version stored before a rule
// was added still runs as saved (its batches would otherwise fail for
// good); a new definition is held to the rule.
func TestCompileStoredKeepsWhatWasAccepted(t *testing.T) {
	for _, file := range []string{
		`{id: t, name: T, trigger: {event: order.placed}, entry: {once_per_key: ticket_id}, steps: [{id: a, exit: {}}]}`,
		`{id: t, name: T, trigger: {event: order.placed}, steps: [{id: a, branch: {timeout: 1d, if_goal: b, otherwise: b}}, {id: b, exit: {}}]}`,
	} {
		c := mustDecode(t, file)
		if _, err := Compile(c); err == nil {
			t.Fatalf("Compile accepted %s", file)
		}
		p, err := CompileStored(c)
		if err != nil {
			t.Fatalf("CompileStored(%s): %v", file, err)
		}
		if c.GetEntry().GetOncePerKey() != "" && p.EntryKey != "ticket_id" {
			t.Fatalf("entry key %q", p.EntryKey)
		}
	}
	// What no release accepted stays refused.
	if _, err := CompileStored(mustDecode(t, `{id: t, name: T, holdout_percent: 95, trigger: {event: order.placed}, steps: [{id: a, exit: {}}]}`)); err == nil {
		t.Fatal("CompileStored accepted a holdout of 95%")
	}
}

func TestDecodeFileRejectsUnknownFields(t *testing.T) {
	if _, err := campaignfile.Decode([]byte("id: t\nname: T\ntrigerr: {event: order.placed}\n")); err == nil || !strings.Contains(err.Error(), "trigerr") {
		t.Fatalf("err = %v, want it to name the unknown field", err)
	}
	if _, err := campaignfile.Decode([]byte("- a\n- b\n")); err == nil {
		t.Fatal("a list at the top level was accepted")
	}
}

func TestEncodeFileRoundTrips(t *testing.T) {
	pbs, err := Playbooks()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pbs {
		b, err := campaignfile.Encode(p.Campaign)
		if err != nil {
			t.Fatal(err)
		}
		back, err := campaignfile.Decode(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", p.Name, err, b)
		}
		if _, err := Compile(back); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"3d": 72 * time.Hour, "2w": 336 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "3x", "-1h", "1y"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

type recorder struct{ sends, coupons []string }

func (r *recorder) Send(s *PlanStep) error        { r.sends = append(r.sends, s.ID); return nil }
func (r *recorder) IssueCoupon(s *PlanStep) error { r.coupons = append(r.coupons, s.ID); return nil }

func TestAdvanceRunsDueStepsAndWaits(t *testing.T) {
	c := mustDecode(t, `
id: t
name: T
trigger: {event: order.placed}
goal: {continue_after_goal: true}
steps:
  - {id: first, send: {channel: CHANNEL_EMAIL, template_key: a}}
  - {id: wait, wait: {duration: 2d, until_local_time: "10:00"}}
  - {id: coupon, issue_coupon: {percent_off: 10}}
  - {id: check, branch: {timeout: 1d, if_goal: done, otherwise: second}}
  - {id: second, send: {channel: CHANNEL_EMAIL, template_key: b}}
  - {id: done, exit: {}}
`)
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	anchor := time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)
	r := &recorder{}
	pr, err := p.Advance(Cursor{Step: 0, Due: anchor}, anchor, berlin, false, false, r)
	if err != nil {
		t.Fatal(err)
	}
	// 2 days after 15:00 UTC, then the next 10:00 in Berlin (09:00 UTC in March).
	wantDue := time.Date(2026, 3, 5, 9, 0, 0, 0, time.UTC)
	if pr.Status != StatusActive || pr.Cursor.Step != 2 || !pr.Cursor.Due.Equal(wantDue) || len(r.sends) != 1 {
		t.Fatalf("after entry: %+v sends %v", pr, r.sends)
	}
	pr, _ = p.Advance(pr.Cursor, wantDue, berlin, false, false, r)
	if pr.Cursor.Step != 3 || !pr.Cursor.Armed || !pr.Cursor.Due.Equal(wantDue.Add(24*time.Hour)) || len(r.coupons) != 1 {
		t.Fatalf("at the coupon: %+v", pr)
	}
	held := pr.Cursor
	pr, _ = p.Advance(held, wantDue.Add(24*time.Hour), berlin, false, false, r)
	if pr.Status != StatusExited || len(r.sends) != 2 {
		t.Fatalf("branch without goal: %+v sends %v", pr, r.sends)
	}
	r2 := &recorder{}
	pr, _ = p.Advance(held, wantDue.Add(24*time.Hour), berlin, false, true, r2)
	if pr.Status != StatusExited || len(r2.sends) != 0 {
		t.Fatalf("branch with goal: %+v sends %v", pr, r2.sends)
	}
	// A goal wakes the armed branch early (the store makes it due at the
	// goal) and one reached before the branch decides it on arrival.
	woken := held
	woken.Due = wantDue.Add(time.Hour)
	r4 := &recorder{}
	pr, _ = p.Advance(woken, woken.Due, berlin, false, true, r4)
	if pr.Status != StatusExited || len(r4.sends) != 0 || !slices.Equal(pr.Done, []string{"check", "done"}) {
		t.Fatalf("branch woken by the goal: %+v sends %v", pr, r4.sends)
	}
	pr, _ = p.Advance(Cursor{Step: 3, Due: wantDue}, wantDue, berlin, false, true, r4)
	if pr.Status != StatusExited || len(r4.sends) != 0 {
		t.Fatalf("branch reached after the goal: %+v sends %v", pr, r4.sends)
	}
	// Holdout members walk the same steps but nothing is sent or issued.
	r3 := &recorder{}
	pr, _ = p.Advance(Cursor{Step: 0, Due: anchor}, anchor.Add(30*24*time.Hour), berlin, true, false, r3)
	if pr.Status != StatusExited || len(r3.sends)+len(r3.coupons) != 0 || len(pr.Done) != 6 {
		t.Fatalf("holdout: %+v %v", pr, r3)
	}
}

func TestHoldoutIsDeterministicAndProportional(t *testing.T) {
	in := 0
	for i := range 20000 {
		c := "c-" + string(rune('a'+i%26)) + time.Duration(i).String()
		a := InHoldout("shop", "win-back", c, 10)
		if a != InHoldout("shop", "win-back", c, 10) {
			t.Fatal("not deterministic")
		}
		if a {
			in++
		}
	}
	if in < 1800 || in > 2200 {
		t.Fatalf("%d of 20000 in a 10%% holdout", in)
	}
	if InHoldout("shop", "x", "c", 0) {
		t.Fatal("0% holdout holds someone out")
	}
}

// TestEnrollmentRef: an enrollment's ref is a function of its whole key
// (each part, and where one part ends, changes it), 26 characters of
// lower-case base32, and the longest request id made from it stays within
// what the notifier's deliveries API takes as a request id (256 bytes).
func TestEnrollmentRef(t *testing.T) {
	ref := EnrollmentRef("shop", "win-back", "c-1", "order_id:o-1")
	if ref != EnrollmentRef("shop", "win-back", "c-1", "order_id:o-1") {
		t.Fatal("not deterministic")
	}
	if len(ref) != 26 || strings.Trim(ref, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("ref %q is not 26 characters of lower-case base32", ref)
	}
	for _, other := range [][4]string{
		{"shop-2", "win-back", "c-1", "order_id:o-1"},
		{"shop", "win-back-2", "c-1", "order_id:o-1"},
		{"shop", "win-back", "c-2", "order_id:o-1"},
		{"shop", "win-back", "c-1", "order_id:o-2"},
		{"shop", "win-back", "c-1order_id:o-1", ""},
	} {
		if EnrollmentRef(other[0], other[1], other[2], other[3]) == ref {
			t.Errorf("%q has the ref of another key", other)
		}
	}
	long := strings.Repeat("x", 63)
	if id := RequestID(long, EnrollmentRef("t", long, "c", "k"), long); len(id) > 256 {
		t.Fatalf("request id of %d bytes", len(id))
	}
}

func TestCouponCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		c, err := NewCouponCode("LOYAL")
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != len("LOYAL-XXXXX-XXXXX") || !strings.HasPrefix(c, "LOYAL-") || seen[c] {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
		for _, r := range strings.ReplaceAll(c[6:], "-", "") {
			if !strings.ContainsRune(CouponAlphabet, r) || strings.ContainsRune("0O1IL2Z5S8B", r) {
				t.Fatalf("code %q has %q", c, r)
			}
		}
	}
	if NormalizeCoupon(" loyal-acd ef ") != "LOYAL-ACDEF" {
		t.Fatal("normalize")
	}
}

// TestLiftIntervalHandComputed checks Newcombe's hybrid score interval on
// his own example (Newcombe 1998, Stat Med 17:873, example (a): 56/70 vs
// 48/80), computed by hand:
//
//	p1 = 0.8, Wilson 95% (0.69183, 0.87695); p2 = 0.6, Wilson (0.49045, 0.70038)
//	D = 0.2
//	L = 0.2 - sqrt((0.8-0.69183)^2 + (0.70038-0.6)^2) = 0.2 - 0.14757 = 0.0524
//	U = 0.2 + sqrt((0.87695-0.8)^2 + (0.6-0.49045)^2) = 0.2 + 0.13387 = 0.3339
//
// which is the published 0.0524 to 0.3339.
func TestLiftIntervalHandComputed(t *testing.T) {
	l := ComputeLift(56, 70, 48, 80)
	near := func(got, want, tol float64) bool { return math.Abs(got-want) <= tol }
	if !near(l.Absolute, 0.2, 1e-12) || !near(l.AbsoluteCI.Low, 0.0524, 5e-5) || !near(l.AbsoluteCI.High, 0.3339, 5e-5) {
		t.Fatalf("absolute lift %v %+v, want 0.2 (0.0524, 0.3339)", l.Absolute, l.AbsoluteCI)
	}
	// Relative: RR = 0.8/0.6 = 1.33333, se(log RR) = sqrt(1/56 - 1/70 + 1/48 - 1/80)
	// = sqrt(0.0119048) = 0.109109, exp(1.96 x 0.109109) = 1.23843, so RR / 1.23843 = 1.07663
	// and RR x 1.23843 = 1.65124: the lift RR - 1 is 0.3333 (0.0766, 0.6512).
	if !near(l.Relative, 1.0/3, 1e-12) || !near(l.RelativeCI.Low, 0.0766, 5e-5) || !near(l.RelativeCI.High, 0.6512, 5e-5) {
		t.Fatalf("relative lift %v %+v", l.Relative, l.RelativeCI)
	}
	w := Wilson(0, 10, Z95)
	if w.Low != 0 || !near(w.High, 0.2775, 5e-5) {
		t.Fatalf("Wilson(0/10) = %+v", w)
	}
	if got := Incremental(10000, 100, 1000, 20); got != 5000 {
		t.Fatalf("incremental = %d, want (100 - 50) x 100 = 5000", got)
	}
}

// TestAALiftCoversZero simulates a campaign with no effect: treated and
// holdout convert at the same rate, so about 95% of the intervals must
// cover zero.
func TestAALiftCoversZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 7))
	const reps = 4000
	for _, sc := range []struct {
		n1, n2 int
		p      float64
	}{{900, 100, 0.1}, {2000, 500, 0.3}, {300, 300, 0.05}} {
		covered := 0
		for range reps {
			var x1, x2 int64
			for range sc.n1 {
				if rng.Float64() < sc.p {
					x1++
				}
			}
			for range sc.n2 {
				if rng.Float64() < sc.p {
					x2++
				}
			}
			ci := ComputeLift(x1, int64(sc.n1), x2, int64(sc.n2)).AbsoluteCI
			if ci.Low <= 0 && ci.High >= 0 {
				covered++
			}
		}
		rate := float64(covered) / reps
		t.Logf("n=%d/%d p=%.2f: %.1f%% of intervals cover 0", sc.n1, sc.n2, sc.p, 100*rate)
		if rate < 0.935 || rate > 0.97 {
			t.Errorf("n=%d/%d p=%.2f: coverage %.3f, want about 0.95", sc.n1, sc.n2, sc.p, rate)
		}
	}
}

func FuzzDecodeFile(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(`{"id":"x","trigger":{"schedule":{"every":"1d"}}}`))
	f.Add([]byte("id: r\nname: R\ntrigger: {schedule: {every: 1d}}\nconditions: [{rfm_segment: {segments: [RFM_SEGMENT_CHAMPIONS, 2]}}]\nsteps: [{id: a, exit: {}}]\n"))
	f.Add([]byte("id: [1, 2]\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte(valid + "state: CAMPAIGN_STATE_PAUSED\nversion: 7\nplaybook: win-back\ncreated_at: 2026-01-02T03:04:05Z\n"))
	f.Add([]byte("id: x\nconditions:\n  - rfm_segment: {segments: [RFM_SEGMENT_CHAMPIONS, RFM_SEGMENT_LOYAL}\n"))
	f.Add([]byte("id: x\nname: \"X\nsteps:\n\t- id: a\n"))
	f.Add([]byte("{\n  \"id\": \"x\",\n  \"name\": \"X\",\n}\n"))
	f.Add([]byte("\ufeff{\"id\": \"x\", \"steps\": [{\"id\": \"a\", \"exit\": {}}], \"id\": \"y\"} {}"))
	f.Add([]byte(`{"id": "x", "priority": 1e400, "holdout_percent": 18446744073709551615, "name": "\u00e9"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"c.yaml", "c.json"} {
			c, err := campaignfile.DecodeFile(name, data)
			if err != nil {
				continue
			}
			// Whatever decodes must compile or fail with named violations, never panic.
			if _, err := Compile(c); err != nil {
				if inv, ok := err.(*InvalidError); !ok || len(inv.Violations) == 0 {
					t.Fatalf("Compile error %v is not a list of violations", err)
				}
			}
			// And its file form reads back as the same campaign.
			out, err := campaignfile.Encode(c)
			if err != nil {
				t.Fatalf("encode %v: %v", c, err)
			}
			again, err := campaignfile.Decode(out)
			if err != nil || !proto.Equal(again, c) {
				t.Fatalf("round trip of %s: %v\n%s", name, err, out)
			}
		}
	})
}

// summarize is c with its orders before since only summed up, counted up
// to countCap (negative: all), as the store loads a long history.
func summarize(c *Customer, since time.Time, countCap int64) *Customer {
	s := *c
	s.Orders, s.Since = nil, since
	for _, o := range c.Orders {
		if o.At.Before(since) {
			if countCap < 0 || s.Earlier.Count < countCap {
				s.Earlier.Count++
			}
			s.Earlier.Last = o.At // oldest first
		} else {
			s.Orders = append(s.Orders, o)
		}
	}
	return &s
}

// TestEarlierOrdersOnlyCounted: every condition on orders gives the same
// answer for a customer whose orders before the HistoryNeeds window of the
// earliest instant evaluated are only summed up (counted to its cap) as
// for the customer with every order listed, over random histories,
// instants, windows and bounds.
func TestEarlierOrdersOnlyCounted(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	conds := []string{
		"{order_count: {min: %d, max: %d}}",
		"{order_count: {min: %d, max: %d, within_days: %d}}",
		"{days_since_last_order_at_least: %d}",
		"{top_revenue_percent: %d}",
		"{rfm_segment: {segments: [RFM_SEGMENT_CHAMPIONS, RFM_SEGMENT_LOYAL, RFM_SEGMENT_AT_RISK, RFM_SEGMENT_HIBERNATING]}}",
	}
	var customers []*Customer
	var values []RFMValue
	for i := range 300 {
		c := &Customer{ID: fmt.Sprintf("c%d", i)}
		at := now.Add(-time.Duration(rng.IntN(4*365*24)) * time.Hour)
		for range rng.IntN(40) {
			c.Orders = append(c.Orders, Order{ID: fmt.Sprint(len(c.Orders)), At: at, TotalMinor: int64(rng.IntN(9000)), Currency: "EUR"})
			at = at.Add(time.Duration(rng.IntN(90*24)) * time.Hour)
		}
		customers = append(customers, c)
	}
	scalesAt := now.Add(-3 * time.Minute)
	for _, c := range customers {
		var v RFMValue
		for _, o := range c.Orders {
			if o.At.Before(scalesAt) {
				v.Orders++
				v.LastOrder = o.At
			}
		}
		if v.Orders > 0 {
			values = append(values, v)
		}
	}
	env := Env{Now: now, TopRevenue: map[int32]int64{20: 30000}, RFM: NewRFMScales(scalesAt, values)}
	checked := 0
	for range 400 {
		var cond string
		switch k := rng.IntN(len(conds)); k {
		case 0:
			lo := rng.IntN(5)
			cond = fmt.Sprintf(conds[k], lo, lo+rng.IntN(30))
		case 1:
			lo := rng.IntN(5)
			cond = fmt.Sprintf(conds[k], lo, lo+rng.IntN(10), 1+rng.IntN(1000))
		case 2:
			cond = fmt.Sprintf(conds[k], rng.IntN(400))
		case 3:
			cond = fmt.Sprintf(conds[k], 20)
		default:
			cond = conds[k]
		}
		p, err := Compile(mustDecode(t, strings.Replace(valid, "steps:", "conditions: ["+cond+"]\nsteps:", 1)))
		if err != nil {
			t.Fatal(err)
		}
		c := customers[rng.IntN(len(customers))]
		trig := &Trigger{Type: EventOrderPlaced, At: now.Add(-time.Duration(rng.IntN(30*24)) * time.Hour)}
		need := HistoryNeeds([]*Plan{p})
		since := slices.MinFunc([]time.Time{trig.At, env.Now, env.RFM.At}, time.Time.Compare).Add(-need.Window)
		full, part := p.Matches(c, trig, env), p.Matches(summarize(c, since, need.CountCap), trig, env)
		if full != part {
			t.Fatalf("%s for %d orders, trigger at %s, since %s: %v listed, %v with the earlier ones counted",
				cond, len(c.Orders), trig.At, since, full, part)
		}
		if len(summarize(c, since, need.CountCap).Orders) < len(c.Orders) {
			checked++
		}
	}
	if checked < 100 {
		t.Fatalf("only %d evaluations had orders counted rather than listed", checked)
	}
}
