package charttest

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestReadmeValuesTable: the chart README's values table documents every
// value values.yaml sets, and nothing that is neither in values.yaml nor in
// the schema.
func TestReadmeValuesTable(t *testing.T) {
	readme, err := os.ReadFile(chartDir + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Values\n")
	if !ok {
		t.Fatal("README.md has no \"## Values\" section")
	}
	row := regexp.MustCompile("(?m)^\\| `([^`]+)`")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	if len(documented) < 50 {
		t.Fatalf("found only %d rows in the values table", len(documented))
	}

	var vals map[string]any
	b, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &vals); err != nil {
		t.Fatal(err)
	}
	leaves := flatten("", vals)

	covers := func(key, path string) bool {
		kp, pp := strings.Split(key, "."), strings.Split(path, ".")
		if len(kp) > len(pp) {
			return false
		}
		for i := range kp {
			if kp[i] != "*" && kp[i] != pp[i] {
				return false
			}
		}
		return true
	}
	for _, leaf := range leaves {
		found := false
		for _, k := range documented {
			if covers(k, leaf) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("values.yaml sets %s, which the README values table does not document", leaf)
		}
	}

	var schema map[string]any
	sb, err := os.ReadFile(chartDir + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(sb, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	known := map[string]bool{}
	schemaPaths("", schema, schema, known)
	// The nats block is open (it is the NATS chart's values): what values.yaml
	// sets there is known too.
	for _, leaf := range leaves {
		parts := strings.Split(leaf, ".")
		for i := range parts {
			known[strings.Join(parts[:i+1], ".")] = true
		}
	}
	for _, k := range documented {
		// Every concrete service block has the keys of serviceDefaults.
		k = regexp.MustCompile(`^services\.[a-z0-9]+\.`).ReplaceAllString(k, "serviceDefaults.")
		k = strings.ReplaceAll(k, "*", "startup")
		if !known[k] {
			t.Errorf("the README documents %s, which values.schema.json does not define", k)
		}
	}
}

// flatten lists the paths of a values tree down to its leaves (scalars,
// lists and empty maps).
func flatten(prefix string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return []string{prefix}
	}
	var out []string
	for k, child := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		out = append(out, flatten(p, child)...)
	}
	sort.Strings(out)
	return out
}

// schemaPaths records every property path the schema defines, following
// local $refs.
func schemaPaths(prefix string, node, root map[string]any, out map[string]bool) {
	if ref, ok := node["$ref"].(string); ok {
		target := root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			target, _ = target[part].(map[string]any)
		}
		if target != nil {
			schemaPaths(prefix, target, root, out)
		}
		return
	}
	props, _ := node["properties"].(map[string]any)
	for k, child := range props {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		out[p] = true
		if c, ok := child.(map[string]any); ok {
			schemaPaths(p, c, root, out)
		}
	}
}
