package natsembed

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// A process that takes the port between CheckListen and the server's own
// bind makes nats-server log a fatal error instead of listening: that error
// ends the wait at once and is reported as CheckListen would have.
func TestWaitReadyReportsTheServersListenFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	// Not started: it never gets ready, so only the fatal error ends the wait.
	fatal := make(chan string, 1)
	fatal <- fmt.Sprintf("Error listening on port: %s, %q", addr, "listen tcp "+addr+": bind: address already in use")
	err = waitReady(srv, addr, fatal, time.Minute)
	var le *ListenError
	if !errors.As(err, &le) || !errors.Is(err, syscall.EADDRINUSE) || err.Error() != addr+" is already in use" {
		t.Fatalf("err = %v, want %s is already in use", err, addr)
	}

	fatal <- "Can't start JetStream: boom"
	if err := waitReady(srv, addr, fatal, time.Minute); err == nil || err.Error() != "Can't start JetStream: boom" {
		t.Fatalf("err = %v, want the server's own message", err)
	}
}
