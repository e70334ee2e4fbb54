package charttest

import (
	"flag"

	"github.com/retainhq/retain/services/notifier"
)

// notifier registers its flags from this file (and its require/replace
// lines in go.mod), so it can be dropped on its own while the service is
// unfinished.
func init() {
	serviceEnv["notifier"] = func(fs *flag.FlagSet) { c := notifier.DefaultConfig(); c.RegisterFlags(fs) }
}
