// Package config binds service settings to RETAIN_* environment variables
// with command-line flags as overrides, and gathers every invalid setting into
// one error so an operator fixes them all in one go instead of one restart at
// a time.
//
// Precedence, highest first: flag given on the command line, environment
// variable, default. Bind settings with String/Int/Bool/Duration (or their
// *Var forms used by RegisterFlags methods), then call Parse.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// LookupFunc reads one environment variable; os.LookupEnv is the default.
// Tests pass their own so they never depend on the process environment.
type LookupFunc func(key string) (string, bool)

// envValue is a flag.Value that remembers which environment variable feeds
// it, so Parse can apply the environment only to flags not set explicitly.
type envValue struct {
	flag.Value
	env string
	// badFlag, set by Parse while it parses the command line, records a
	// value the setting refuses, so every bad flag is reported with the
	// bad environment values instead of the flag package stopping at the
	// first.
	badFlag func(raw string, err error)
}

// Set sets the value from the command line (Parse sets it from the
// environment through Value.Set).
func (v *envValue) Set(raw string) error {
	err := v.Value.Set(raw)
	if err != nil && v.badFlag != nil {
		v.badFlag(raw, err)
		return nil
	}
	return err
}

// String guards against the zero envValue that flag.PrintDefaults builds to
// decide whether a default is worth printing.
func (v *envValue) String() string {
	if v == nil || v.Value == nil {
		return ""
	}
	return v.Value.String()
}

// IsBoolFlag keeps "-flag" (without "=true") working for wrapped bool flags.
func (v *envValue) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func bind(fs *flag.FlagSet, v flag.Value, name, env, usage string) {
	if env != "" {
		usage = fmt.Sprintf("%s (env %s)", usage, env)
	}
	fs.Var(&envValue{Value: v, env: env}, name, usage)
}

// StringVar binds *p to flag name and environment variable env; the current
// value of *p is the default.
func StringVar(fs *flag.FlagSet, p *string, name, env, usage string) {
	bind(fs, (*stringValue)(p), name, env, usage)
}

// String binds a string setting and returns where its value is stored.
func String(fs *flag.FlagSet, name, env, def, usage string) *string {
	p := new(string)
	*p = def
	StringVar(fs, p, name, env, usage)
	return p
}

// IntVar binds an int setting; the current value of *p is the default.
func IntVar(fs *flag.FlagSet, p *int, name, env, usage string) {
	bind(fs, (*intValue)(p), name, env, usage)
}

// Int binds an int setting and returns where its value is stored.
func Int(fs *flag.FlagSet, name, env string, def int, usage string) *int {
	p := new(int)
	*p = def
	IntVar(fs, p, name, env, usage)
	return p
}

// BoolVar binds a bool setting; the current value of *p is the default.
func BoolVar(fs *flag.FlagSet, p *bool, name, env, usage string) {
	bind(fs, (*boolValue)(p), name, env, usage)
}

// Bool binds a bool setting and returns where its value is stored.
func Bool(fs *flag.FlagSet, name, env string, def bool, usage string) *bool {
	p := new(bool)
	*p = def
	BoolVar(fs, p, name, env, usage)
	return p
}

// DurationVar binds a duration setting ("500ms", "30s"); the current value of
// *p is the default.
func DurationVar(fs *flag.FlagSet, p *time.Duration, name, env, usage string) {
	bind(fs, (*durationValue)(p), name, env, usage)
}

// Duration binds a duration setting and returns where its value is stored.
func Duration(fs *flag.FlagSet, name, env string, def time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	*p = def
	DurationVar(fs, p, name, env, usage)
	return p
}

// Parse parses args into fs, then fills every bound setting that was not
// given as a flag from its environment variable (lookup nil means the process
// environment). Every value a setting cannot take, from a flag or from the
// environment, is reported in one *ValidationError naming the variable and
// the flag, the value and the form wanted; other flag errors (an unknown
// flag, -h) are returned as the flag package reports them.
//
// Typed values (integers, booleans, durations) are quoted in the message;
// string settings, where credentials live, never fail to parse, so a
// secret is never echoed.
func Parse(fs *flag.FlagSet, args []string, lookup LookupFunc) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var v Validator
	fs.VisitAll(func(f *flag.Flag) {
		if ev, ok := f.Value.(*envValue); ok {
			ev.badFlag = func(raw string, err error) {
				v.Addf(SettingName(ev.env, f.Name), "flag value %s: %v", quote(raw), errors.Unwrap(err))
			}
		}
	})
	err := fs.Parse(args)
	fs.VisitAll(func(f *flag.Flag) {
		if ev, ok := f.Value.(*envValue); ok {
			ev.badFlag = nil
		}
	})
	if err != nil {
		return err
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	fs.VisitAll(func(f *flag.Flag) {
		ev, ok := f.Value.(*envValue)
		if !ok || ev.env == "" || explicit[f.Name] {
			return
		}
		raw, set := lookup(ev.env)
		if !set {
			return
		}
		if err := ev.Value.Set(raw); err != nil {
			v.Addf(SettingName(ev.env, f.Name), "environment value %s: %v", quote(raw), errors.Unwrap(err))
		}
	})
	return v.Err()
}

