// Package campaignfile reads and writes the file form of a campaign: the
// protojson form of retain.campaign.v1.Campaign in YAML or JSON, for
// version control and `retain campaigns apply -f FILE`.
package campaignfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
)

// MaxBytes is the largest campaign file read.
const MaxBytes = 1 << 20

// Decode reads a campaign file: YAML or JSON holding the protojson
// form of retain.campaign.v1.Campaign. Unknown fields are errors, so a
// typo is never silently ignored.
func Decode(data []byte) (*campaignv1.Campaign, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("campaign file is %d bytes: at most %d", len(data), MaxBytes)
	}
	var doc any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) || (err == nil && doc == nil) {
		return nil, errors.New("campaign file is empty")
	} else if err != nil {
		return nil, fmt.Errorf("campaign file: %w", err)
	}
	// A second document, unless empty (a closing ---), would be ignored.
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) && (err != nil || more != nil) {
		return nil, errors.New("campaign file holds more than one YAML document (---): one campaign per file")
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("campaign file: want a mapping of campaign fields at the top level")
	}
	doc, err := jsonable(doc, "")
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

// jsonable turns what yaml.v3 decodes into values encoding/json accepts
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

// Encode writes c in its YAML file form.
func Encode(c *campaignv1.Campaign) ([]byte, error) {
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
