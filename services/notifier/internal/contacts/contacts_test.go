package contacts

import (
	"math/rand/v2"
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
