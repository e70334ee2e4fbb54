package templatefile

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

const sample = `key: winback_90
channel: email
variables:
  - {name: coupon, type: coupon}
variants:
  - locale: ""
    subject: We miss you
    html: <p>{{.coupon}}</p>
---
key: alert
channel: webhook
variants:
  - locale: ""
    body: '{"a": 1}'
`

func TestParseAndFormat(t *testing.T) {
	ts, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].GetVariables()[0].GetType() != "coupon" || ts[1].GetVariants()[0].GetBody() != `{"a": 1}` {
		t.Fatalf("%v", ts)
	}
	b, err := Format(ts[0])
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil || !proto.Equal(back[0], ts[0]) {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range []string{"", "key: x\nchannel: fax\n", "key: x\nchannel: email\nsubjekt: typo\n", "channel: email\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := Parse([]byte("key: x\nchannel: email\nsubjekt: typo\n")); !strings.Contains(err.Error(), "subjekt") {
		t.Errorf("error does not name the field: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("key: a\nchannel: sms\nvariants: [{locale: fa, body: hi}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := Parse(data)
		if err != nil {
			return
		}
		for _, tpl := range ts {
			b, err := Format(tpl)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(b)
			if err != nil || len(back) != 1 || !proto.Equal(back[0], tpl) {
				t.Fatalf("round trip of %q: %v", b, err)
			}
		}
	})
}
