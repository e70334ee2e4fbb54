// Package yamlfile words the YAML reader's errors for the files people
// write by hand (campaigns, templates): the line and column of the
// problem, not the reader's internal position.
package yamlfile

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Error words a YAML reader's error with the line and column of the
// problem, and where the construct it is in began when that is on another
// line (the quote or bracket left open). Other errors are returned as
// they are.
func Error(err error) error {
	var (
		one  *yaml.LoadError
		many *yaml.LoadErrors
	)
	switch {
	case errors.As(err, &many) && len(many.Errors) > 0:
		parts := make([]string, len(many.Errors))
		for i, e := range many.Errors {
			parts[i] = text(e)
		}
		return errors.New(strings.Join(parts, "; "))
	case errors.As(err, &one):
		return errors.New(text(one))
	}
	return err
}

func text(e *yaml.LoadError) string {
	// "field x not found in type pkg.goType": the Go type means nothing
	// to whoever wrote the file.
	msg := e.Message
	if i := strings.Index(msg, " not found in type "); i >= 0 {
		msg = msg[:i+len(" not found")]
	}
	if e.Mark.Line <= 0 {
		return msg
	}
	s := fmt.Sprintf("line %d, column %d: %s", e.Mark.Line, e.Mark.Column, msg)
	if c := e.ContextMark; e.ContextMsg != "" && c.Line > 0 && c.Line != e.Mark.Line {
		s += fmt.Sprintf(" (%s at line %d, column %d)", e.ContextMsg, c.Line, c.Column)
	}
	return s
}
