package notifier_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
)

// smsAwaitingAnswer sends SMS request sms-1 to customer c of shop and
// returns once the SMS provider has the call, holding its answer until the
// returned channel is closed.
func (s *stack) smsAwaitingAnswer(t *testing.T) chan struct{} {
	t.Helper()
	s.customers(t, "shop", customer{id: "c", phone: "+4915112345678", smsConsent: granted})
	answer := make(chan struct{})
	s.sms.mu.Lock()
	s.sms.gate = answer
	s.sms.mu.Unlock()
	r := marketingEmail("shop", "sms-1", "c", "winback")
	r.Channel = notifierv1.Channel_CHANNEL_SMS
	s.request(t, r, "")
	testenv.WaitFor(t, "the provider to be called", func() bool { calls, _ := s.sms.stats(); return calls == 1 })
	return answer
}

// TestSendResultHeldThroughDatabaseOutage is QA's repro: the notifier's
// database goes away while the SMS provider is still answering a send. The provider accepts it; the notifier holds that answer until the
// database is back and saves it then, so when the attempt's lease runs out
// afterwards (QA: 2 minutes after the attempt, 10 s after the database
// came back) nothing is left to reclaim and nothing is sent twice. Before,
// the answer was dropped and the message sent again after the lease, under
// a trail step blaming a crash.
func TestSendResultHeldThroughDatabaseOutage(t *testing.T) {
	s := setup(t)
	answer := s.smsAwaitingAnswer(t)

	end := testenv.DatabaseOutage(t, s.db)
	close(answer) // accepted while the database is away
	s.logs.WaitFor(t, "notifier sender pass: database unreachable")
	time.Sleep(2 * time.Second) // a few tries to save the answer fail
	end()
	s.clock.Advance(notifier.DefaultConfig().Lease + time.Second)

	d := s.delivery(t, "shop", "sms-1", "sent")
	time.Sleep(10 * 50 * time.Millisecond) // ten sender polls with the lease run out: nothing to reclaim
	if calls, unique := s.sms.stats(); calls != 1 || unique != 1 {
		t.Fatalf("the provider saw %d calls (%d distinct messages), want 1", calls, unique)
	}
	if os := s.outcomes(t, "sms-1"); len(os) != 1 || os[0].GetOutcome() != notifierv1.Outcome_OUTCOME_SENT ||
		os[0].GetAttempts() != 1 || os[0].GetProviderMessageId() != "sms-shop/sms-1" {
		t.Fatalf("outcomes %v, want one SENT on attempt 1 with the provider's id", os)
	}
	d = s.delivery(t, "shop", "sms-1", "sent")
	steps := d.GetDecisions()
	last := steps[len(steps)-1]
	if d.GetAttempts() != 1 || last.GetStage() != "send" || last.GetVerdict() != "sent" || !strings.Contains(last.GetReason(), "id sms-shop/sms-1") {
		t.Errorf("attempts %d, last step %v, want sent on attempt 1 with the provider's id", d.GetAttempts(), last)
	}
	for _, x := range steps {
		if x.GetStage() == "reconcile" {
			t.Errorf("the trail has a reconcile step for an attempt that finished: %v", steps)
		}
	}

	// The outage is logged once when it starts, naming the held answer,
	// and once when it ends; no pass failed.
	out := s.logs.String()
	for what, want := range map[string]int{
		"notifier sender pass: database unreachable": 1, "notifier sender pass: database answers again": 1,
		"sender pass failed": 0,
	} {
		if n := strings.Count(out, what); n != want {
			t.Errorf("%d lines %q, want %d:\n%s", n, what, want, out)
		}
	}
	if !regexp.MustCompile(`msg="notifier sender pass: database unreachable.*" .*holding="the SMS provider's answer to attempt 1 of shop/sms-1 \(accepted, id sms-shop/sms-1\)"`).MatchString(out) {
		t.Errorf("the start of the outage does not say which answer is held:\n%s", out)
	}
}

