package unsub

import (
	"testing"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestRoundTripAndTamper(t *testing.T) {
	c := Claim{Tenant: "shop", Customer: "c-1", Channel: notifierv1.Channel_CHANNEL_EMAIL, RequestID: "camp/1/2"}
	tok := Sign(key, c)
	got, err := Parse(key, tok)
	if err != nil || got != c {
		t.Fatalf("%+v %v", got, err)
	}
	other := Sign(key, Claim{Tenant: "shop", Customer: "c-2", Channel: notifierv1.Channel_CHANNEL_EMAIL})
	forged := tok[:len(tok)/2] + other[len(other)/2:]
	for _, bad := range []string{"", ".", tok + "x", forged, Sign([]byte("other key"), c)} {
		if _, err := Parse(key, bad); err == nil {
			t.Errorf("%q verified", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Sign(key, Claim{Tenant: "shop", Customer: "c", Channel: notifierv1.Channel_CHANNEL_SMS}))
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Parse(key, tok)
		if err != nil {
			return
		}
		// Whatever verifies must be what was signed.
		if Sign(key, c) != tok {
			t.Fatalf("%q verified as %+v but signs differently", tok, c)
		}
	})
}
