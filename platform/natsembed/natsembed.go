// Package natsembed starts an in-process nats-server with JetStream. It is the
// one place that knows how Retain configures an embedded server, shared by the
// test environment (platform/testenv) and `retain dev`, so both run JetStream
// exactly as production does: file storage with an fsync on every write.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultReadyTimeout bounds how long StartEmbeddedNATS waits for the server to
// accept client connections (JetStream recovery of a large store counts here).
const DefaultReadyTimeout = 30 * time.Second

// EmbeddedNATSOptions configures an embedded nats-server.
type EmbeddedNATSOptions struct {
	// Host to listen on; empty means 127.0.0.1 (never all interfaces by accident).
	Host string
	// Port to listen on, 1-65535; -1 (or 0) picks a random free port. The
	// port actually bound is available from Port(srv) after start.
	Port int
	// StoreDir is the JetStream file store directory (required). Reusing the
	// same directory across starts keeps streams and their messages.
	StoreDir string
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	// Retain requires this in production and dev (see ARCHITECTURE.md §3);
	// it is an option only so benchmarks can measure the difference.
	SyncAlways bool
	// MaxPayload overrides the maximum message size in bytes; 0 keeps the
	// server default (1 MiB).
	MaxPayload int32
	// ServerName names the server; empty lets nats-server generate one.
	ServerName string
	// Logger receives server logs; nil disables server logging entirely.
	// Its Fatalf is never called: nats-server reports start-up failures (a
	// port it cannot bind, a store JetStream cannot open) through Fatalf and
	// carries on, so StartEmbeddedNATS catches them, returns them as its
	// error and passes them to the Logger's Errorf.
	Logger server.Logger
	// Debug and Trace enable verbose server logging (only with Logger).
	Debug, Trace bool
	// ReadyTimeout bounds the wait for the server to be ready; 0 means
	// DefaultReadyTimeout. A start-up failure the server reports ends the
	// wait at once.
	ReadyTimeout time.Duration
}

// ListenError reports that the server cannot listen on its address, e.g.
// because another process already does: errors.Is(err, syscall.EADDRINUSE)
// tells that case apart.
type ListenError struct {
	// Addr is the host:port the server was to listen on.
	Addr string
	// Err is the error of net.Listen.
	Err error
}

func (e *ListenError) Error() string {
	if errors.Is(e.Err, syscall.EADDRINUSE) {
		return e.Addr + " is already in use"
	}
	// "listen tcp ADDR: bind: permission denied" without the repeated address.
	cause := e.Err
	var op *net.OpError
	if errors.As(cause, &op) && op.Err != nil {
		cause = op.Err
	}
	return fmt.Sprintf("cannot listen on %s: %v", e.Addr, cause)
}

func (e *ListenError) Unwrap() error { return e.Err }

// CheckListen binds addr and releases it at once: a *ListenError when the
// address cannot be listened on (taken, not local, not allowed). Another
// process can still take the address right after; it is a fast, precise
// check before a start-up that binds later, not a reservation.
func CheckListen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return &ListenError{Addr: addr, Err: err}
	}
	return l.Close()
}

// StartEmbeddedNATS starts a nats-server with JetStream enabled and waits until
// it accepts connections. The caller owns the server: call Shutdown and then
// WaitForShutdown to release the port and the store directory.
func StartEmbeddedNATS(o EmbeddedNATSOptions) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("start embedded nats: StoreDir is required")
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	if o.Port > 65535 {
		return nil, fmt.Errorf("start embedded nats: port %d out of range (want 1-65535, or 0 or -1 for any free port)", o.Port)
	}
	port := o.Port
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if port <= 0 {
		// nats-server treats 0 as "default port 4222"; Retain's callers mean
		// "any free port", which nats-server spells RANDOM_PORT.
		port = server.RANDOM_PORT
		addr = net.JoinHostPort(host, "0")
	} else if err := CheckListen(addr); err != nil {
		// Before the server opens the store: JetStream recovers the store
		// before it listens, and nats-server's own listen failure is only a
		// log line (caught below, should another process take the port
		// between this check and the server's bind).
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: o.SyncAlways,
		MaxPayload: o.MaxPayload,
		NoLog:      o.Logger == nil,
		Debug:      o.Debug,
		Trace:      o.Trace,
		// The embedding process owns signal handling (graceful shutdown of
		// the whole of `retain dev`, or the test binary).
		NoSigs: true,
		// No HTTP monitoring, cluster, gateway or leafnode listeners: an
		// embedded server only serves its own process's clients.
		HTTPPort: 0,
	}
	if o.SyncAlways {
		// SyncInterval is ignored when SyncAlways is set, but nats-server's own
		// config parser sets both; do the same so option validation agrees.
		opts.SyncInterval = 2 * time.Minute
	}

	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats on %s: %w", addr, err)
	}
	logger := &startLogger{inner: o.Logger, fatal: make(chan string, 1)}
	srv.SetLoggerV2(logger, o.Logger != nil && o.Debug, o.Logger != nil && o.Trace, false)
	go srv.Start()

	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	if err := waitReady(srv, addr, logger.fatal, timeout); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		var le *ListenError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("start embedded nats: %w", err)
		}
		return nil, fmt.Errorf("start embedded nats on %s (store %s): %w", addr, o.StoreDir, err)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats (store %s): JetStream failed to start", o.StoreDir)
	}
	return srv, nil
}

// Port returns the TCP port srv listens on for clients, or 0 if it is not
// listening.
func Port(srv *server.Server) int {
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok || addr == nil {
		return 0
	}
	return addr.Port
}

// waitReady waits until srv, to listen on addr, accepts connections, a
// start-up failure is reported on fatal, or timeout passes.
func waitReady(srv *server.Server, addr string, fatal <-chan string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case msg := <-fatal:
			if strings.HasPrefix(msg, "Error listening on port") {
				// Another process took the port after CheckListen: say so as
				// CheckListen would have.
				if err := CheckListen(addr); err != nil {
					return err
				}
			}
			return errors.New(msg)
		default:
		}
		if srv.ReadyForConnections(50 * time.Millisecond) {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("not ready for connections after %s, and the server reported no start-up error (recovering a large store can take longer)", timeout)
		}
	}
}

// startLogger passes the server's logs to inner (when set) and catches the
// first Fatalf, which nats-server uses for start-up failures it does not
// return: an unbindable port, a JetStream store that cannot be opened.
type startLogger struct {
	inner server.Logger
	fatal chan string // buffered, 1: the first failure is the cause
}

func (l *startLogger) Noticef(format string, v ...any) {
	if l.inner != nil {
		l.inner.Noticef(format, v...)
	}
}

func (l *startLogger) Warnf(format string, v ...any) {
	if l.inner != nil {
		l.inner.Warnf(format, v...)
	}
}

func (l *startLogger) Fatalf(format string, v ...any) {
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
	if l.inner != nil {
		l.inner.Errorf(format, v...)
	}
}

func (l *startLogger) Errorf(format string, v ...any) {
	if l.inner != nil {
		l.inner.Errorf(format, v...)
	}
}

func (l *startLogger) Debugf(format string, v ...any) {
	if l.inner != nil {
		l.inner.Debugf(format, v...)
	}
}

func (l *startLogger) Tracef(format string, v ...any) {
	if l.inner != nil {
		l.inner.Tracef(format, v...)
	}
}
