package contacts

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func TestMergeIsOrderIndependent(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := func(v string, d int, ev string) Field {
		return Field{Value: v, At: t0.Add(time.Duration(d) * time.Hour), Event: ev}
	}
	var ups []Contact
	mk := func(fields map[int]Field) Contact {
		c := Contact{Tenant: "t", CustomerID: "c"}
		for i, v := range fields {
			c.Fields[i] = v
		}
		return c
	}
	ups = append(ups,
		mk(map[int]Field{Email: f("a@x", 1, "e1"), Locale: f("en", 1, "e1")}),
		mk(map[int]Field{Email: f("b@x", 3, "e3"), EmailConsent: f(ConsentGranted, 3, "e3")}),
		mk(map[int]Field{Locale: f("fa-IR", 2, "e2"), EmailConsent: f(ConsentRevoked, 2, "e2")}),
		mk(map[int]Field{Email: f("c@x", 3, "e4")}), // same instant, later id wins
		mk(map[int]Field{Phone: f("+100", 0, "e0")}),
	)
	want := Contact{Tenant: "t", CustomerID: "c"}
	for _, u := range ups {
		want = Merge(want, u)
	}
	if got := want.Get(Email); got != "c@x" {
		t.Fatalf("email %q", got)
	}
	if want.Get(Locale) != "fa-IR" || want.Get(EmailConsent) != ConsentGranted || want.Get(Phone) != "+100" {
		t.Fatalf("merged %+v", want)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		perm := r.Perm(len(ups))
		got := Contact{Tenant: "t", CustomerID: "c"}
		for _, i := range perm {
			got = Merge(got, ups[i])
			if r.IntN(3) == 0 { // repeats change nothing
				got = Merge(got, ups[i])
			}
		}
		if got != want {
			t.Fatalf("order %v gave %+v, want %+v", perm, got, want)
		}
	}
}

func TestEmptyValuesDoNotOverwrite(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := Contact{}
	c.Fields[Email] = Field{Value: "a@x", At: t0, Event: "e1"}
	u := Contact{}
	u.Fields[Email] = Field{Value: "", At: t0.Add(time.Hour), Event: "e2"}
	if got := Merge(c, u).Get(Email); got != "a@x" {
		t.Fatalf("email %q", got)
	}
}

// FuzzFromEventMerge reads two customer.updated events from any bytes: the
// decoder never panics, accepts only events with a customer, and merging
// them gives the same contact in either order and when repeated.
func FuzzFromEventMerge(f *testing.F) {
	at := timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := testenv.Marshal(f, &eventsv1.Event{Id: "e1", TenantId: "t", OccurredAt: at, Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{
		CustomerId: "c", Email: "a@x", Locale: "fa-IR", Consent: &eventsv1.Consent{EmailMarketing: eventsv1.ConsentState_CONSENT_STATE_GRANTED}}}})
	b := testenv.Marshal(f, &eventsv1.Event{Id: "e2", TenantId: "t", OccurredAt: at, Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: &eventsv1.CustomerUpdated{
		CustomerId: "c", Email: "b@x", Consent: &eventsv1.Consent{EmailMarketing: eventsv1.ConsentState_CONSENT_STATE_REVOKED}}}})
	f.Add(a, b)
	f.Add(a, a)
	f.Add(b, []byte{0xff})
	f.Fuzz(func(t *testing.T, da, db []byte) {
		var ups []Contact
		for _, d := range [][]byte{da, db} {
			var ev eventsv1.Event
			if proto.Unmarshal(d, &ev) != nil {
				return
			}
			c, ok := FromEvent(&ev)
			if !ok {
				continue
			}
			if c.CustomerID == "" {
				t.Fatalf("accepted without a customer: %+v", c)
			}
			// The consumer merges per (tenant, customer): compare the fields.
			c.Tenant, c.CustomerID = "t", "c"
			ups = append(ups, c)
		}
		if len(ups) < 2 {
			return
		}
		base := Contact{Tenant: "t", CustomerID: "c"}
		ab := Merge(Merge(base, ups[0]), ups[1])
		ba := Merge(Merge(base, ups[1]), ups[0])
		if ab != ba {
			t.Fatalf("order matters: %+v then %+v gives %+v, the other way %+v", ups[0], ups[1], ab, ba)
		}
		if again := Merge(Merge(ab, ups[0]), ups[1]); again != ab {
			t.Fatalf("repeating changed %+v into %+v", ab, again)
		}
	})
}

// consentEvent is a customer.updated reporting only email consent v at
// hour h.
func consentEvent(t0 time.Time, h int, id, v string) Contact {
	c := Contact{Tenant: "t", CustomerID: "c"}
	f := Field{Value: v, At: t0.Add(time.Duration(h) * time.Hour), Event: id}
	c.Fields[EmailConsent], c.Fields[EmailConsentSince] = f, f
	return c
}

