// Package filewatch keeps a value read from files and reads it again when
// they change: a revocation list or a certificate in a mounted Secret,
// which Kubernetes replaces, or a file an operator edits. It polls (a stat
// of each file every interval, and a digest of its content) rather than
// waiting for file events: a Secret's update swaps a symlink, which file
// events report differently across volume kinds, and a stat and a read of
// a few KB every few seconds cost nothing.
package filewatch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// File is one watched file: its path, and what stat said of it just
// before it was read.
type File struct {
	Path string
	Info fs.FileInfo
}

// Value is a value read from one or more files. Get never waits for the
// files; Reload reads them again when they changed, and Watch does so
// every interval. A file that cannot be read or holds a bad value leaves
// the last good value in use. It is safe for concurrent use.
type Value[T any] struct {
	name  string
	paths []string
	read  func([]File) (T, error)
	v     atomic.Pointer[T]

	// mu serialises Reload; seen are the files as last read successfully,
	// and pending as Watch last found them changed but not yet read.
	mu      sync.Mutex
	seen    []state
	pending []state
}

// maxHashed is the largest file whose content each check compares: the
// files watched are a few KB (PEM files, a revocation list of some
// thousand ids), and a file above it, which would make every check read
// it whole, is compared by stat alone.
const maxHashed = 1 << 20

// state is a file as a check found it: what stat said, and the SHA-256 of
// its content, or "" when it was not hashed (not a regular file, larger
// than maxHashed, or not readable, which read then reports).
//
// The content is compared because stat alone misses a file rewritten in
// place with the same size and modification time (cp -p, a tool
// restoring times, two writes within the file system's time granularity),
// and a revocation missed so never takes effect. SHA-256 rather than a
// cheaper hash: on a few KB it costs microseconds, and a match needs no
// argument about collisions.
type state struct {
	info fs.FileInfo
	sum  string
}

// check is the file at path as it is now.
func check(path string) (state, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return state{}, err
	}
	return state{info: fi, sum: digest(path, fi)}, nil
}

// digest is the SHA-256 of the file at path, which stat found to be fi,
// or "". A file that cannot be read is not an error here: its "" differs
// from the digest it was last read with, so read runs and says why it
// cannot read it. The file is hashed before read reads it, as it is
// stat'ed before: a change in between shows at the next check.
func digest(path string, fi fs.FileInfo) string {
	if !fi.Mode().IsRegular() || fi.Size() > maxHashed {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	// A file grown past maxHashed since stat is another size at the next
	// check: the limit keeps this one cheap.
	if _, err := io.Copy(h, io.LimitReader(f, maxHashed)); err != nil {
		return ""
	}
	return string(h.Sum(nil))
}

// Load reads a value from the files at paths with read, which gets them
// in the order given. name is what the files hold, in errors ("revocation
// file"). A file that cannot be read, or read's error, is an error: a
// caller must not start on no value.
func Load[T any](name string, read func([]File) (T, error), paths ...string) (*Value[T], error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no path given", name)
	}
	v := &Value[T]{name: name, paths: paths, read: read}
	if _, err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Get is the value last read successfully.
func (v *Value[T]) Get() T { return *v.v.Load() }

// Paths are the files the value is read from.
func (v *Value[T]) Paths() []string { return v.paths }

// Reload reads the files again if any of them changed since they were
// last read successfully (another file, size, modification time or, for
// a file of at most 1 MiB, content: Kubernetes replaces a mounted
// ConfigMap or Secret with new files, editors and tools rewrite them). On
// an error the value in use stays as it was, and the next Reload tries
// again.
func (v *Value[T]) Reload() (changed bool, err error) {
	changed, _, err = v.reload(false)
	return changed, err
}

// reload is Reload; settled reads changed files only once they are found
// the same on two checks in a row. Watch asks for that: a file rewritten
// in place (a shell's >, an editor saving over it) is briefly
// empty or half written, and a revocation list read then would lift the
// revocations it lost until the next check. A writer pausing longer than
// the interval between truncating and writing can still be read half
// done, which a Secret's swap or a rename into place never is. waiting
// is whether a change is held back so.
func (v *Value[T]) reload(settled bool) (changed, waiting bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	files := make([]File, len(v.paths))
	states := make([]state, len(v.paths))
	same, stable := v.seen != nil, v.pending != nil
	for i, p := range v.paths {
		st, err := check(p)
		if err != nil {
			v.pending = nil
			return false, false, fmt.Errorf("%s: %w", v.name, err)
		}
		files[i], states[i] = File{Path: p, Info: st.info}, st
		same = same && unchanged(st, v.seen[i])
		stable = stable && unchanged(st, v.pending[i])
	}
	if same {
		v.pending = nil
		return false, false, nil
	}
	if settled && !stable {
		v.pending = states
		return false, true, nil
	}
	val, err := v.read(files)
	if err != nil {
		return false, false, err
	}
	v.v.Store(&val)
	v.seen, v.pending = states, nil
	return true, false, nil
}

func unchanged(st, seen state) bool {
	fi, was := st.info, seen.info
	return os.SameFile(fi, was) && fi.Size() == was.Size() && fi.ModTime().Equal(was.ModTime()) && st.sum == seen.sum
}

// Logs are what Watch logs.
type Logs struct {
	// Reloaded: changed files were read.
	Reloaded string
	// Failed: the files could not be read, or hold a bad value; the last
	// good value stays in use. Logged once until they read again (or fail
	// another way).
	Failed string
	// Recovered: the files read again as they were when last read (a
	// broken edit undone, a removed file put back).
	Recovered string
	// Attrs describe the value in use, on every line.
	Attrs func() []any
	// Checked, when set, is called after each check of the files, with
	// whatever value is then in use: what the caller logs of the value
	// itself (a certificate near its expiry) rides on this loop rather
	// than a second one polling the same value.
	Checked func()
}

// Watch checks the files every interval (which must be positive) until
// ctx is done, and reads them once a change has held for one interval (see
// reload), logging as logs says: a broken file must neither take the
// caller down nor fill its log.
func (v *Value[T]) Watch(ctx context.Context, interval time.Duration, log *slog.Logger, logs Logs) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var failing error
	attrs := func(extra ...any) []any {
		if logs.Attrs != nil {
			extra = append(extra, logs.Attrs()...)
		}
		return extra
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, waiting, err := v.reload(true)
		switch {
		case waiting:
			// Neither a reload nor a recovery yet: the next check tells.
		case err != nil:
			if failing == nil || err.Error() != failing.Error() {
				failing = err
				log.Error(logs.Failed, attrs("error", err)...)
			}
		case changed:
			failing = nil
			log.Info(logs.Reloaded, attrs()...)
		case failing != nil:
			failing = nil
			log.Info(logs.Recovered, attrs()...)
		}
		if logs.Checked != nil {
			logs.Checked()
		}
	}
}