// TestAcceptedAnswerAfterTakeoverIsTold: an answer that arrives after
// another attempt took the delivery over (its lease ran out: a stall, or
// an outage that cut only this replica off) is fenced out, and the log and
// the trail say that attempt 1 was accepted, with the provider's id, and
// that the message is sent again; the attempt that sends it again does not
// claim to know why attempt 1 recorded nothing.
func TestAcceptedAnswerAfterTakeoverIsTold(t *testing.T) {
	s := setup(t)
	answer := s.smsAwaitingAnswer(t)
	// Another replica takes the delivery over, as its ClaimSend would.
	if _, err := s.db.Exec(context.Background(), `UPDATE deliveries SET attempts = attempts + 1, lease_until = $1
		WHERE tenant = 'shop' AND request_id = 'sms-1' AND status = 'sending'`, s.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	close(answer)
	s.logs.WaitFor(t, "notifier could not save an accepted send's result before the attempt's lease ran out")
	// That replica stops before it sends: after its lease, this one does.
	s.clock.Advance(2 * time.Minute)
	d := s.delivery(t, "shop", "sms-1", "sent")
	if calls, unique := s.sms.stats(); calls != 2 || unique != 1 || d.GetAttempts() != 3 {
		t.Fatalf("the provider saw %d calls (%d distinct messages), the delivery %d attempts; want 2 calls of 1 message, 3 attempts", calls, unique, d.GetAttempts())
	}
	var trail []string
	for _, x := range d.GetDecisions() {
		trail = append(trail, x.GetStage()+" "+x.GetVerdict()+" "+x.GetReasonCode()+": "+x.GetReason())
	}
	got := strings.Join(trail, "\n")
	for _, want := range []string{
		"send superseded result_after_lease: attempt 1 was accepted by the SMS provider (id sms-shop/sms-1), but its result reached the database only after the attempt's lease ran out, and attempt 2 had taken the delivery over",
		"reconcile retry attempt_interrupted: attempt 2 recorded no result within its lease (its process stopped or stalled, or could not reach the database in time)",
		"send sent : accepted by the SMS provider on attempt 3 (id sms-shop/sms-1)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the trail lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "crash") {
		t.Errorf("the trail blames a crash:\n%s", got)
	}
	if !regexp.MustCompile(`provider_id=sms-shop/sms-1 taken_over_by_attempt=2`).MatchString(s.logs.String()) {
		t.Errorf("the log does not name the accepted send and its successor:\n%s", s.logs.String())
	}
}

// TestShutdownDuringHoldIsBounded: a shutdown while a provider's answer is
// held waits for the database up to half of RETAIN_SHUTDOWN_TIMEOUT, then
// gives the answer up, saying in the log that the message will be sent
// again; it does after the lease, once, with the same idempotency key.
func TestShutdownDuringHoldIsBounded(t *testing.T) {
	s := setup(t, func(c *notifier.Config) { c.Supervisor.ShutdownTimeout = 4 * time.Second })
	answer := s.smsAwaitingAnswer(t)
	end := testenv.DatabaseOutage(t, s.db)
	close(answer)
	s.logs.WaitFor(t, `holding="the SMS provider's answer to attempt 1 of shop/sms-1`)
	start := time.Now()
	s.stop() // fails the test if the shutdown timed out
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("the shutdown gave the held answer up after %s, want 2s (half the shutdown timeout)", took)
	}
	s.logs.WaitFor(t, "notifier stopped before it could save an accepted send's result")
	if !strings.Contains(s.logs.String(), "provider_id=sms-shop/sms-1") {
		t.Errorf("the log does not name the accepted send:\n%s", s.logs.String())
	}
	end()
	s.start(t)
	// The lease lapses; the restarted notifier's grace is over by then.
	s.clock.Advance(notifier.DefaultConfig().Lease + time.Second)
	d := s.delivery(t, "shop", "sms-1", "sent")
	if calls, unique := s.sms.stats(); calls != 2 || unique != 1 || d.GetAttempts() != 2 {
		t.Fatalf("the provider saw %d calls (%d distinct messages), the delivery %d attempts; want 2 calls of 1 message, 2 attempts", calls, unique, d.GetAttempts())
	}
}

