//go:build unix

package pg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClusterOptions configures a private PostgreSQL cluster.
type ClusterOptions struct {
	// Dir holds the cluster: the data directory Dir/data and the server log
	// Dir/postgres.log. It is created if missing; an initialized Dir/data is
	// reused, so a restarted `retain dev` keeps its data. When the process
	// runs as root, the server runs as the OS user postgres, so Dir must be
	// creatable by root and every parent of Dir traversable by postgres.
	Dir string
	// Port to listen on at 127.0.0.1; 0 picks a free port.
	Port int
	// Durable keeps PostgreSQL's crash safety (fsync, synchronous commit,
	// full page writes). Tests turn it off: their databases are thrown away.
	Durable bool
	// Log, if set, receives the output of initdb and the server's log as it
	// is written (the server log also always goes to Dir/postgres.log). It is
	// written from another goroutine for as long as the server runs.
	Log io.Writer
	// BinDir is the directory holding initdb and postgres. Empty searches
	// PATH, then /usr/lib/postgresql/*/bin and /usr/pgsql-*/bin (newest
	// version first).
	BinDir string
	// InitCacheDir, if set, keeps a pristine result of initdb (per binary
	// version and initdb options) and copies it into new clusters instead of
	// running initdb, which takes seconds. Meant for test clusters; the
	// directory needs only be accessible to this process's user.
	InitCacheDir string
}

// Cluster is a running private PostgreSQL server: throwaway for tests, or the
// local database of `retain dev`. It listens only on 127.0.0.1 with trust
// authentication (no password) for the superuser postgres and has no Unix
// socket, so it must never hold anything but development data.
//
// The server is a child of this process in its own process group (a Ctrl-C
// at the terminal does not stop the database under services that are still
// draining), and on Linux it is sent SIGINT (fast shutdown) if this process
// dies without calling Stop, so crashed tests leave no servers behind.
type Cluster struct {
	dir     string
	dataDir string
	logPath string
	port    int

	cmd     *exec.Cmd
	logFile *os.File
	tail    *tailBuffer
	exited  chan struct{} // closed once the server process has exited
	exitErr error         // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

const (
	defaultStartTimeout = 60 * time.Second
	tailBytes           = 8 << 10
)

// StartCluster starts a PostgreSQL server from the machine's binaries,
// running initdb first if Dir holds no cluster yet, and returns once the
// server accepts connections (bounded by ctx, or 60s if ctx has no deadline).
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("start postgres cluster: Dir is required")
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("start postgres cluster: port %d out of range", opts.Port)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start postgres cluster: %w", err)
	}
	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, fmt.Errorf("start postgres cluster: %w", err)
	}
	owner, err := serverUser()
	if err != nil {
		return nil, fmt.Errorf("start postgres cluster: %w", err)
	}
	if err := prepareDir(dir, owner); err != nil {
		return nil, fmt.Errorf("start postgres cluster: %w", err)
	}

	tail := &tailBuffer{max: tailBytes}
	out := io.Writer(tail)
	if opts.Log != nil {
		out = io.MultiWriter(tail, opts.Log)
	}
	dataDir := filepath.Join(dir, "data")
	if err := initDataDir(ctx, bins, owner, dir, dataDir, opts.InitCacheDir, opts.Durable, out, tail); err != nil {
		return nil, fmt.Errorf("start postgres cluster in %s: %w", dir, err)
	}
	if err := clearStalePostmaster(ctx, dataDir, out); err != nil {
		return nil, fmt.Errorf("start postgres cluster in %s: %w", dir, err)
	}

	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start postgres cluster: open server log: %w", err)
	}
	if owner != nil {
		// So the postgres user can read its own log when inspecting by hand.
		_ = logFile.Chown(owner.uid, owner.gid)
	}

	// A free port found by listening and closing can be taken by another
	// process (a parallel test binary) before postgres binds it: retry.
	attempts := 1
	if opts.Port == 0 {
		attempts = 3
	}
	var lastErr error
	for range attempts {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				_ = logFile.Close()
				return nil, fmt.Errorf("start postgres cluster: %w", err)
			}
		}
		c := &Cluster{dir: dir, dataDir: dataDir, logPath: logPath, port: port, logFile: logFile, tail: tail}
		serverOut := io.MultiWriter(logFile, out)
		err := c.start(ctx, bins, owner, opts.Durable, serverOut)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if opts.Port != 0 || !tail.contains("could not bind", "Address already in use") {
			break
		}
	}
	_ = logFile.Close()
	return nil, fmt.Errorf("start postgres cluster in %s: %w", dir, lastErr)
}

