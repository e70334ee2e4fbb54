package yamlfile

import (
	"errors"
	"testing"

	"go.yaml.in/yaml/v4"
)

func TestError(t *testing.T) {
	for _, tt := range []struct{ name, doc, want string }{
		{"bracket not closed", "id: a\nname: b\nsegments: [a, b}\n", "line 3, column 16: did not find expected ',' or ']'"},
		{"quote not closed", "id: a\nname: \"b\nc: d\n", "line 4, column 1: found unexpected end of stream (while scanning a quoted scalar at line 2, column 7)"},
		{"duplicate key", "id: a\nid: b\n", `line 2, column 1: mapping key "id" already defined at line 1`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			err := yaml.Unmarshal([]byte(tt.doc), &v)
			if err == nil {
				t.Fatal("no error")
			}
			if got := Error(err).Error(); got != tt.want {
				t.Errorf("Error() = %q\nwant      %q", got, tt.want)
			}
		})
	}
	other := errors.New("not yaml")
	if Error(other) != other {
		t.Error("an error of another kind was rewritten")
	}
}
