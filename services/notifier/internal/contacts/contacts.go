// Package contacts turns customer.updated facts into the notifier's contact
// records. A field is a value stamped with the event that set it; merging
// keeps, per field, the value of the latest event (by event time, then event
// id), and empty values never overwrite: so the same facts applied in any
// order, any number of times, give the same contact.
//
// A channel's marketing consent keeps more than the shop's latest report:
// also where the run of reports of that value began (decision 0046). Shops
// send the whole profile on every sync, so a grant repeated is no news and
// counts from when the shop's consent changed to granted: it does not undo
// an unsubscribe that came after that.
package contacts

import (
	"slices"
	"time"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// Field names, in the order of Contact.Fields and of the table's columns.
const (
	Email = iota
	Phone
	FirstName
	LastName
	Locale
	TimeZone
	// EmailConsent and SMSConsent are the shop's latest report of the
	// channel's marketing consent; each has its run (consentFields).
	EmailConsent
	SMSConsent
	EmailConsentSince
	EmailConsentOther
	SMSConsentSince
	SMSConsentOther
	EmailConsentRunOf
	SMSConsentRunOf
	NumFields
)

// FieldNames are the column names of the fields.
var FieldNames = [NumFields]string{"email", "phone", "first_name", "last_name", "locale", "time_zone", "email_consent", "sms_consent",
	"email_consent_since", "email_consent_other", "sms_consent_since", "sms_consent_other", "email_consent_run_of", "sms_consent_run_of"}

// consentFields are a consent field and its run: since is the report the
// run of the shop's reports of the field's value is counted from (the
// first after other; when that one is not known, a report before it, down
// to other itself: which report came first after a late report of another
// value is not kept), other the latest report of another value (none: the
// shop reported nothing else), and of the latest report they were worked
// out with.
//
// A replica from before decision 0046 (during a rolling upgrade) writes
// only the latest report and leaves since and other as they were, so of
// is no longer the latest report. When the latest report has the run's
// value, the run goes on: what that replica applied is most likely the
// shop's routine sync repeating it, and counting from it would undo an
// unsubscribe made since. A revocation and new grant it applied in
// between cannot be told from that (the grant overwrote the revocation):
// the run then starts too early, and an unsubscribe made between stands,
// erring on sending nothing the customer refused. A latest report of
// another value, like a run without since (rows written before decision
// 0046), counts from itself, which is all that is known of it.
type consentFields struct{ last, since, other, of int }

var consents = [...]consentFields{
	{EmailConsent, EmailConsentSince, EmailConsentOther, EmailConsentRunOf},
	{SMSConsent, SMSConsentSince, SMSConsentOther, SMSConsentRunOf},
}

// Consent values of EmailConsent and SMSConsent.
const (
	ConsentGranted = "granted"
	ConsentRevoked = "revoked"
)

// Field is one stamped value; At is zero when the field was never set.
type Field struct {
	Value string
	At    time.Time
	Event string
}

// after reports whether f was reported after g: by time, then event id,
// then value (a tie broken by value keeps merges commutative even for a
// malformed event id reused with different values). A field never set is
// before any other.
func (f Field) after(g Field) bool {
	if f.At.IsZero() {
		return false
	}
	if g.At.IsZero() {
		return true
	}
	if !f.At.Equal(g.At) {
		return f.At.After(g.At)
	}
	if f.Event != g.Event {
		return f.Event > g.Event
	}
	return f.Value > g.Value
}

// newer reports whether f should replace cur.
func (f Field) newer(cur Field) bool { return f.Value != "" && f.after(cur) }

func later(f, g Field) Field {
	if g.after(f) {
		return g
	}
	return f
}

func earlier(f, g Field) Field {
	if g.after(f) {
		return f
	}
	return g
}

// Contact is what the notifier knows about how to reach a customer.
type Contact struct {
	Tenant, CustomerID string
	Fields             [NumFields]Field
}

// Get returns a field's value.
func (c Contact) Get(i int) string { return c.Fields[i].Value }

// ConsentAt is when the shop's consent field i (EmailConsent or
// SMSConsent) took its value, which the customer's own choice is compared
// with (the latest wins): a grant counts from the report that changed the
// shop's consent to granted, a revocation from its latest report (a shop
// that still reports it still means it). Zero without a report.
func (c Contact) ConsentAt(i int) time.Time {
	for _, k := range consents {
		if k.last == i {
			last, since, _ := c.run(k)
			if last.Value == ConsentGranted {
				return since.At
			}
			return last.At
		}
	}
	return c.Fields[i].At
}

// run returns consent k's latest report, since and other; a run not
// worked out with its latest report goes on if that report has its value,
// and counts from that report otherwise (see consentFields).
func (c Contact) run(k consentFields) (last, since, other Field) {
	last, of := c.Fields[k.last], c.Fields[k.of]
	if of != last && (of.Value == "" || of.Value != last.Value) {
		return last, last, Field{}
	}
	return last, c.Fields[k.since], c.Fields[k.other]
}

// Merge applies u onto c field by field and returns the result. Merging
// the same updates in any order, any number of times, gives the same
// contact, with one exception in the consent runs: a report of another
// value that comes after later reports of the run were merged can only
// place the run's start at the earliest it can have been (see
// consentFields), so MergeAll takes a batch's updates in event order.
func Merge(c, u Contact) Contact {
	for i := range EmailConsent {
		if u.Fields[i].newer(c.Fields[i]) {
			c.Fields[i] = u.Fields[i]
		}
	}
	for _, k := range consents {
		c.mergeConsent(u, k)
	}
	return c
}

// mergeConsent merges u's run of consent k into c's.
func (c *Contact) mergeConsent(u Contact, k consentFields) {
	a, aSince, aOther := c.run(k)
	b, bSince, bOther := u.run(k)
	if b.Value == "" || b.At.IsZero() {
		return
	}
	if a.Value == "" || a.At.IsZero() {
		a, aSince, aOther = b, bSince, bOther
	} else {
		if b.after(a) {
			a, aSince, aOther, b, bSince, bOther = b, bSince, bOther, a, aSince, aOther
		}
		// a is the latest report. The latest of another value is b's
		// other, or b itself when b's value is another, or a's other.
		if b.Value != a.Value {
			bOther = b
		}
		aOther = later(aOther, bOther)
		// a's run counts from aSince, or from the other report when that
		// came later (the first of a's reports after it is not kept); b's
		// reports after the other report, if of a's value, may start it
		// earlier.
		aSince = later(aSince, aOther)
		if b.Value == a.Value && b.after(aOther) {
			aSince = earlier(aSince, later(bSince, aOther))
		}
	}
	c.Fields[k.last], c.Fields[k.since], c.Fields[k.other], c.Fields[k.of] = a, aSince, aOther, a
}

// MergeAll merges updates, each one event's fields, onto c in the order
// of their events (time, then id), so the consent runs they make among
// themselves are exact whatever order they came in.
func MergeAll(c Contact, us []Contact) Contact {
	us = slices.Clone(us)
	slices.SortStableFunc(us, func(a, b Contact) int {
		sa, sb := a.stamp(), b.stamp()
		if sb.after(sa) {
			return -1
		}
		if sa.after(sb) {
			return 1
		}
		return 0
	})
	for _, u := range us {
		c = Merge(c, u)
	}
	return c
}

// stamp is the latest stamp of c's fields: an event's, as all its fields
// have it.
func (c Contact) stamp() Field {
	var s Field
	for _, f := range c.Fields {
		if f.Value != "" && f.after(s) {
			s = Field{At: f.At, Event: f.Event}
		}
	}
	return s
}

// FromEvent reads a customer.updated fact (tenant from the envelope); ok is
// false for other payloads or without a customer id.
func FromEvent(ev *eventsv1.Event) (Contact, bool) {
	cu := ev.GetCustomerUpdated()
	if cu == nil || cu.GetCustomerId() == "" {
		return Contact{}, false
	}
	// In the database's precision, so that a stored stamp and the same
	// event redelivered compare equal.
	at := ev.GetOccurredAt().AsTime().Truncate(time.Microsecond)
	c := Contact{Tenant: ev.GetTenantId(), CustomerID: cu.GetCustomerId()}
	set := func(i int, v string) {
		if v != "" {
			c.Fields[i] = Field{Value: v, At: at, Event: ev.GetId()}
		}
	}
	set(Email, cu.GetEmail())
	set(Phone, cu.GetPhone())
	set(FirstName, cu.GetFirstName())
	set(LastName, cu.GetLastName())
	set(Locale, cu.GetLocale())
	set(TimeZone, cu.GetTimeZone())
	// One report is a run of its own: since is the report, no other, and
	// it was worked out with the report.
	email, sms := consent(cu.GetConsent().GetEmailMarketing()), consent(cu.GetConsent().GetSmsMarketing())
	for _, i := range []int{EmailConsent, EmailConsentSince, EmailConsentRunOf} {
		set(i, email)
	}
	for _, i := range []int{SMSConsent, SMSConsentSince, SMSConsentRunOf} {
		set(i, sms)
	}
	return c, true
}

func consent(s eventsv1.ConsentState) string {
	switch s {
	case eventsv1.ConsentState_CONSENT_STATE_GRANTED:
		return ConsentGranted
	case eventsv1.ConsentState_CONSENT_STATE_REVOKED:
		return ConsentRevoked
	}
	return ""
}