// Exited is closed once the server has exited, whatever ended it: Stop,
// a crash, an operator's pg_ctl; ExitErr then says how.
func (c *Cluster) Exited() <-chan struct{} { return c.exited }

// ExitErr is how the server exited (nil: a clean shutdown), waiting for
// it to exit.
func (c *Cluster) ExitErr() error {
	<-c.exited
	return c.exitErr
}

// URL is the connection URL of database db as the superuser postgres.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, url.PathEscape(db))
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Dir is the cluster directory (ClusterOptions.Dir, absolute).
func (c *Cluster) Dir() string { return c.dir }

// LogPath is the file holding the server log.
func (c *Cluster) LogPath() string { return c.logPath }

// CreateDatabase creates database name unless it exists already.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %s: connect: %w", name, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return createDatabase(ctx, conn, name)
}

// Stop shuts the server down cleanly (fast shutdown: open transactions are
// rolled back, clients disconnected, a checkpoint written). If ctx ends first
// the server is stopped immediately (crash recovery on next start). Calling
// Stop again returns the first result.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { c.stopErr = c.stop(ctx) })
	return c.stopErr
}

func (c *Cluster) stop(ctx context.Context) error {
	defer func() { _ = c.logFile.Close() }()
	select {
	case <-c.exited:
		return fmt.Errorf("stop postgres: server had already exited (%v); log tail:\n%s", c.exitErr, c.tail.String())
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres (pid %d): %w", c.cmd.Process.Pid, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-ctx.Done():
	}
	// Immediate shutdown, then kill: the caller is out of time.
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	return fmt.Errorf("stop postgres: fast shutdown did not finish: %w", ctx.Err())
}

func (c *Cluster) start(ctx context.Context, bins binaries, owner *osUser, durable bool, out io.Writer) error {
	args := []string{
		"-D", c.dataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(c.port),
		// No Unix socket: nothing to clean up and no clash over /var/run.
		"-c", "unix_socket_directories=",
		// Five services and their test pools share one server in dev.
		"-c", "max_connections=200",
	}
	if !durable {
		args = append(args,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
		)
	}
	cmd := exec.Command(bins.postgres, args...)
	cmd.Dir = c.dir
	cmd.Env = childEnv()
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = serverProcAttr(owner)
	c.cmd = cmd
	c.exited = make(chan struct{})

	started := make(chan error, 1)
	go func() {
		// On Linux the parent-death signal is tied to the thread that
		// started the child, not the process: keep this thread alive (and
		// out of the scheduler's pool) until the server has exited.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.exitErr = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("run %s: %w", bins.postgres, err)
	}

	if err := c.waitReady(ctx); err != nil {
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		return fmt.Errorf("%w; server log tail:\n%s", err, c.tail.String())
	}
	return nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	url := c.URL("postgres") + "&connect_timeout=2"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited during start-up (%v)", c.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("postgres not accepting connections on port %d: %w (last error: %v)", c.port, ctx.Err(), lastErr)
		case <-tick.C:
		}
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.pingOwnServer(pingCtx, url)
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
	}
}

// pingOwnServer connects and checks the server answering is this cluster:
// another server already on the port would otherwise pass for ours while
// ours is failing to bind it.
func (c *Cluster) pingOwnServer(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir); err != nil {
		return err
	}
	if dataDir != c.dataDir {
		return fmt.Errorf("port %d is served by another PostgreSQL (data directory %s)", c.port, dataDir)
	}
	return nil
}

type binaries struct{ initdb, postgres string }

