// Package contacts turns customer.updated facts into the notifier's contact
// records. A field is a value stamped with the event that set it; merging
// keeps, per field, the value of the latest event (by event time, then event
// id), and empty values never overwrite: so the same facts applied in any
// order, any number of times, give the same contact.
package contacts

import (
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
	EmailConsent
	SMSConsent
	NumFields
)

// FieldNames are the column names of the fields.
var FieldNames = [NumFields]string{"email", "phone", "first_name", "last_name", "locale", "time_zone", "email_consent", "sms_consent"}

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

// newer reports whether f should replace cur.
func (f Field) newer(cur Field) bool {
	if f.Value == "" || f.At.IsZero() {
		return false
	}
	if cur.At.IsZero() {
		return true
	}
	if !f.At.Equal(cur.At) {
		return f.At.After(cur.At)
	}
	if f.Event != cur.Event {
		return f.Event > cur.Event
	}
	// Same event: a tie broken by value keeps the merge commutative even
	// for a (malformed) event id reused with different values.
	return f.Value > cur.Value
}

// Contact is what the notifier knows about how to reach a customer.
type Contact struct {
	Tenant, CustomerID string
	Fields             [NumFields]Field
}

// Get returns a field's value.
func (c Contact) Get(i int) string { return c.Fields[i].Value }

// Merge applies u onto c field by field and returns the result.
func Merge(c, u Contact) Contact {
	for i := range c.Fields {
		if u.Fields[i].newer(c.Fields[i]) {
			c.Fields[i] = u.Fields[i]
		}
	}
	return c
}

// FromEvent reads a customer.updated fact (tenant from the envelope); ok is
// false for other payloads or without a customer id.
func FromEvent(ev *eventsv1.Event) (Contact, bool) {
	cu := ev.GetCustomerUpdated()
	if cu == nil || cu.GetCustomerId() == "" {
		return Contact{}, false
	}
	at := ev.GetOccurredAt().AsTime()
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
	set(EmailConsent, consent(cu.GetConsent().GetEmailMarketing()))
	set(SMSConsent, consent(cu.GetConsent().GetSmsMarketing()))
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
