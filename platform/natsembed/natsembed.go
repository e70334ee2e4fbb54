// Package natsembed starts an in-process nats-server with JetStream. It is the
// one place that knows how Retain configures an embedded server, shared by the
// test environment (platform/testenv) and `retain dev`, so both run JetStream
// exactly as production does: file storage with an fsync on every write.
package natsembed

import (
	"errors"
	"fmt"
	"net"
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
	// Port to listen on; -1 (or 0) picks a random free port. The port actually
	// bound is available from Port(srv) after start.
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
	// nats-server reports some start-up failures (a port already in use)
	// through Fatalf and carries on: a Logger whose Fatalf exits the process
	// turns those into an exit, so implement Fatalf as an error log.
	Logger server.Logger
	// Debug and Trace enable verbose server logging (only with Logger).
	Debug, Trace bool
	// ReadyTimeout bounds the wait for the server to be ready; 0 means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
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
	port := o.Port
	if port <= 0 {
		// nats-server treats 0 as "default port 4222"; Retain's callers mean
		// "any free port", which nats-server spells RANDOM_PORT.
		port = server.RANDOM_PORT
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
		return nil, fmt.Errorf("start embedded nats on %s:%d: %w", host, o.Port, err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(o.Logger, o.Debug, o.Trace, false)
	}
	go srv.Start()

	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats on %s:%d (store %s): not ready after %s (port in use or store unreadable?)",
			host, o.Port, o.StoreDir, timeout)
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
