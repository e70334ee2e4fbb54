package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	path string
	ids  atomic.Pointer[map[string]struct{}]

	// mu serialises Reload; seen is the file Reload last read successfully.
	mu   sync.Mutex
	seen fs.FileInfo
}

// LoadRevocations reads the revocation file at path. An unreadable or
// invalid file is an error: a service must not start believing nothing is
// revoked.
func LoadRevocations(path string) (*Revocations, error) {
	if path == "" {
		return nil, errors.New("revocation file: no path given")
	}
	r := &Revocations{path: path}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the file r reads.
func (r *Revocations) Path() string { return r.path }

// Revoked reports whether the token with id jti is revoked.
func (r *Revocations) Revoked(jti string) bool {
	_, ok := (*r.ids.Load())[jti]
	return ok
}

// Len is how many ids are revoked.
func (r *Revocations) Len() int { return len(*r.ids.Load()) }

// Reload re-reads the file if it changed since it was last read (another
// file, size or modification time: Kubernetes replaces a mounted ConfigMap
// or Secret with a new file, editors rewrite it). On an error the list in
// use stays as it was, and the next Reload tries again.
func (r *Revocations) Reload() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	if err != nil {
		return false, fmt.Errorf("revocation file: %w", err)
	}
	if r.seen != nil && os.SameFile(fi, r.seen) && fi.Size() == r.seen.Size() && fi.ModTime().Equal(r.seen.ModTime()) {
		return false, nil
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("revocation file %s: not a regular file", r.path)
	}
	if fi.Size() > MaxRevocationFileSize {
		return false, fmt.Errorf("revocation file %s: %d bytes, more than the %d accepted (is it the right file?)", r.path, fi.Size(), MaxRevocationFileSize)
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		return false, fmt.Errorf("revocation file: %w", err)
	}
	ids, err := ParseRevocations(data)
	if err != nil {
		return false, fmt.Errorf("revocation file %s: %w", r.path, err)
	}
	r.ids.Store(&ids)
	r.seen = fi
	return true, nil
}

// Watch calls Reload every interval (DefaultRevocationInterval when not
// positive) until ctx is done. It logs each new list, and a failed reload
// once until it succeeds again, keeping the last good list meanwhile:
// a broken edit must neither lift every revocation nor take the service down.
func (r *Revocations) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = DefaultRevocationInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var failing string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := r.Reload()
		switch {
		case err != nil:
			if err.Error() != failing {
				failing = err.Error()
				log.Error("token revocation list not reloaded: still refusing the ids of the last good one", "error", err, "revoked", r.Len())
			}
		case changed:
			failing = ""
			log.Info("token revocation list reloaded", "path", r.path, "revoked", r.Len())
		case failing != "":
			// The broken file was put back as it was.
			failing = ""
			log.Info("token revocation list readable again", "path", r.path, "revoked", r.Len())
		}
	}
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
