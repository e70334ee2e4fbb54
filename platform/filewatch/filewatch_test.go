package filewatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reader reads the files' contents joined by "|", refusing a file that
// says "bad", and counts its calls: a test sees whether Reload read.
type reader struct {
	calls    atomic.Int64
	inflight atomic.Int64
	overlap  atomic.Bool
}

var errBad = errors.New("bad content")

func (r *reader) read(files []File) (string, error) {
	r.calls.Add(1)
	if r.inflight.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.inflight.Add(-1)
	parts := make([]string, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return "", err
		}
		if string(b) == "bad" {
			return "", fmt.Errorf("%s: %w", f.Path, errBad)
		}
		parts[i] = string(b)
	}
	return strings.Join(parts, "|"), nil
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replace puts content at path as a Secret's swap or an editor's rename
// does: a reader sees the old file or the new one, never one half written.
func replace(t *testing.T, path, content string) {
	t.Helper()
	write(t, path+".new", content)
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// setMtime gives path the modification time at, so that a test changes
// exactly the one thing it means to (size, mtime or file) whatever the
// file system's timestamp granularity.
func setMtime(t *testing.T, path string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

func load(t *testing.T, r *reader, paths ...string) *Value[string] {
	t.Helper()
	v, err := Load("test file", r.read, paths...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return v
}

// oneFile is a value loaded from a new file holding content: the file's
// path, the reader counting its reads, and the value.
func oneFile(t *testing.T, content string) (string, *reader, *Value[string]) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	write(t, p, content)
	r := &reader{}
	return p, r, load(t, r, p)
}

func reload(t *testing.T, v *Value[string], wantChanged bool, want string) {
	t.Helper()
	changed, err := v.Reload()
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if changed != wantChanged {
		t.Errorf("Reload changed = %v, want %v", changed, wantChanged)
	}
	if got := v.Get(); got != want {
		t.Errorf("Get = %q, want %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "one")
	write(t, b, "two")

	var r reader
	v := load(t, &r, a, b)
	if got := v.Get(); got != "one|two" {
		t.Errorf("Get = %q, want the files in the order given", got)
	}
	if got := v.Paths(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Paths = %q", got)
	}

	if _, err := Load("test file", r.read); err == nil || !strings.Contains(err.Error(), "test file: no path given") {
		t.Errorf("Load with no path: err = %v", err)
	}
	_, err := Load("test file", r.read, a, filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "test file: ") {
		t.Errorf("Load of a missing file: err = %v, want it named and wrapping ErrNotExist", err)
	}
	write(t, b, "bad")
	if _, err := Load("test file", r.read, a, b); !errors.Is(err, errBad) {
		t.Errorf("Load of a bad file: err = %v, want read's error", err)
	}
}

func TestReloadUnchanged(t *testing.T) {
	p, r, v := oneFile(t, "one")

	reload(t, v, false, "one")
	// Setting the same times again is no change either.
	setMtime(t, p, mtime(t, p))
	reload(t, v, false, "one")
	if n := r.calls.Load(); n != 1 {
		t.Errorf("read called %d times, want once (by Load): an unchanged file is not read again", n)
	}
}

func TestReloadDetectsChange(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, p string)
	}{
		{"modification time", func(t *testing.T, p string) {
			// Same file, same size: only the time tells.
			write(t, p, "two")
			setMtime(t, p, at.Add(time.Second))
		}},
		{"modification time, sub-second", func(t *testing.T, p string) {
			write(t, p, "two")
			setMtime(t, p, at.Add(time.Millisecond))
		}},
		{"size", func(t *testing.T, p string) {
			// Same file, same time: only the size tells.
			write(t, p, "three")
			setMtime(t, p, at)
		}},
		{"content", func(t *testing.T, p string) {
			// Same file, same size, same time: only the content tells (cp
			// -p over it, a tool restoring times, two writes within the
			// file system's time granularity).
			write(t, p, "two")
			setMtime(t, p, at)
		}},
		{"replaced file", func(t *testing.T, p string) {
			// Same size, same time: only that it is another file tells
			// (an editor's or a tool's write-and-rename).
			tmp := p + ".new"
			write(t, tmp, "two")
			setMtime(t, tmp, at)
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			write(t, p, "one")
			setMtime(t, p, at)
			var r reader
			v := load(t, &r, p)

			tc.change(t, p)
			want := "two"
			if tc.name == "size" {
				want = "three"
			}
			reload(t, v, true, want)
			reload(t, v, false, want)
		})
	}
}

// kubeDir is a directory as the kubelet mounts a ConfigMap or Secret: the
// files are symlinks through ..data, a symlink to a timestamped directory
// holding this version's files. An update writes a new directory and
// swaps ..data to it by renaming a new symlink over it, then removes the
// old directory.
type kubeDir struct {
	dir     string
	version int
}

// update installs a new version of files, written at the time at.
func (k *kubeDir) update(t *testing.T, at time.Time, files map[string]string) {
	t.Helper()
	k.version++
	ts := fmt.Sprintf("..2026_01_02_03_04_05.%d", k.version)
	if err := os.Mkdir(filepath.Join(k.dir, ts), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(k.dir, ts, name)
		write(t, p, content)
		setMtime(t, p, at)
	}
	old, _ := os.Readlink(filepath.Join(k.dir, "..data"))
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(k.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReloadKubernetesSymlinkSwap(t *testing.T) {
	k := &kubeDir{dir: t.TempDir()}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k.update(t, at, map[string]string{"tls.crt": "cert1", "tls.key": "key01"})
	var r reader
	v := load(t, &r, filepath.Join(k.dir, "tls.crt"), filepath.Join(k.dir, "tls.key"))
	if got := v.Get(); got != "cert1|key01" {
		t.Fatalf("Get = %q", got)
	}
	reload(t, v, false, "cert1|key01")

	// Same sizes, same times, same paths: only the files behind them
	// differ. (The first version's files still exist when the second's are
	// written, so they cannot have the same inode numbers: later, with
	// old versions removed, a reused inode number is kept apart by the
	// times the kubelet writes each version at, and by the content.)
	k.update(t, at, map[string]string{"tls.crt": "cert2", "tls.key": "key02"})
	reload(t, v, true, "cert2|key02")
	reload(t, v, false, "cert2|key02")

	// A bad version keeps the pair in use; the next good one replaces it.
	k.update(t, at.Add(time.Minute), map[string]string{"tls.crt": "cert3", "tls.key": "bad"})
	if _, err := v.Reload(); !errors.Is(err, errBad) {
		t.Fatalf("Reload of a bad version: err = %v", err)
	}
	if got := v.Get(); got != "cert2|key02" {
		t.Errorf("Get after a bad version = %q, want the last good pair", got)
	}
	k.update(t, at.Add(2*time.Minute), map[string]string{"tls.crt": "cert4", "tls.key": "key04"})
	reload(t, v, true, "cert4|key04")
}

func TestReloadBadFileKeepsLastGoodValue(t *testing.T) {
	p, r, v := oneFile(t, "one")

	write(t, p, "bad")
	for i := range 2 {
		changed, err := v.Reload()
		if !errors.Is(err, errBad) || changed {
			t.Fatalf("Reload %d of a bad file = %v, %v; want false and read's error", i, changed, err)
		}
		if got := v.Get(); got != "one" {
			t.Errorf("Get after a bad file = %q, want the last good value", got)
		}
	}
	if n := r.calls.Load(); n != 3 {
		t.Errorf("read called %d times, want 3: each Reload after a failed one tries again", n)
	}

	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reload(); !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "test file: ") {
		t.Errorf("Reload of a removed file: err = %v", err)
	}
	if got := v.Get(); got != "one" {
		t.Errorf("Get after the file was removed = %q, want the last good value", got)
	}

	write(t, p, "two")
	reload(t, v, true, "two")
}

// recorder is a slog.Handler keeping what is logged.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// messages are the messages logged so far.
func (h *recorder) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m []string
	for _, r := range h.records {
		m = append(m, r.Message)
	}
	return m
}

func (h *recorder) all(f func(slog.Record) bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if !f(r) {
			return false
		}
	}
	return true
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// watch runs v.Watch until the test ends, and returns its log, and a stop
// that cancels it and waits for Watch to return.
func watch(t *testing.T, v *Value[string]) (*recorder, func()) {
	t.Helper()
	h := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Watch(ctx, 2*time.Millisecond, slog.New(h), Logs{
			Reloaded:  "reloaded",
			Failed:    "failed",
			Recovered: "recovered",
			Attrs:     func() []any { return []any{"value", v.Get()} },
		})
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Watch did not return after its context was done")
		}
	}
	t.Cleanup(stop)
	return h, stop
}

