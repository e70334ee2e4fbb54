package testenv

import (
	"slices"
	"strings"
	"testing"
)

// ConfigCase is a setting a service must refuse (or a few that are only
// refused together), as KEY=VALUE entries, and the message naming it.
type ConfigCase struct {
	Env  []string
	Want string
}

// ConfigMessages checks the message a service gives for each case's bad
// settings, both ways it is configured. parse reads environ (KEY=VALUE
// entries, as os.Environ gives them) as the service's main does
// (service.Parse on its DefaultConfig): given valid followed by the case's
// entries it must fail with exactly "invalid configuration: " + Want. build
// wires the service from the config parse returned (its New, as `retain
// dev` and tests call it, with no telemetry: New reports the configuration
// before it sets anything up), and must report Want too.
//
// parse is the caller's because testenv cannot import platform/service
// (platform/server's own tests import testenv).
func ConfigMessages[C any](tb testing.TB, valid []string, parse func(environ []string) (C, error), build func(C) error, cases ...ConfigCase) {
	tb.Helper()
	if _, err := parse(slices.Clone(valid)); err != nil {
		tb.Fatalf("the valid settings %s are refused: %v", strings.Join(valid, " "), err)
	}
	for _, tc := range cases {
		env := strings.Join(tc.Env, " ")
		cfg, err := parse(slices.Concat(valid, tc.Env))
		if want := "invalid configuration: " + tc.Want; err == nil || err.Error() != want {
			tb.Errorf("%s: Parse = %v\nwant %s", env, err, want)
		}
		if err := build(cfg); err == nil || !strings.Contains(err.Error(), tc.Want) {
			tb.Errorf("%s: New = %v\nwant it to report %s", env, err, tc.Want)
		}
	}
}
