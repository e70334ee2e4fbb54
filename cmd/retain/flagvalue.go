package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// valueFlag defines a flag whose value is parse of its text. A value parse
// refuses is refused while the flags are parsed: the flag package names the
// flag and the value ("invalid value "0" for flag -limit: must be
// 1-10000") and prints the usage, and parseFlags makes it a usage error
// (exit 2), before anything is dialed. A command that reads a flag's value
// through here cannot report a bad one as a failure by mistake.
//
// The default is parsed the same way; one parse refuses is a bug in the
// command, so valueFlag panics on it.
func valueFlag[T any](fs *flag.FlagSet, name, def, usage string, parse func(string) (T, error)) *T {
	v := &parsedValue[T]{p: new(T), parse: parse}
	if err := v.Set(def); err != nil {
		panic(fmt.Sprintf("flag -%s: default %q: %v", name, def, err))
	}
	fs.Var(v, name, usage)
	return v.p
}

// parsedValue is the flag.Value of valueFlag.
type parsedValue[T any] struct {
	text  string
	p     *T
	parse func(string) (T, error)
}

// String is the value as given. The flag package calls it on a zero
// parsedValue too (to tell whether the default is the zero value).
func (v *parsedValue[T]) String() string { return v.text }

func (v *parsedValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p, v.text = x, s
	return nil
}

// intIn parses a whole number from lo to hi.
func intIn(lo, hi int) func(string) (int, error) {
	return func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("must be %d-%d", lo, hi)
		}
		return n, nil
	}
}

// oneOf parses one of the given words, in any letter case, as written here.
func oneOf(words ...string) func(string) (string, error) {
	return func(s string) (string, error) {
		for _, w := range words {
			if strings.EqualFold(s, w) {
				return w, nil
			}
		}
		return "", errors.New("want " + orList(words))
	}
}

// orList is "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