// TestConsentCountsFromTheShopsChange: the shop's consent counts from the
// report that changed it to granted, not from the latest repeat of it; a
// revocation from its latest report.
func TestConsentCountsFromTheShopsChange(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hour := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	tests := []struct {
		name    string
		reports string // value per hour: g granted, r revoked, . none
		want    time.Time
	}{
		{"repeated grant", "ggg", hour(0)},
		{"grant after revocation", "grgg", hour(2)},
		{"repeated revocation counts from the latest", "grr", hour(2)},
		{"nothing reported in between", "g..g", hour(0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var evs []Contact
			for h, v := range tc.reports {
				switch v {
				case 'g':
					evs = append(evs, consentEvent(t0, h, fmt.Sprint("e", h), ConsentGranted))
				case 'r':
					evs = append(evs, consentEvent(t0, h, fmt.Sprint("e", h), ConsentRevoked))
				}
			}
			var c Contact
			for _, e := range evs {
				c = Merge(c, e)
			}
			if got := c.ConsentAt(EmailConsent); !got.Equal(tc.want) {
				t.Errorf("in order: consent at %v, want %v", got, tc.want)
			}
			rev := slices.Clone(evs)
			slices.Reverse(rev)
			if got := MergeAll(Contact{}, rev).ConsentAt(EmailConsent); !got.Equal(tc.want) {
				t.Errorf("one batch in reverse: consent at %v, want %v", got, tc.want)
			}
		})
	}
}

// TestConsentRunsInAnyOrder merges random reports one at a time in random
// orders, repeating some: the latest report and the latest report of the
// other value are always exact, a batch merged at once (MergeAll) gives
// exactly where the run began, and one at a time never places it later
// than that (a repeat never counts as the shop's change) nor before the
// other value's report; repeating a report already merged changes
// nothing.
func TestConsentRunsInAnyOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		var evs []Contact
		for h := range 1 + r.IntN(8) {
			v := ConsentGranted
			if r.IntN(3) == 0 {
				v = ConsentRevoked
			}
			evs = append(evs, consentEvent(t0, h, fmt.Sprint("e", h), v))
		}
		// Exact: the last run's first report, the other value's last.
		last := evs[len(evs)-1].Fields[EmailConsent]
		since, other := last, Field{}
		for i := len(evs) - 1; i >= 0; i-- {
			if f := evs[i].Fields[EmailConsent]; f.Value != last.Value {
				other = f
				break
			} else {
				since = f
			}
		}
		perm := r.Perm(len(evs))
		shuffled := make([]Contact, len(evs))
		for i, p := range perm {
			shuffled[i] = evs[p]
		}
		if c := MergeAll(Contact{}, shuffled); c.Fields[EmailConsent] != last || c.Fields[EmailConsentSince] != since || c.Fields[EmailConsentOther] != other {
			t.Fatalf("batch %v: %+v, want since %+v other %+v", perm, c.Fields, since, other)
		}
		var c Contact
		for i, p := range perm {
			c = Merge(c, evs[p])
			if r.IntN(3) == 0 { // a redelivery of one merged before
				c = Merge(c, evs[perm[r.IntN(i+1)]])
			}
		}
		if c.Fields[EmailConsent] != last || c.Fields[EmailConsentOther] != other {
			t.Fatalf("order %v: %+v, want last %+v other %+v", perm, c.Fields, last, other)
		}
		if s := c.Fields[EmailConsentSince]; s.after(since) || other.after(s) {
			t.Fatalf("order %v: since %+v, want %+v or earlier, not before %+v", perm, s, since, other)
		}
		for _, e := range evs {
			if again := Merge(c, e); again != c {
				t.Fatalf("order %v: repeating %+v changed %+v into %+v", perm, e.Fields[EmailConsent], c.Fields, again.Fields)
			}
		}
	}
}

// TestStaleRun: a replica from before decision 0046 wrote the latest
// report over a run worked out with an earlier one (granted since hour 0).
// A grant written so (a repeat, or a revocation and a grant that left only
// the grant) goes on with the run: it does not date the consent at hour 3,
// which would undo an unsubscribe made since. A revocation written so
// counts from itself, and a grant merged after it is the shop's change.
func TestStaleRun(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := MergeAll(Contact{}, []Contact{consentEvent(t0, 0, "e0", ConsentGranted), consentEvent(t0, 1, "e1", ConsentGranted)})
	if got := c.ConsentAt(EmailConsent); !got.Equal(t0) {
		t.Fatalf("consent at %v, want %v", got, t0)
	}
	run := c
	c.Fields[EmailConsent] = consentEvent(t0, 3, "e3", ConsentGranted).Fields[EmailConsent]
	if got := c.ConsentAt(EmailConsent); !got.Equal(t0) {
		t.Fatalf("stale run of a grant: consent at %v, want hour 0", got)
	}
	c = Merge(c, consentEvent(t0, 4, "e4", ConsentGranted))
	if got := c.ConsentAt(EmailConsent); !got.Equal(t0) {
		t.Fatalf("after a repeat: consent at %v, want hour 0", got)
	}
	c = run
	c.Fields[EmailConsent] = consentEvent(t0, 3, "e3", ConsentRevoked).Fields[EmailConsent]
	if got := c.ConsentAt(EmailConsent); !got.Equal(t0.Add(3 * time.Hour)) {
		t.Fatalf("stale run under a revocation: consent at %v, want hour 3", got)
	}
	c = Merge(c, consentEvent(t0, 4, "e4", ConsentGranted))
	if got := c.ConsentAt(EmailConsent); !got.Equal(t0.Add(4 * time.Hour)) {
		t.Fatalf("a grant after it: consent at %v, want hour 4", got)
	}
}