// quote shows a value that failed to parse, cut short if long.
func quote(raw string) string {
	const max = 40
	if len(raw) > max {
		return strconv.Quote(raw[:max]) + "..."
	}
	return strconv.Quote(raw)
}

// SettingName is how a setting is named in validation messages: the
// environment variable with the flag that overrides it.
func SettingName(env, flagName string) string {
	switch {
	case env == "":
		return "-" + flagName
	case flagName == "":
		return env
	default:
		return fmt.Sprintf("%s (-%s)", env, flagName)
	}
}

// Problem is one invalid setting.
type Problem struct {
	Setting string
	Message string
}

// ValidationError lists every invalid setting found.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		b.WriteString("invalid configuration: ")
		writeProblem(&b, e.Problems[0])
		return b.String()
	}
	fmt.Fprintf(&b, "invalid configuration (%d problems):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		writeProblem(&b, p)
	}
	return b.String()
}

func writeProblem(b *strings.Builder, p Problem) {
	if p.Setting != "" {
		b.WriteString(p.Setting)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
}

// AddrPort reads an address setting of the form host:port and returns its
// port, which the caller checks against the range it allows (0 picks a
// free port to listen on; an address to dial needs 1-65535).
func AddrPort(addr string) (int, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("want host:port such as 127.0.0.1:9090, got %q", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0, fmt.Errorf("want a numeric port in host:port, got %q", addr)
	}
	return n, nil
}

// Validator collects problems; the zero value is ready to use. Component
// Config.Validate methods return v.Err(), and a main merges them with Add so
// the operator sees every problem at once.
type Validator struct {
	problems []Problem
}

// Addf records a problem with setting.
func (v *Validator) Addf(setting, format string, args ...any) {
	v.problems = append(v.problems, Problem{Setting: setting, Message: fmt.Sprintf(format, args...)})
}

// Check records a problem with setting unless ok.
func (v *Validator) Check(ok bool, setting, format string, args ...any) {
	if !ok {
		v.Addf(setting, format, args...)
	}
}

// Require records a problem when value is empty or only blanks.
func (v *Validator) Require(setting, value string) {
	v.Check(strings.TrimSpace(value) != "", setting, "must be set")
}

// OneOf records a problem unless value is one of allowed.
func (v *Validator) OneOf(setting, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.Addf(setting, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
}

// Add merges err: the problems of a *ValidationError (what a component's
// Validate returns) are kept one by one, and any other error becomes one
// problem without a setting name. nil is ignored.
func (v *Validator) Add(err error) {
	if err == nil {
		return
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		v.problems = append(v.problems, ve.Problems...)
		return
	}
	v.problems = append(v.problems, Problem{Message: err.Error()})
}

// Err returns nil when no problem was recorded, else a *ValidationError with
// the problems sorted by setting (those without one first) so the message
// is stable. A problem recorded twice is listed once.
func (v *Validator) Err() error {
	if len(v.problems) == 0 {
		return nil
	}
	ps := append([]Problem(nil), v.problems...)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Setting < ps[j].Setting })
	ps = slices.Compact(ps)
	return &ValidationError{Problems: ps}
}

// Without returns err without the problems of the given settings (nil when
// none is left): Main drops the semantic problems of a setting whose value
// did not parse, since they are about its default, not the operator's
// value.
func Without(err error, settings map[string]bool) error {
	var in, out Validator
	in.Add(err)
	for _, p := range in.problems {
		if !settings[p.Setting] {
			out.problems = append(out.problems, p)
		}
	}
	return out.Err()
}

// Settings returns the settings named by the problems of err.
func Settings(err error) map[string]bool {
	var v Validator
	v.Add(err)
	names := map[string]bool{}
	for _, p := range v.problems {
		if p.Setting != "" {
			names[p.Setting] = true
		}
	}
	return names
}

// Validate merges the results of several Validate calls into one error.
func Validate(errs ...error) error {
	var v Validator
	for _, err := range errs {
		v.Add(err)
	}
	return v.Err()
}

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string {
	if s == nil {
		return ""
	}
	return string(*s)
}

type intValue int

func (i *intValue) Set(v string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 0, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("parse int: %w", wantError(err, "want a whole number such as 500"))
	}
	*i = intValue(n)
	return nil
}

func (i *intValue) String() string {
	if i == nil {
		return "0"
	}
	return strconv.Itoa(int(*i))
}

type boolValue bool

func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("parse bool: %w", wantError(err, "want true or false"))
	}
	*b = boolValue(x)
	return nil
}

func (b *boolValue) String() string {
	if b == nil {
		return "false"
	}
	return strconv.FormatBool(bool(*b))
}

func (b *boolValue) IsBoolFlag() bool { return true }

type durationValue time.Duration

func (d *durationValue) Set(v string) error {
	x, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("parse duration: %w", errors.New("want a duration with its unit, such as 500ms, 30s, 5m or 720h"))
	}
	*d = durationValue(x)
	return nil
}

func (d *durationValue) String() string {
	if d == nil {
		return "0s"
	}
	return time.Duration(*d).String()
}

// wantError says what form a typed value takes; a number out of range says
// so too. The value itself is quoted by Parse.
func wantError(err error, want string) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
		return fmt.Errorf("out of range (%s)", want)
	}
	return errors.New(want)
}