func findBinaries(binDir string) (binaries, error) {
	if binDir != "" {
		b := binaries{initdb: filepath.Join(binDir, "initdb"), postgres: filepath.Join(binDir, "postgres")}
		for _, p := range []string{b.initdb, b.postgres} {
			if _, err := os.Stat(p); err != nil {
				return binaries{}, fmt.Errorf("%s not found in BinDir: %w", filepath.Base(p), err)
			}
		}
		return b, nil
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		// postgres must match initdb's version: take it from the same
		// directory (after resolving symlinks such as /usr/local/bin ->
		// /usr/lib/postgresql/15/bin) before falling back to PATH.
		for _, dir := range []string{filepath.Dir(initdb), resolvedDir(initdb)} {
			if p := filepath.Join(dir, "postgres"); isExecutable(p) {
				return binaries{initdb: initdb, postgres: p}, nil
			}
		}
		if p, err := exec.LookPath("postgres"); err == nil {
			return binaries{initdb: initdb, postgres: p}, nil
		}
	}
	var dirs []string
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	// Newest major version first: "/usr/lib/postgresql/16/bin" before ".../9.6/bin".
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		b := binaries{initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, errors.New("initdb not found on PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL server binaries (e.g. apt-get install -y postgresql) or set a database URL instead")
}

func resolvedDir(p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return filepath.Dir(p)
	}
	return filepath.Dir(r)
}

func versionOf(binDir string) float64 {
	v := strings.TrimPrefix(filepath.Base(filepath.Dir(binDir)), "pgsql-")
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// osUser is the account the server runs as when this process is root.
type osUser struct {
	name     string
	uid, gid int
	groups   []uint32
}

// serverUser returns nil when the process is not root (the server runs as
// the current user), else the postgres account: initdb and postgres refuse
// to run as root.
func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root, but there is no OS user postgres to run it as (%w); create one (useradd --system postgres) or run as a non-root user", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	o := &osUser{name: u.Username, uid: uid, gid: gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				o.groups = append(o.groups, uint32(g))
			}
		}
	}
	return o, nil
}

func (u *osUser) inGroup(gid uint32) bool {
	if uint32(u.gid) == gid {
		return true
	}
	for _, g := range u.groups {
		if g == gid {
			return true
		}
	}
	return false
}

func (u *osUser) credential() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: u.groups}
}

