// Package testenv gives tests the real infrastructure Retain runs on: an
// embedded nats-server with JetStream and a real PostgreSQL database. There are
// no mocks of either (ARCHITECTURE.md §7).
package testenv

import (
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/retainhq/retain/platform/natsembed"
)

// NATSServer is an embedded nats-server owned by one test.
type NATSServer struct {
	storeDir string

	mu   sync.Mutex
	srv  *server.Server
	port int
}

// NATS starts an embedded nats-server with JetStream on a random port of
// 127.0.0.1, storing streams in a per-test temporary directory and fsyncing
// every write as production does. The server is shut down in t.Cleanup.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	n := &NATSServer{storeDir: t.TempDir()}
	srv, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{
		Port:       -1,
		StoreDir:   n.storeDir,
		SyncAlways: true,
	})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	n.srv = srv
	n.port = natsembed.Port(srv)
	// Registered after TempDir so it runs before the directory is removed.
	t.Cleanup(n.Shutdown)
	return n
}

// URL is the client URL, e.g. nats://127.0.0.1:41234. It stays the same across
// Restart, so clients that reconnect find the new server.
func (n *NATSServer) URL() string {
	return fmt.Sprintf("nats://127.0.0.1:%d", n.port)
}

// Server exposes the underlying server for tests that need to inspect it.
func (n *NATSServer) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// StoreDir is the JetStream store directory, kept across Restart.
func (n *NATSServer) StoreDir() string { return n.storeDir }

// LimitStore caps the JetStream storage of the server's account at
// maxStore bytes (-1: no cap), as an operator's account limit or a full
// disk would.
func (n *NATSServer) LimitStore(t testing.TB, maxStore int64) {
	t.Helper()
	err := n.Server().GlobalAccount().UpdateJetStreamLimits(map[string]server.JetStreamAccountLimits{
		"": {MaxMemory: -1, MaxStore: maxStore, MaxStreams: -1, MaxConsumers: -1}})
	if err != nil {
		t.Fatal(err)
	}
}

// Restart stops the server and starts a new one on the same port with the same
// store directory, as after a crash or a deploy. Streams and every message
// acknowledged before the restart must survive it.
func (n *NATSServer) Restart(t testing.TB) {
	t.Helper()
	n.Shutdown()
	srv, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{
		Port:       n.port,
		StoreDir:   n.storeDir,
		SyncAlways: true,
	})
	if err != nil {
		t.Fatalf("testenv: restart nats on port %d: %v", n.port, err)
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
}

// Shutdown stops the server and waits until it has released its port and
// store. It is safe to call more than once.
func (n *NATSServer) Shutdown() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}
