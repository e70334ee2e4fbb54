// Package defaults holds the templates every tenant starts with: one per
// campaign playbook, so a new shop's campaigns send real messages at once.
package defaults

import (
	_ "embed"
	"fmt"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/templatefile"
)

//go:embed defaults.yaml
var file []byte

// Templates returns the default templates (freshly parsed: callers own them).
func Templates() ([]*notifierv1.Template, error) {
	ts, err := templatefile.Parse(file)
	if err != nil {
		return nil, fmt.Errorf("default templates: %w", err)
	}
	return ts, nil
}