// prepareDir creates dir (parents world-traversable, dir itself private) and,
// when the server runs as another user, hands dir to that user after checking
// it can reach it at all.
func prepareDir(dir string, owner *osUser) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cluster directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("cluster directory %s is not a directory", dir)
	}
	if owner == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		pfi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("cluster directory parent: %w", err)
		}
		if !canTraverse(owner, pfi) {
			return fmt.Errorf("cluster directory %s: its parent %s (mode %04o) is not traversable by OS user %s, which runs PostgreSQL because this process is root; put the cluster under a world-traversable directory (e.g. /var/tmp) or chmod o+x %s",
				dir, p, pfi.Mode().Perm(), owner.name, p)
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != owner.uid {
		if err := os.Chown(dir, owner.uid, owner.gid); err != nil {
			return fmt.Errorf("give %s to OS user %s: %w", dir, owner.name, err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

func canTraverse(u *osUser, fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case int(st.Uid) == u.uid:
		return perm&0o100 != 0
	case u.inGroup(st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// initDataDir runs initdb unless dataDir already holds a cluster, in which
// case it checks the binaries can open it. With a cache directory, the result
// of initdb is kept there and copied for later clusters.
func initDataDir(ctx context.Context, bins binaries, owner *osUser, dir, dataDir, cacheDir string, durable bool, out io.Writer, tail *tailBuffer) error {
	if v, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		return checkVersion(ctx, bins, strings.TrimSpace(string(v)), dataDir)
	}
	if entries, err := os.ReadDir(dataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty but holds no PostgreSQL cluster (no PG_VERSION); remove it or choose another directory", dataDir)
	}
	initArgs := []string{"-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"}
	if !durable {
		initArgs = append(initArgs, "--no-sync")
	}

	var cached string
	if cacheDir != "" {
		key, err := initCacheKey(ctx, bins, initArgs)
		if err != nil {
			return err
		}
		cached = filepath.Join(cacheDir, key)
		if _, err := os.Stat(filepath.Join(cached, "PG_VERSION")); err == nil {
			if err := os.RemoveAll(dataDir); err != nil {
				return fmt.Errorf("clear %s: %w", dataDir, err)
			}
			if err := copyTree(cached, dataDir, owner); err != nil {
				return fmt.Errorf("copy cached initdb result %s: %w", cached, err)
			}
			fmt.Fprintf(out, "copied data directory from initdb cache %s\n", cached)
			return nil
		}
	}

	cmd := exec.CommandContext(ctx, bins.initdb, append([]string{"-D", dataDir}, initArgs...)...)
	// initdb resolves its own path from the working directory, which must
	// be readable by the user it runs as (a root-only cwd breaks it).
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.Stdout = out
	cmd.Stderr = out
	if owner != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner.credential()}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w; output tail:\n%s", bins.initdb, err, tail.String())
	}
	if cached != "" {
		// Only a speed-up: a cluster without a cache entry is still fine.
		if err := fillInitCache(dataDir, cached); err != nil {
			fmt.Fprintf(out, "not caching initdb result: %v\n", err)
		}
	}
	return nil
}

func checkVersion(ctx context.Context, bins binaries, dataVersion, dataDir string) error {
	raw, err := exec.CommandContext(ctx, bins.postgres, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", bins.postgres, err)
	}
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
	fields := strings.Fields(string(raw))
	if len(fields) < 3 {
		return nil
	}
	major, _, _ := strings.Cut(fields[2], ".")
	if major != dataVersion {
		return fmt.Errorf("%s was created by PostgreSQL %s but %s is version %s; use matching binaries (BinDir) or a new directory",
			dataDir, dataVersion, bins.postgres, fields[2])
	}
	return nil
}

// clearStalePostmaster deals with a postmaster.pid left by a server that was
// not stopped: if that server is still running on this data directory (its
// owner was killed with SIGKILL) it is shut down; if the pid now belongs to
// some other process, which PostgreSQL would mistake for a live server, the
// file is removed.
func clearStalePostmaster(ctx context.Context, dataDir string, out io.Writer) error {
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	raw, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", pidFile, err)
	}
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(line)))
	if err != nil || pid <= 0 || !isPostmasterOf(pid, dataDir) {
		fmt.Fprintf(out, "removing stale %s\n", pidFile)
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", pidFile, err)
		}
		return nil
	}
	fmt.Fprintf(out, "stopping PostgreSQL (pid %d) left running on %s\n", pid, dataDir)
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop postgres pid %d left running on %s: %w", pid, dataDir, err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ProcessRunning(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop postgres pid %d left running on %s: %w", pid, dataDir, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// isPostmasterOf reports whether pid is a postgres process whose working
// directory is dataDir (the postmaster chdirs into its data directory).
func isPostmasterOf(pid int, dataDir string) bool {
	if !procfs() {
		// No procfs (macOS): trust that a live pid is the server.
		return syscall.Kill(pid, 0) == nil
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	if name := strings.TrimSpace(string(comm)); name != "postgres" && name != "postmaster" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		want = dataDir
	}
	return cwd == want || cwd == dataDir
}

// ProcessRunning reports whether pid runs. A zombie does not: in a container
// whose PID 1 does not reap orphans, a dead server can stay a zombie forever.
func ProcessRunning(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// No procfs (macOS): the signal check is all there is.
		return !errors.Is(err, os.ErrNotExist) || !procfs()
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold ") ".
	i := strings.LastIndex(string(stat), ") ")
	return i < 0 || !strings.HasPrefix(string(stat[i+2:]), "Z")
}

func procfs() bool {
	_, err := os.Stat("/proc/self")
	return err == nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// childEnv is this process's environment without PG* variables: PGDATA,
// PGPORT or PGOPTIONS meant for some other server must not leak into ours.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// tailBuffer keeps the last max bytes written to it, to quote the server's
// own explanation when it fails to start.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func (t *tailBuffer) contains(subs ...string) bool {
	s := t.String()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
