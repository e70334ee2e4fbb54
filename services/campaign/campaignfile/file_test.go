package campaignfile_test

import (
	"strings"
	"testing"

	"github.com/retainhq/retain/services/campaign/campaignfile"
)

const base = `
id: thanks
name: Thanks
trigger: {event: order.placed}
steps:
  - {id: wait, wait: {duration: 3d}}
  - {id: send, send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}}
`

// TestDecodeNamesEveryBadField: a file that cannot become a campaign is
// refused with each problem at its path in the file, in the file's field
// names, all at once.
func TestDecodeNamesEveryBadField(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"unknown enum", strings.Replace(base, "CHANNEL_EMAIL", "CHANNEL_FAX", 1),
			[]string{`steps[1].send.channel: want one of CHANNEL_EMAIL, CHANNEL_SMS, CHANNEL_WEBHOOK, got "CHANNEL_FAX"`}},
		{"fraction for an integer, and a typo, at once", base + "holdout_percent: 10.5\nprority: 3\n",
			[]string{"holdout_percent: want a whole number, got 10.5", "prority: unknown field (Campaign has id, name,"}},
		{"beyond the field's integers", base + "priority: 1e12\n", []string{"priority: want a whole number from -2147483648 to 2147483647, got 1e+12"}},
		{"only a document marker", "---\n", []string{"campaign file is empty"}},
		{"two fields of a oneof", strings.Replace(base, "{event: order.placed}", "{event: order.placed, schedule: {every: 1d}}", 1),
			[]string{"trigger.kind: set only one of event and schedule"}},
		{"a list where a mapping belongs", strings.Replace(base, "{event: order.placed}", "[order.placed]", 1),
			[]string{"trigger: want a mapping of Trigger fields, got a list"}},
		{"a number where text belongs", base + "description: 12\n", []string{"description: want text (quote it), got 12"}},
		{"a step that is not a mapping", base + "  - just a string\n", []string{"steps[2]: want a mapping of Step fields"}},
		{"empty", "", []string{"campaign file is empty"}},
		{"comments only", "# nothing here\n", []string{"campaign file is empty"}},
		{"two documents", base + "---\n" + base, []string{"more than one YAML document"}},
		{"a closing document marker", base + "---\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := campaignfile.Decode([]byte(tc.file))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("decoded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "line 1:") {
				t.Errorf("error %q points into the intermediate JSON", err)
			}
		})
	}
}

// TestDecodeRoundTrip: what Encode writes decodes to the same campaign,
// proto names and JSON names alike.
func TestDecodeRoundTrip(t *testing.T) {
	c, err := campaignfile.Decode([]byte(base + "holdoutPercent: 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.GetHoldoutPercent() != 10 {
		t.Fatalf("holdoutPercent read as %d", c.GetHoldoutPercent())
	}
	out, err := campaignfile.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := campaignfile.Decode(out)
	if err != nil || again.String() != c.String() {
		t.Fatalf("round trip: %v\n%s", err, out)
	}
}
