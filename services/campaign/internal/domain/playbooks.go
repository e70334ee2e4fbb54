package domain

import (
	"embed"
	"fmt"
	"path"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
)

// The playbooks are campaign files, so they are edited, reviewed and
// validated exactly like a user's.
//
//go:embed playbooks/*.yaml
var playbookFiles embed.FS

// Playbook is a ready-made campaign.
type Playbook struct {
	Name     string
	Summary  string
	Campaign *campaignv1.Campaign
}

// Playbooks returns every playbook, by name; each call returns fresh
// copies the caller may change.
func Playbooks() ([]Playbook, error) {
	entries, err := playbookFiles.ReadDir("playbooks")
	if err != nil {
		return nil, fmt.Errorf("playbooks: %w", err)
	}
	var out []Playbook
	for _, e := range entries {
		data, err := playbookFiles.ReadFile(path.Join("playbooks", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("playbook %s: %w", e.Name(), err)
		}
		c, err := campaignfile.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("playbook %s: %w", e.Name(), err)
		}
		if _, err := Compile(c); err != nil {
			return nil, fmt.Errorf("playbook %s: %w", e.Name(), err)
		}
		out = append(out, Playbook{Name: strings.TrimSuffix(e.Name(), ".yaml"), Summary: c.GetDescription(), Campaign: c})
	}
	slices.SortFunc(out, func(a, b Playbook) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// FindPlaybook returns a copy of the named playbook's campaign.
func FindPlaybook(name string) (*campaignv1.Campaign, bool, error) {
	pbs, err := Playbooks()
	if err != nil {
		return nil, false, err
	}
	for _, p := range pbs {
		if p.Name == name {
			return proto.Clone(p.Campaign).(*campaignv1.Campaign), true, nil
		}
	}
	return nil, false, nil
}
