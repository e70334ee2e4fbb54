package campaignfile_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
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
		{"output-only fields, named", base + "version: 7\nplaybook: win-back\ncreated_at: 2026-01-02T03:04:05Z\nupdatedAt: 2026-01-02T03:04:05Z\n",
			[]string{"version: is output only", "playbook: is output only", "created_at: is output only", "updatedAt: is output only"}},
		{"the typo hint lists only what a file sets", base + "prority: 3\n",
			[]string{"(Campaign has id, name, description, state, trigger, conditions, steps, goal, entry, priority, holdout_percent)"}},
		{"a state that is not one", base + "state: PAUSED\n", []string{"state: want one of CAMPAIGN_STATE_ACTIVE, CAMPAIGN_STATE_PAUSED, CAMPAIGN_STATE_ARCHIVED"}},
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

// TestDecodeKeepsState: a file may say the state to create a campaign in
// (the service refuses it on an update that would change the state).
func TestDecodeKeepsState(t *testing.T) {
	c, err := campaignfile.Decode([]byte(base + "state: CAMPAIGN_STATE_PAUSED\n"))
	if err != nil || c.GetState() != campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED {
		t.Fatalf("%v %v", c.GetState(), err)
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

// TestEncodeLeavesOutWhatTheServiceSets: a campaign as the service shows
// it encodes to a file that decodes (no output-only field in it), keeping
// its state.
func TestEncodeLeavesOutWhatTheServiceSets(t *testing.T) {
	c, err := campaignfile.Decode([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	shown := proto.Clone(c).(*campaignv1.Campaign)
	shown.Version, shown.Playbook, shown.State = 3, "thank-you", campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED
	shown.CreatedAt, shown.UpdatedAt = timestamppb.Now(), timestamppb.Now()
	out, err := campaignfile.Encode(shown)
	if err != nil {
		t.Fatal(err)
	}
	again, err := campaignfile.Decode(out)
	c.State = campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED
	if err != nil || !proto.Equal(again, c) {
		t.Fatalf("decoded %v (%v) from\n%s", again, err, out)
	}
}

// TestDecodeSyntaxErrorsPointAtTheLine: a file YAML or JSON cannot read is
// refused with the line (and column) of the problem, not of the
// collection around it.
func TestDecodeSyntaxErrorsPointAtTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"an unclosed [", "id: x\nname: X\ntrigger: {schedule: {every: 1d}}\nconditions:\n  - rfm_segment: {segments: [RFM_SEGMENT_CHAMPIONS, RFM_SEGMENT_LOYAL}\nsteps: [{id: a, exit: {}}]\n",
			[]string{"line 5, column 70: did not find expected ',' or ']'"}},
		{"an unclosed { ends where the next key is", "id: x\nname: X\ntrigger: {event: order.placed\nsteps: []\n",
			[]string{"line 4, column 6: did not find expected ',' or '}'", "flow mapping at line 3, column 10"}},
		{"a key indented too far in a step", "id: x\nsteps:\n  - id: a\n   send: {}\n",
			[]string{"line 4, column 4: did not find expected '-' indicator"}},
		{"a key indented under a scalar", "id: x\nname: X\n  trigger: y\n",
			[]string{"line 3, column 10: mapping values are not allowed in this context"}},
		{"a tab", "id: x\nsteps:\n\t- id: a\n", []string{"line 3, column 1: found character that cannot start any token"}},
		{"a duplicate key", "id: x\nname: X\nid: y\n", []string{`line 3, column 1: mapping key "id" already defined at line 1`}},
		{"an unclosed quote", "id: x\nname: \"X\nsteps: []\n",
			[]string{"found unexpected end of stream", "quoted scalar at line 2, column 7"}},
		{"an unknown field", base + "prority: 3\n", []string{"prority: unknown field"}},
		{"JSON with a trailing comma", "{\n  \"id\": \"x\",\n  \"name\": \"X\",\n}\n",
			[]string{"line 4, column 1: invalid character '}' looking for beginning of object key string"}},
		{"JSON with a duplicate key", "{\"id\": \"x\",\n \"name\": \"X\",\n \"id\": \"y\"}",
			[]string{`line 3, column 2: "id" appears twice (first at line 1, column 2)`}},
		{"JSON cut short", "{\"id\": \"x\",\n \"name\": \"X\"", []string{"line 2, column 13: unexpected end of JSON"}},
		{"JSON with a second value", "{\"id\": \"x\"}\n{}", []string{"line 2, column 1: more than one JSON value"}},
		{"JSON with a comment", "{\"id\": \"x\" // c\n}", []string{"line 1, column 12: invalid character '/'"}},
		{"JSON names its unknown field", `{"id": "x", "prority": 3}`, []string{"prority: unknown field"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := campaignfile.Decode([]byte(tc.file))
			if err == nil {
				t.Fatal("decoded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestDecodeFileReadsJSONStrictly: a file named .json, or one that starts
// as a JSON object does, is JSON, so a trailing comma is an error rather
// than read as YAML; a YAML flow mapping stays YAML.
func TestDecodeFileReadsJSONStrictly(t *testing.T) {
	const js = `{"id": "x", "name": "X", "trigger": {"event": "order.placed"}, "steps": [{"id": "a", "exit": {}}]}`
	for _, tc := range []struct {
		name, path, file, want string
	}{
		{"json", "c.json", js, ""},
		{"json with a BOM and spaces first", "c.json", "\ufeff \n" + js, ""},
		{"yaml that starts with {", "c.yaml", "{id: x, name: X}", ""},
		{"json in a .yaml file", "c.yaml", "{\"id\": \"x\",}", "line 1, column 12: invalid character '}' looking for beginning of object key string (read as JSON)"},
		{"json by name, starting like yaml", "c.JSON", "id: x\n", "line 1, column 1: invalid character 'i' looking for beginning of value"},
		{"json from stdin", "-", js + ",", "line 1, column 99: invalid character ','"},
		{"yaml", "c.yml", strings.TrimPrefix(base, "\n"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := campaignfile.DecodeFile(tc.path, []byte(tc.file))
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "" && c.GetId() == "":
				t.Fatal("no id")
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
