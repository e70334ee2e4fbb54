// Package campaignfile reads and writes the file form of a campaign: the
// protojson form of retain.campaign.v1.Campaign in YAML or JSON, for
// version control and `retain campaigns apply -f FILE`. Errors name the
// field by its path in the file, or the line and column of a syntax error.
package campaignfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/yamlfile"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
)

// MaxBytes is the largest campaign file read.
const MaxBytes = 1 << 20

// Decode reads a campaign file: the protojson form of
// retain.campaign.v1.Campaign in YAML, or in JSON when the file is a JSON
// object (it starts with `{"` or `{}`; `{id: x}` is YAML). Unknown fields
// are errors, so a typo is never silently ignored, and so are the
// output-only fields (version, playbook, the times; ClearOutputOnly): the
// service sets them, and a file that says otherwise would be ignored.
// state may be given: the service creates the campaign in it.
func Decode(data []byte) (*campaignv1.Campaign, error) {
	return decode(data, startsJSON(data))
}

// DecodeFile reads the campaign file at path as Decode does, and as JSON
// whatever it starts with when path ends in .json. JSON is read strictly
// (no trailing comma, comment or repeated key, which a YAML reader would
// let pass).
func DecodeFile(path string, data []byte) (*campaignv1.Campaign, error) {
	return decode(data, strings.EqualFold(filepath.Ext(path), ".json") || startsJSON(data))
}

// startsJSON: data, after white space and a byte order mark, starts as a
// JSON object does: `{`, then a quoted key or `}`. A YAML flow mapping
// with plain keys (`{id: x, ...}`) does not.
func startsJSON(data []byte) bool {
	t := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\ufeff")), " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	t = bytes.TrimLeft(t[1:], " \t\r\n")
	return len(t) > 0 && (t[0] == '"' || t[0] == '}')
}

func decode(data []byte, isJSON bool) (*campaignv1.Campaign, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("campaign file is %d bytes: at most %d", len(data), MaxBytes)
	}
	var (
		doc any
		err error
	)
	if isJSON {
		doc, err = decodeJSON(data)
	} else {
		doc, err = decodeYAML(data)
	}
	if errors.Is(err, errEmpty) || errors.Is(err, errDocuments) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("campaign file: %w", err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("campaign file: want a mapping of campaign fields at the top level")
	}
	doc, err = jsonable(doc, "")
	if err != nil {
		return nil, fmt.Errorf("campaign file: %w", err)
	}
	c := &campaignv1.Campaign{}
	if errs := check(c.ProtoReflect().Descriptor(), top, ""); len(errs) > 0 {
		return nil, fmt.Errorf("campaign file: %s", strings.Join(errs, "; "))
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("campaign file: %w", err)
	}
	if err := protojson.Unmarshal(js, c); err != nil {
		return nil, fmt.Errorf("campaign file: %w", err)
	}
	return c, nil
}

var (
	errEmpty     = errors.New("campaign file is empty")
	errDocuments = errors.New("campaign file holds more than one YAML document (---): one campaign per file")
)

// decodeYAML reads the one YAML document of data.
func decodeYAML(data []byte) (any, error) {
	var doc any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) || (err == nil && doc == nil) {
		return nil, errEmpty
	} else if err != nil {
		return nil, yamlfile.Error(err)
	}
	// A second document, unless empty (a closing ---), would be ignored.
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) && (err != nil || more != nil) {
		return nil, errDocuments
	}
	return doc, nil
}

// jsonable turns what the YAML reader decodes into values encoding/json accepts
// (string keys only) so protojson can read them.
func jsonable(v any, path string) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			j, err := jsonable(e, path+"."+k)
			if err != nil {
				return nil, err
			}
			t[k] = j
		}
		return t, nil
	case map[any]any:
		return nil, fmt.Errorf("%s: keys must be strings", strings.TrimPrefix(path, "."))
	case []any:
		for i, e := range t {
			j, err := jsonable(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			t[i] = j
		}
		return t, nil
	case time.Time:
		return t.Format(time.RFC3339Nano), nil
	}
	return v, nil
}

// Encode writes c in its YAML file form, without the output-only fields
// Decode refuses (state is written when set).
func Encode(c *campaignv1.Campaign) ([]byte, error) {
	c = proto.Clone(c).(*campaignv1.Campaign)
	ClearOutputOnly(c)
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(c)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	styleBlock(&doc)
	return yaml.Marshal(&doc)
}

// styleBlock renders JSON's flow collections and quoted keys as plain
// YAML (the encoder still quotes a string that would read as another type).
func styleBlock(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		styleBlock(c)
	}
}
