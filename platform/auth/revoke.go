package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/retainhq/retain/platform/filewatch"
)

// MaxRevocationFileSize bounds the revocation file: a few hundred thousand
// ids. Anything bigger is most likely the wrong file.
const MaxRevocationFileSize = 16 << 20

// maxRevokedIDSize bounds one id in the file; Signer.Issue makes 26 bytes.
const maxRevokedIDSize = 256

// DefaultRevocationInterval is how often Watch looks at the file.
const DefaultRevocationInterval = 10 * time.Second

// Revocations is the set of revoked token ids (jti), read from a file of one
// id per line. Verify looks ids up in memory, so requests never wait for the
// file; Watch re-reads it when it changes. It is safe for concurrent use.
//
// The file: one id per line, optionally followed by a comment ("ABC # leaked
// in ticket 42"); blank lines and lines starting with # are ignored.
type Revocations struct {
	ids *filewatch.Value[map[string]struct{}]
}

// LoadRevocations reads the revocation file at path. An unreadable or
// invalid file is an error: a service must not start believing nothing is
// revoked.
func LoadRevocations(path string) (*Revocations, error) {
	if path == "" {
		return nil, errors.New("revocation file: no path given")
	}
	ids, err := filewatch.Load("revocation file", readRevocations, path)
	if err != nil {
		return nil, err
	}
	return &Revocations{ids: ids}, nil
}

// readRevocations reads the revocation file, refusing what cannot be one.
func readRevocations(files []filewatch.File) (map[string]struct{}, error) {
	f := files[0]
	if !f.Info.Mode().IsRegular() {
		return nil, fmt.Errorf("revocation file %s: not a regular file", f.Path)
	}
	if f.Info.Size() > MaxRevocationFileSize {
		return nil, fmt.Errorf("revocation file %s: %d bytes, more than the %d accepted (is it the right file?)", f.Path, f.Info.Size(), MaxRevocationFileSize)
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("revocation file: %w", err)
	}
	ids, err := ParseRevocations(data)
	if err != nil {
		return nil, fmt.Errorf("revocation file %s: %w", f.Path, err)
	}
	return ids, nil
}

// Path is the file r reads.
func (r *Revocations) Path() string { return r.ids.Paths()[0] }

// Revoked reports whether the token with id jti is revoked.
func (r *Revocations) Revoked(jti string) bool {
	_, ok := r.ids.Get()[jti]
	return ok
}

// Len is how many ids are revoked.
func (r *Revocations) Len() int { return len(r.ids.Get()) }

// Reload re-reads the file if it changed since it was last read (see
// filewatch.Value.Reload). On an error the list in use stays as it was,
// and the next Reload tries again.
func (r *Revocations) Reload() (changed bool, err error) { return r.ids.Reload() }

// Watch checks the file every interval (DefaultRevocationInterval when
// not positive) until ctx is done, and reads a change once it has held
// for one interval (filewatch.Value.Watch). It logs each new list, and a failed reload
// once until it succeeds again, keeping the last good list meanwhile:
// a broken edit must neither lift every revocation nor take the service down.
func (r *Revocations) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = DefaultRevocationInterval
	}
	r.ids.Watch(ctx, interval, log, filewatch.Logs{
		Reloaded:  "token revocation list reloaded",
		Failed:    "token revocation list not reloaded: still refusing the ids of the last good one",
		Recovered: "token revocation list readable again",
		Attrs:     func() []any { return []any{"path", r.Path(), "revoked", r.Len()} },
	})
}

// ParseRevocations reads the revocation file's format (see Revocations).
// Errors name the line but never quote it: a line holding a whole token by
// mistake must not land in the logs.
func ParseRevocations(data []byte) (map[string]struct{}, error) {
	ids := map[string]struct{}{}
	for n, line := range bytes.Split(data, []byte("\n")) {
		fields := strings.Fields(string(line))
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		id := fields[0]
		if len(fields) > 1 && !strings.HasPrefix(fields[1], "#") {
			return nil, fmt.Errorf("line %d: want one token id per line (a comment starts with #)", n+1)
		}
		if strings.Count(id, ".") == 2 {
			return nil, fmt.Errorf("line %d: holds a whole token, not its id (jti): `retain tokens inspect` shows the id", n+1)
		}
		if len(id) > maxRevokedIDSize {
			return nil, fmt.Errorf("line %d: token id longer than %d bytes", n+1, maxRevokedIDSize)
		}
		for _, c := range []byte(id) {
			if c < 0x21 || c > 0x7e {
				return nil, fmt.Errorf("line %d: token id has a character other than printable ASCII", n+1)
			}
		}
		ids[id] = struct{}{}
	}
	return ids, nil
}
