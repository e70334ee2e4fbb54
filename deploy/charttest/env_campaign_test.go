package charttest

import (
	"flag"

	"github.com/retainhq/retain/services/campaign"
)

// campaign registers its flags from this file (and its require/replace
// lines in go.mod), so it can be dropped on its own while the service is
// unfinished.
func init() {
	serviceEnv["campaign"] = func(fs *flag.FlagSet) { c := campaign.DefaultConfig(); c.RegisterFlags(fs) }
}