// TestLapsedLeaseIsLeftToItsHolderAfterAnOutage: an attempt's lease may
// lapse during a long database outage while the replica that made the
// attempt holds the provider's answer (above). Once the database answers,
// that replica saves the answer within a second; another replica back
// from the same outage leaves the lapsed lease alone for a while, where it
// used to take the delivery over at its next poll and send the message
// again. A holder that never saves (it crashed) is still taken over, after
// the grace. The grace runs on the service's clock, which stands still
// here until the test moves it: no pass within it takes sms-2 over,
// including the first to reach the database (which used to), however
// slowly the passes run.
func TestLapsedLeaseIsLeftToItsHolderAfterAnOutage(t *testing.T) {
	s := setup(t)
	s.sentSMS(t)
	// Another replica's attempt at sms-2, under way: its lease has a
	// minute left.
	leaseUntil := s.clock.Now().Add(time.Minute)
	s.storedSMS(t, "sms-2", "sending", 1, &leaseUntil)
	end := testenv.DatabaseOutage(t, s.db)
	s.logs.WaitFor(t, "notifier sender pass: database unreachable")
	// The lease lapses during the outage, and the start's grace ends.
	s.clock.Advance(2 * time.Minute)
	end()
	s.logs.WaitFor(t, "notifier sender pass: database answers again")
	time.Sleep(2 * time.Second) // forty polls, two of the holder's tries
	if calls, _ := s.sms.stats(); calls != 1 {
		t.Fatalf("the provider saw %d calls: sms-2 was taken over from the replica holding its answer", calls)
	}
	// A holder that never saves (it crashed) is taken over after the
	// grace (5 s): the send is reconciled, once.
	s.clock.Advance(5 * time.Second)
	d := s.delivery(t, "shop", "sms-2", "sent")
	if calls, unique := s.sms.stats(); calls != 2 || unique != 2 || d.GetAttempts() != 2 {
		t.Fatalf("the provider saw %d calls of %d messages, sms-2 %d attempts; want sms-2 sent once more, on attempt 2", calls, unique, d.GetAttempts())
	}
}

// TestLongLapsedLeaseIsTakenOverAtOnce: the grace after an outage or a
// start does not hold back a send whose lease lapsed more than a lease
// ago, so a database whose connections keep dropping (each drop ends an
// outage and starts the grace again) cannot keep a crashed send waiting;
// one whose lease lapsed less than a lease ago waits for the grace (5 s).
// The grace runs on the service's clock, which stands still here until
// the test moves it, so "at once" is "within the grace" however slowly
// the machine runs.
func TestLongLapsedLeaseIsTakenOverAtOnce(t *testing.T) {
	s := setup(t)
	s.sentSMS(t)
	s.stop()
	// Attempts whose processes crashed: sms-2's two leases ago, sms-3's a
	// second ago.
	lease := notifier.DefaultConfig().Lease
	longAgo, justNow := s.clock.Now().Add(-2*lease), s.clock.Now().Add(-time.Second)
	s.storedSMS(t, "sms-2", "sending", 1, &longAgo)
	s.storedSMS(t, "sms-3", "sending", 1, &justNow)
	s.start(t)
	if d := s.delivery(t, "shop", "sms-2", "sent"); d.GetAttempts() != 2 {
		t.Fatalf("sms-2 was sent on attempt %d, want 2", d.GetAttempts())
	}
	waiting := func(when string) {
		t.Helper()
		time.Sleep(10 * 50 * time.Millisecond) // ten sender polls
		if d := s.delivery(t, "shop", "sms-3", "sending"); d.GetAttempts() != 1 {
			t.Fatalf("%s, sms-3 was taken over (attempt %d)", when, d.GetAttempts())
		}
	}
	waiting("within the start's grace")
	s.clock.Advance(4 * time.Second)
	waiting("4 s after the start")
	s.clock.Advance(time.Second)
	if d := s.delivery(t, "shop", "sms-3", "sent"); d.GetAttempts() != 2 {
		t.Fatalf("sms-3 was sent on attempt %d after the grace, want 2", d.GetAttempts())
	}
	if calls, unique := s.sms.stats(); calls != 3 || unique != 3 {
		t.Fatalf("the provider saw %d calls of %d messages, want one each of sms-1, sms-2 and sms-3", calls, unique)
	}
}

