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
	f.Add([]byte("key: x\nchannel: email\nvariables:\n  - {name: coupon, type: coupon\nvariants: []\n"))
	f.Add([]byte("key: x\nchannel: email\nvariants:\n\t- locale: \"\"\n   body: \"hi\n"))
	f.Add([]byte("key: x\nchannel: email\nkey: y\n---\nkey: z\n"))
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

// TestParseErrorsPointAtTheLine: a template file YAML cannot read is
// refused with the line (and column) of the problem, not of the
// collection around it.
func TestParseErrorsPointAtTheLine(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"an unclosed [", "key: x\nchannel: email\nvariables:\n  - {name: coupon, type: coupon}\n  - {name: a, type: [text}\n",
			"line 5, column 26: did not find expected ',' or ']'"},
		{"an unclosed {", "key: x\nchannel: email\nvariables:\n  - {name: coupon, type: coupon\nvariants: []\n",
			"line 5, column 9: did not find expected ',' or '}' (while parsing a flow mapping at line 4, column 5)"},
		{"a key indented too far", "key: x\nchannel: email\nvariants:\n  - locale: \"\"\n   body: hi\n",
			"line 5, column 4: did not find expected '-' indicator"},
		{"a tab", "key: x\nchannel: email\nvariants:\n\t- locale: \"\"\n", "line 4, column 1: found character that cannot start any token"},
		{"a duplicate key", "key: x\nchannel: email\nkey: y\n", `line 3, column 1: mapping key "key" already defined at line 1`},
		{"an unknown field", "key: x\nchannel: email\nsubjekt: typo\n", "line 3, column 1: field subjekt not found"},
		{"every template's problem", "key: a\nchannel: email\nsubjct: x\n---\nkey: b\nchannel: pigeon\n---\nkey: \"\"\nchannel: sms\n",
			"template #1: line 3, column 1: field subjct not found\n" +
				"template #2 (b): channel \"pigeon\": want email, sms or webhook\ntemplate #3: key is required"},
		{"a key and channel twice", "key: x\nchannel: email\n---\nkey: x\nchannel: sms\n---\nkey: x\nchannel: email\n",
			"template #3 (x): the file already has template x for email, as template #1: one per key and channel"},
		{"in the second template", sample + "---\nkey: z\nchannel: sms\nvariants: [{locale: \"\", body: \"hi}]\n",
			"template #3: line 19, column 1: found unexpected end of stream (while scanning a quoted scalar at line 18, column 31)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
