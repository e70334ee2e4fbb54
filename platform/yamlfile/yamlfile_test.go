package yamlfile

import (
	"errors"
	"strings"
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

// TestUnknownFieldWithoutGoType: an unknown field is named with its line,
// not with the Go type the file is read into.
func TestUnknownFieldWithoutGoType(t *testing.T) {
	var v struct {
		Key string `yaml:"key"`
	}
	dec := yaml.NewDecoder(strings.NewReader("key: a\nkye: b\n"))
	dec.KnownFields(true)
	err := Error(dec.Decode(&v))
	if err == nil || err.Error() != "line 2, column 1: field kye not found" {
		t.Fatalf("error %v, want the field and its line alone", err)
	}
}