// TestRetryAfterExpiryIsSuppressed: the policy checks a request's expiry
// when it decides; a retry due after the expiry (a provider down for
// longer) used to be sent anyway. It is suppressed as expired instead,
// without a provider call.
func TestRetryAfterExpiryIsSuppressed(t *testing.T) {
	s := setup(t)
	s.sentSMS(t)
	s.stop()
	s.storedSMS(t, "sms-2", "queued", 1, nil)
	if _, err := s.db.Exec(context.Background(), `UPDATE deliveries SET expires_at = $1 WHERE request_id = 'sms-2'`, s.clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	d := s.delivery(t, "shop", "sms-2", "suppressed")
	last := d.GetDecisions()[len(d.GetDecisions())-1]
	if d.GetReasonCode() != "expired" || last.GetStage() != "expiry" || !strings.Contains(last.GetReason(), "before attempt 2 could be made") {
		t.Fatalf("delivery %s %s, last step %v; want suppressed expired before attempt 2", d.GetStatus(), d.GetReasonCode(), last)
	}
	if calls, _ := s.sms.stats(); calls != 1 {
		t.Fatalf("the provider saw %d calls, want only sms-1's", calls)
	}
	if os := s.outcomes(t, "sms-2"); len(os) != 1 || os[0].GetOutcome() != notifierv1.Outcome_OUTCOME_SUPPRESSED {
		t.Fatalf("outcomes %v, want one SUPPRESSED", os)
	}
}

// TestPassOutOfTimeIsLoggedOnce is QA's log flood: a send pass that runs
// out of time (QA: a hung database held its first messages until the
// pass's deadline; here a provider that answers slower than the timeout)
// fails every message it has left alike, at once, while the database
// answers. That is one line for the pass, not one per message; a result
// the database refused before the deadline is still told in that line.
func TestPassOutOfTimeIsLoggedOnce(t *testing.T) {
	s := setup(t, func(c *notifier.Config) {
		c.Lease, c.SendTimeout, c.SendWorkers = 2*time.Second, time.Second, 1
	})
	// The first message's result, saved at 1s (its provider timed out),
	// fails with an error of the database's that is not a timeout.
	if _, err := s.db.Exec(context.Background(), `
		CREATE FUNCTION refuse_result() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'test refuses the result'; END $$;
		CREATE TRIGGER refuse_result BEFORE UPDATE ON deliveries FOR EACH ROW
		WHEN (OLD.status = 'sending') EXECUTE FUNCTION refuse_result()`); err != nil {
		t.Fatal(err)
	}
	var cs []customer
	for i := range 10 {
		cs = append(cs, customer{id: fmt.Sprint("c", i), phone: fmt.Sprint("+49151123456", 10+i), smsConsent: granted})
	}
	s.customers(t, "shop", cs...)
	s.sms.mu.Lock()
	s.sms.hang, s.sms.hangN = 1500*time.Millisecond, 10
	s.sms.mu.Unlock()
	for i := range 10 {
		r := marketingEmail("shop", fmt.Sprint("sms-", i), fmt.Sprint("c", i), "winback")
		r.Channel = notifierv1.Channel_CHANNEL_SMS
		s.request(t, r, "")
	}
	s.logs.WaitFor(t, "the pass ran out of its 2s")
	out := s.logs.String()
	if n := strings.Count(out, "notifier could not prepare a message"); n != 0 {
		t.Errorf("%d lines for the messages a pass out of time had left, want none:\n%s", n, out)
	}
	line := regexp.MustCompile(`msg="notifier sender pass failed, retrying" .*error="the pass ran out of its 2s before [1-9] of its \d+ messages were done.*`).FindString(out)
	if line == "" {
		t.Errorf("the pass's line does not count the messages left:\n%s", out)
	}
	// The time out quotes a timeout and the refusal follows it, not
	// counted among the messages the pass had no time for.
	if !regexp.MustCompile(`were done \([^)]*\): [^"]*deadline exceeded\\n[^"]*test refuses the result`).MatchString(line) {
		t.Errorf("the pass's line does not tell a failure before its deadline apart:\n%s", out)
	}
}
