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
// reset. What was sent meanwhile is carried on when it goes on. It can be
// cut too: every connection ends and new ones are refused, a partition of
// this client alone. Tests of how a service copes dial Addr instead of the
// server's own address.
type HangingLink struct {
	ln     net.Listener
	target string

	mu   sync.Mutex
	gate chan struct{} // closed while bytes flow
	cut  bool
	open []net.Conn
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
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		_ = ln.Close()
		l.Cut()
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
				if !l.track(c, up) {
					return
				}
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

// track keeps a new connection's two ends to end at a Cut; while cut it
// ends them at once and reports false.
func (l *HangingLink) track(c, up net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		_ = c.Close()
		_ = up.Close()
		return false
	}
	l.open = append(l.open, c, up)
	return true
}

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

// Cut ends every connection through the link and refuses new ones until
// Resume.
func (l *HangingLink) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for _, c := range l.open {
		_ = c.Close()
	}
	l.open = nil
}

// Resume carries bytes again, those held while hung first, and takes new
// connections after a Cut.
func (l *HangingLink) Resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
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
