package testenv

import (
	"flag"
	"testing"

	"github.com/retainhq/retain/platform/config"
)

// ParseSettings parses args and then env into the settings register binds
// (a service Config's RegisterFlags), as the service's main does with its
// command line and environment, failing the test on a parse error.
func ParseSettings(tb testing.TB, register func(*flag.FlagSet), env map[string]string, args ...string) {
	tb.Helper()
	fs := flag.NewFlagSet(tb.Name(), flag.ContinueOnError)
	register(fs)
	if err := config.Parse(fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		tb.Fatal(err)
	}
}
