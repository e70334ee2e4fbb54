// Command retain is the one binary of Retain's tooling: `retain dev` runs the
// whole system on embedded defaults; the other commands talk to a running
// Retain over gRPC.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sort"
	"syscall"

	"github.com/retainhq/retain/platform/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one `retain` subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what every command gets: its streams, so tests can drive them.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() map[string]command {
	return map[string]command{
		"dev":         {"run every service in one process on embedded NATS and Postgres", runDev},
		"import":      {"load history from CSV or NDJSON through the ingest API", runImport},
		"simulate":    {"generate a realistic synthetic shop as NDJSON or send it to ingest", runSimulate},
		"tokens":      {"generate key pairs and issue API tokens", runTokens},
		"publish":     {"publish NDJSON events from a file or stdin (same as import ndjson)", runPublish},
		"churn":       {"churn risk: risk CUSTOMER, list --band high, model, refit --as-of DATE, weights [set]", runChurn},
		"deadletters": {"messages a consumer gave up on: list CONSUMER, replay CONSUMER ID...", runDeadLetters},
		"metrics":     {"retention, churn, repeat purchase, cohorts, NPS, RFM, top customers, sales; rebuild", runMetrics},
		"campaigns":   {"campaigns: list, show, apply -f FILE, pause, resume, archive, preview, report, enrollments", runCampaigns},
		"playbooks":   {"ready-made campaigns: list, install NAME", runPlaybooks},
		"templates":   {"message templates: list, show KEY, apply -f FILE, preview KEY --customer C", runTemplates},
		"deliveries":  {"what was sent and why not: list --customer C | --campaign X, show ID (decision trail)", runDeliveries},
		"preferences": {"a customer's channel choices: get CUSTOMER, set CUSTOMER --email-marketing=false", runPreferences},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	if err := run(ctx, env, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errNoCommand) {
			fmt.Fprintln(os.Stderr, "retain:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError is a command line that names no command, an unknown one, an
// unknown flag or the wrong arguments: exit status 2, as flag's own
// ExitOnError and most Unix tools use, so a script tells it from a failure.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// errNoCommand is `retain` alone: a usage error, after the usage.
var errNoCommand = usageError{errors.New("no command given")}

// exitCode is the status a failed run exits with: 0 for -h on a command
// (its usage was asked for and printed); 2 for a usage error and for bad
// settings (`retain dev`'s flags), as a service started alone exits; 1
// otherwise.
func exitCode(err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)), errors.As(err, new(*config.ValidationError)):
		return 2
	}
	return 1
}

// usagef is a usage error: for a missing or extra argument, a missing
// flag or flags that do not go together. A flag's bad value is refused as
// it is parsed instead (see valueFlag).
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// parseFlags parses args into fs; a bad flag, or a value a flag's Set
// refuses (valueFlag), is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err}
}

func run(ctx context.Context, env *cliEnv, args []string) error {
	cmds := commands()
	if len(args) == 0 {
		usage(env.stderr, cmds)
		return errNoCommand
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.stdout, cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(env.stderr, cmds)
		return usageError{fmt.Errorf("unknown command %q", args[0])}
	}
	return c.run(ctx, env, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "retain: retention automation for e-commerce\n\nUsage: retain <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	width := 0
	for n := range cmds {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'retain <command> -h' for a command's flags.")
}

// subcommands dispatches `retain NAME COMMAND ...`: no command or an
// unknown one is a usage error naming the commands there are.
func subcommands(env *cliEnv, name, usage string, args []string, cmds map[string]func([]string) error) error {
	want := orList(slices.Sorted(maps.Keys(cmds)))
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(env.stderr, usage)
		if len(args) == 0 {
			return usagef("%s needs a command: %s", name, want)
		}
		return nil
	}
	run, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintln(env.stderr, usage)
		return usagef("unknown %s command %q: want %s", name, args[0], want)
	}
	return run(args[1:])
}

// oneArg is the one positional argument a command takes.
func oneArg(pos []string, what string) (string, error) {
	if len(pos) != 1 {
		return "", usageError{fmt.Errorf("want exactly one %s, got %d arguments", what, len(pos))}
	}
	return pos[0], nil
}

// noArgs refuses arguments to a command that takes none (a usage error),
// with a hint in brackets when there is one.
func noArgs(pos []string, command, hint string) error {
	if len(pos) == 0 {
		return nil
	}
	if hint != "" {
		hint = " (" + hint + ")"
	}
	return usageError{fmt.Errorf("%s takes no arguments%s, got %q", command, hint, pos)}
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(env *cliEnv, name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet("retain "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: retain %s\n\nFlags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}
