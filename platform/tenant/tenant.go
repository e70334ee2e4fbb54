// Package tenant defines what a tenant id is. Tenant ids are NATS subject
// tokens (retain.events.<tenant>.<type>), parts of message ids and SQL
// values, so every component checks them the same way.
package tenant

import (
	"errors"
	"fmt"
)

// MaxLen is the longest tenant id.
const MaxLen = 63

// Pattern is the syntax of a tenant id, for messages.
const Pattern = "[a-z0-9][a-z0-9_-]{0,62}"

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("bad tenant id")

// Valid reports whether id matches Pattern.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Validate returns an error naming the id (shortened) and the pattern when
// id is not valid.
func Validate(id string) error {
	if Valid(id) {
		return nil
	}
	shown := id
	if len(shown) > 70 {
		shown = shown[:70] + "..."
	}
	return fmt.Errorf("%w: %q does not match %s", ErrInvalid, shown, Pattern)
}
