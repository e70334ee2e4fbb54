package main

import (
	"flag"
	"log/slog"
	"slices"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/ingest"
	"github.com/retainhq/retain/services/metrics"
	"github.com/retainhq/retain/services/notifier"
)

// serviceSettingsEnv is every variable a standalone service reads: the
// union of the five services' settings.
func serviceSettingsEnv() []string {
	var names []string
	for _, register := range []func(*flag.FlagSet){
		func(fs *flag.FlagSet) { c := ingest.DefaultConfig(); c.RegisterFlags(fs) },
		func(fs *flag.FlagSet) { c := metrics.DefaultConfig(); c.RegisterFlags(fs) },
		func(fs *flag.FlagSet) { c := churnsignal.DefaultConfig(); c.RegisterFlags(fs) },
		func(fs *flag.FlagSet) { c := campaign.DefaultConfig(); c.RegisterFlags(fs) },
		func(fs *flag.FlagSet) { c := notifier.DefaultConfig(); c.RegisterFlags(fs) },
	} {
		fs := flag.NewFlagSet("", flag.ContinueOnError)
		register(fs)
		names = append(names, config.EnvNames(fs)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// warnUnreadEnv logs a warning for each RETAIN_* variable of environ that
// `retain dev` does not read, as a standalone service warns of those it
// does not: dev runs every service on its own defaults (its flags choose
// addresses, ports and log level), so a service setting is ignored here
// as surely as a misspelt name. The command's own variables
// (RETAIN_DATABASE_URL, RETAIN_TOKEN, ...) and the tests' are not
// reported.
func warnUnreadEnv(log *slog.Logger, environ []string) {
	settings := serviceSettingsEnv()
	for _, u := range config.UnknownEnv(environ, nil) {
		if slices.Contains(settings, u.Name) {
			log.Warn("environment variable ignored: retain dev runs every service on its defaults and reads no service setting (run the service alone to use it)", "variable", u.Name)
			continue
		}
		attrs := []any{"variable", u.Name}
		if s := config.Closest(u.Name, append(settings, "RETAIN_DATABASE_URL")); s != "" {
			attrs = append(attrs, "did_you_mean", s)
		}
		log.Warn("environment variable ignored: no Retain service or command reads it (misspelt?)", attrs...)
	}
}
