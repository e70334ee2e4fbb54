package charttest

import (
	"flag"

	"github.com/retainhq/retain/services/churnsignal"
)

// churnsignal registers its flags from this file (and its require/replace
// lines in go.mod), so it can be dropped on its own while the service is
// unfinished.
func init() {
	serviceEnv["churnsignal"] = func(fs *flag.FlagSet) { c := churnsignal.DefaultConfig(); c.RegisterFlags(fs) }
}
