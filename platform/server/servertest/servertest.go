// Package servertest runs a Retain service under a real server.Host in a
// test: loopback ports, silent telemetry, a gRPC connection to it, and a
// clean stop that reports how the host ended.
package servertest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/telemetry"
)

// Loopback are the addresses of a test host: any free port on 127.0.0.1
// for gRPC, public HTTP and ops.
var Loopback = server.Addrs{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0", Ops: "127.0.0.1:0"}

// Telemetry is a telemetry set-up that logs only errors, to nowhere, shut
// down when the test ends.
func Telemetry(t testing.TB, service string) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: service, LogLevel: "error", Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// Running is a service hosted for a test.
type Running struct {
	Host *server.Host
	// Conn reaches the host's gRPC server; calls add their own credentials.
	Conn *grpc.ClientConn
	stop func() error
}

// Start hosts svc on addrs and waits until it is ready. It registers no
// cleanup: tests that restart services stop them at a moment of their
// choosing, so the caller decides (e.g. t.Cleanup(func() { ... r.Stop() })).
func Start(t testing.TB, svc server.Service, tel *telemetry.Telemetry, verifier *auth.Verifier, addrs server.Addrs) *Running {
	t.Helper()
	host, err := server.NewHost(server.HostConfig{Addrs: addrs, Telemetry: tel, Verifier: verifier}, svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()
	r := &Running{Host: host}
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				stopErr = fmt.Errorf("host stopped with: %w", err)
			}
			if r.Conn != nil {
				_ = r.Conn.Close()
			}
		})
		return stopErr
	}
	if err := host.WaitReady(ctx, 20*time.Second); err != nil {
		_ = r.stop()
		t.Fatal(err)
	}
	if r.Conn, err = grpc.NewClient(host.Addrs().GRPC, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		_ = r.stop()
		t.Fatal(err)
	}
	return r
}

// Stop stops the host (draining its services) and closes Conn; later calls
// return the first call's result.
func (r *Running) Stop() error { return r.stop() }

// StopAtEnd stops the host when t ends and fails t if it did not stop
// cleanly.
func (r *Running) StopAtEnd(t testing.TB) {
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	})
}