func TestWatchLogs(t *testing.T) {
	p, r, v := oneFile(t, "one")
	h, stop := watch(t, v)
	logged := func(want ...string) func() bool {
		return func() bool { return strings.Join(h.messages(), ",") == strings.Join(want, ",") }
	}

	replace(t, p, "two!")
	eventually(t, "the change to be logged", logged("reloaded"))
	if v.Get() != "two!" {
		t.Errorf("Get = %q after a reload", v.Get())
	}

	// A bad file is logged once however often it is read again.
	replace(t, p, "bad")
	eventually(t, "the bad file to be logged", logged("reloaded", "failed"))
	calls := r.calls.Load()
	eventually(t, "several more reads of the bad file", func() bool { return r.calls.Load() >= calls+5 })
	if got := h.messages(); len(got) != 2 {
		t.Errorf("logged %q, want the bad file logged once", got)
	}

	// Failing another way is logged again, once.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed file to be logged", logged("reloaded", "failed", "failed"))

	// Good again: logged as a reload, and the same failure as before is
	// logged anew.
	replace(t, p, "three")
	eventually(t, "the good file to be logged", logged("reloaded", "failed", "failed", "reloaded"))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the same failure, after a good read, to be logged", logged("reloaded", "failed", "failed", "reloaded", "failed"))

	// The files as they were when last read: recovered, not reloaded.
	replace(t, p, "four")
	eventually(t, "the good file to be logged", logged("reloaded", "failed", "failed", "reloaded", "failed", "reloaded"))
	if err := os.Rename(p, p+".away"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the moved file to be logged", logged("reloaded", "failed", "failed", "reloaded", "failed", "reloaded", "failed"))
	if err := os.Rename(p+".away", p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the file put back to be logged", logged("reloaded", "failed", "failed", "reloaded", "failed", "reloaded", "failed", "recovered"))
	stop()

	if !h.all(func(r slog.Record) bool {
		var has bool
		r.Attrs(func(a slog.Attr) bool {
			has = has || a.Key == "value"
			return true
		})
		return has
	}) {
		t.Error("a line lacks Attrs")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, rec := range h.records {
		if rec.Message == "failed" && rec.Level != slog.LevelError || rec.Message != "failed" && rec.Level != slog.LevelInfo {
			t.Errorf("%q logged at %v", rec.Message, rec.Level)
		}
	}
}

// TestWatchWaitsForAChangeToSettle: a file rewritten in place is empty,
// then half written, then whole; Watch's checks read it only once a
// check finds it as the one before did, so neither the empty file nor the
// half is ever the value (for a revocation list: revocations lifted).
func TestWatchWaitsForAChangeToSettle(t *testing.T) {
	p, r, v := oneFile(t, "one")
	check := func(wantChanged bool, want string) {
		t.Helper()
		changed, _, err := v.reload(true)
		if err != nil || changed != wantChanged || v.Get() != want {
			t.Fatalf("check: changed %v, err %v, value %q; want changed %v, value %q", changed, err, v.Get(), wantChanged, want)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check(false, "one") // truncated: a change, not yet read
	if _, err := f.WriteString("tw"); err != nil {
		t.Fatal(err)
	}
	check(false, "one") // half written: changed again since the last check
	if _, err := f.WriteString("o!"); err != nil {
		t.Fatal(err)
	}
	check(false, "one")
	check(true, "two!") // the same on two checks: read
	check(false, "two!")
	if calls := r.calls.Load(); calls != 2 {
		t.Errorf("read %d times, want 2 (the load and the settled change)", calls)
	}
	// Reload, which a caller asks for, reads a change at once.
	write(t, p, "three")
	reload(t, v, true, "three")
}

// TestWatchContentChangeSettles: a file rewritten in place keeping its
// size and modification time (cp -p) is a change Watch's checks see, read
// once two checks agree on its content.
func TestWatchContentChangeSettles(t *testing.T) {
	p, r, v := oneFile(t, "one!")
	at := mtime(t, p)
	rewrite := func(content string) {
		t.Helper()
		write(t, p, content)
		setMtime(t, p, at)
	}
	check := func(wantChanged bool, want string) {
		t.Helper()
		changed, _, err := v.reload(true)
		if err != nil || changed != wantChanged || v.Get() != want {
			t.Fatalf("check: changed %v, err %v, value %q; want changed %v, value %q", changed, err, v.Get(), wantChanged, want)
		}
	}
	rewrite("twoX")
	check(false, "one!") // a change, not yet read
	rewrite("two!")
	check(false, "one!") // changed again since the last check
	check(true, "two!")  // the same on two checks: read
	check(false, "two!")
	// Put back as it was when last read before: a change too.
	rewrite("one!")
	check(false, "two!")
	check(true, "one!")
	if calls := r.calls.Load(); calls != 3 {
		t.Errorf("read %d times, want 3 (the load and two settled changes)", calls)
	}
}

// TestReloadLargeFileByStat: a file larger than maxHashed is compared by
// stat alone, so that a check never reads a large file whole: a rewrite
// keeping its size and time goes unseen, any other change is read.
func TestReloadLargeFileByStat(t *testing.T) {
	large := func(c string) string { return strings.Repeat(c, maxHashed+1) }
	p, r, v := oneFile(t, large("a"))
	at := mtime(t, p)
	// The value's first byte, not the value, in a failure's message.
	reload := func(wantChanged bool, want string) {
		t.Helper()
		changed, err := v.Reload()
		if err != nil || changed != wantChanged || v.Get()[:1] != want {
			t.Fatalf("Reload = %v, %v, value of %q; want %v, value of %q", changed, err, v.Get()[:1], wantChanged, want)
		}
	}
	write(t, p, large("b"))
	setMtime(t, p, at)
	reload(false, "a")
	setMtime(t, p, at.Add(time.Second))
	reload(true, "b")
	if calls := r.calls.Load(); calls != 2 {
		t.Errorf("read %d times, want 2 (the load and the change of time)", calls)
	}
}

func TestWatchStops(t *testing.T) {
	p, r, v := oneFile(t, "one")
	// A bad file is read at every tick: the reads show whether Watch polls.
	write(t, p, "bad")
	_, stop := watch(t, v)
	calls := r.calls.Load()
	eventually(t, "Watch to poll", func() bool { return r.calls.Load() >= calls+3 })
	stop()

	// Nothing polls once Watch has returned.
	calls = r.calls.Load()
	time.Sleep(50 * time.Millisecond)
	if n := r.calls.Load(); n != calls {
		t.Errorf("read called %d more times after Watch returned", n-calls)
	}

	// A context done before Watch starts returns at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v.Watch(ctx, time.Hour, slog.New(&recorder{}), Logs{})
}

// TestConcurrentReaders reads the value while the file changes and
// several goroutines reload it (run with -race): Get never waits for a
// reload nor sees a value half replaced, and read is never called twice
// at once.
func TestConcurrentReaders(t *testing.T) {
	content := func(i int) string { return strings.Repeat(fmt.Sprint(i%10), 100+i%7) }
	p, r, v := oneFile(t, content(0))
	_, stop := watch(t, v)

	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got := v.Get()
				if got == "" || strings.Count(got, got[:1]) != len(got) {
					t.Errorf("Get = %q, not one of the values written", got)
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := v.Reload(); err != nil {
					t.Errorf("Reload: %v", err)
					return
				}
			}
		})
	}
	for i := 1; i <= 200; i++ {
		replace(t, p, content(i))
	}
	eventually(t, "the last value to be read", func() bool { return v.Get() == content(200) })
	close(done)
	wg.Wait()
	stop()
	if r.overlap.Load() {
		t.Error("read was called while another call was running: Reload is not serialised")
	}
}
