package server

import (
	"fmt"
	"net"
	"sync"
)

// earlyListener binds its address before Run, so a busy port fails start-up
// early and ":0" resolves to a real port callers can read. The gRPC, public
// HTTP and ops servers all embed it.
type earlyListener struct {
	name string // for errors: "grpc", "http", "ops"
	addr string

	mu  sync.Mutex
	lis net.Listener
}

// Listen binds the address now; calling it again is a no-op. Run calls it
// when needed.
func (l *earlyListener) Listen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lis != nil {
		return nil
	}
	lis, err := net.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("%s listen on %s: %w", l.name, l.addr, err)
	}
	l.lis = lis
	return nil
}

// Addr is the bound address (with the real port when the configured one was
// ":0"), or "" before Listen.
func (l *earlyListener) Addr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lis == nil {
		return ""
	}
	return l.lis.Addr().String()
}

// listener binds if needed and returns the listener to serve on.
func (l *earlyListener) listener() (net.Listener, error) {
	if err := l.Listen(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lis, nil
}

// closeListener releases a listener bound by Listen when Run will never be
// called (a failed start-up).
func (l *earlyListener) closeListener() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lis != nil {
		_ = l.lis.Close()
	}
}
