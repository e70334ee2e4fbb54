package testenv

import (
	"net"
	"sync"
	"testing"
)

// HangingLink is a TCP proxy to a server that can be made to hang: while
// hung it keeps every connection open and accepts new ones, but carries
// no byte either way, as a server whose process is stopped (SIGSTOP), or a
// network path dropping packets, looks to a client; nothing is refused or
// reset. What was sent meanwhile is carried on when it goes on. Tests of
// how soon a service notices a server that stopped answering dial Addr
// instead of the server's own address.
type HangingLink struct {
	ln     net.Listener
	target string

	mu   sync.Mutex
	gate chan struct{} // closed while bytes flow
}

// NewHangingLink listens on a loopback port and carries connections to
// target (host:port); it closes at cleanup.
func NewHangingLink(t testing.TB, target string) *HangingLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &HangingLink{ln: ln, target: target, gate: make(chan struct{})}
	close(l.gate)
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		l.Resume()
		conns.Wait()
	})
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				if !l.wait(done) {
					_ = c.Close()
					return
				}
				up, err := net.Dial("tcp", target)
				if err != nil {
					_ = c.Close()
					return
				}
				mu.Lock()
				open = append(open, c, up)
				mu.Unlock()
				var pair sync.WaitGroup
				pair.Go(func() { l.copy(up, c, done) })
				pair.Go(func() { l.copy(c, up, done) })
				pair.Wait()
			})
		}
	})
	return l
}

// Addr is the host:port to dial instead of the target's.
func (l *HangingLink) Addr() string { return l.ln.Addr().String() }

// Hang stops carrying bytes until Resume.
func (l *HangingLink) Hang() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.gate:
		l.gate = make(chan struct{})
	default:
	}
}

// Resume carries bytes again, those held while hung first.
func (l *HangingLink) Resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.gate:
	default:
		close(l.gate)
	}
}

// wait blocks while the link hangs; false when it is closing.
func (l *HangingLink) wait(done <-chan struct{}) bool {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	select {
	case <-gate:
		return true
	case <-done:
		return false
	}
}

// copy carries src to dst, holding each chunk read while the link hangs,
// and closes both when either side ends.
func (l *HangingLink) copy(dst, src net.Conn, done <-chan struct{}) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !l.wait(done) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
