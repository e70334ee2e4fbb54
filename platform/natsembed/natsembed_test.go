package natsembed_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/retainhq/retain/platform/natsembed"
)

func start(t *testing.T, o natsembed.EmbeddedNATSOptions) int {
	t.Helper()
	srv, err := natsembed.StartEmbeddedNATS(o)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	if got := srv.JetStreamConfig(); got.SyncAlways != o.SyncAlways || got.StoreDir == "" {
		t.Fatalf("JetStream config %+v, want SyncAlways=%v", got, o.SyncAlways)
	}
	port := natsembed.Port(srv)
	nc, err := nats.Connect("nats://127.0.0.1:" + strconv.Itoa(port))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	if o.MaxPayload != 0 && nc.MaxPayload() != int64(o.MaxPayload) {
		t.Fatalf("MaxPayload = %d, want %d", nc.MaxPayload(), o.MaxPayload)
	}
	return port
}

func TestStartEmbeddedNATS(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) natsembed.EmbeddedNATSOptions
	}{
		{
			name: "random port with fsync on every write",
			opts: func(t *testing.T) natsembed.EmbeddedNATSOptions {
				return natsembed.EmbeddedNATSOptions{Port: -1, StoreDir: t.TempDir(), SyncAlways: true}
			},
		},
		{
			name: "port zero also means random, custom max payload",
			opts: func(t *testing.T) natsembed.EmbeddedNATSOptions {
				return natsembed.EmbeddedNATSOptions{StoreDir: t.TempDir(), MaxPayload: 4 << 20}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if port := start(t, tt.opts(t)); port == 0 || port == 4222 {
				t.Fatalf("port = %d, want a random one", port)
			}
		})
	}

	t.Run("requires a store directory", func(t *testing.T) {
		_, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Port: -1})
		if err == nil || !strings.Contains(err.Error(), "StoreDir is required") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("refuses a port in use by another server at once", func(t *testing.T) {
		port := start(t, natsembed.EmbeddedNATSOptions{Port: -1, StoreDir: t.TempDir()})
		_, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Port: port, StoreDir: t.TempDir()})
		assertInUse(t, err, port)
	})

	t.Run("refuses a port any other process listens on at once", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		store := filepath.Join(t.TempDir(), "store")
		_, err = natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Port: port, StoreDir: store})
		assertInUse(t, err, port)
		if _, serr := os.Stat(store); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("store directory touched before the port was checked: %v", serr)
		}
	})

	t.Run("refuses a port out of range", func(t *testing.T) {
		_, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Port: 99999, StoreDir: t.TempDir()})
		want := "start embedded nats: port 99999 out of range (want 1-65535, or 0 or -1 for any free port)"
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})

	t.Run("reports a store JetStream cannot open at once", func(t *testing.T) {
		// A file where the store directory should be.
		store := filepath.Join(t.TempDir(), "store")
		if err := os.WriteFile(store, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
		log := &recordingLogger{t: t}
		_, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Port: -1, StoreDir: store, Logger: log})
		if err == nil {
			t.Fatal("started on a file as store directory")
		}
		if msg := err.Error(); !strings.Contains(msg, "Can't start JetStream") || !strings.Contains(msg, store) || strings.Contains(msg, "not ready") {
			t.Fatalf("err = %v, want the JetStream failure with the store", err)
		}
		if !log.hasError("Can't start JetStream") {
			t.Errorf("the failure was not logged through Errorf: %q", log.errors)
		}
	})
}

// assertInUse checks err says that 127.0.0.1:port is taken, in words and as
// an error errors.Is can tell apart.
func assertInUse(t *testing.T, err error, port int) {
	t.Helper()
	want := fmt.Sprintf("start embedded nats: 127.0.0.1:%d is already in use", port)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	var le *natsembed.ListenError
	if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &le) || le.Addr != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("err = %#v, want a *ListenError wrapping EADDRINUSE", err)
	}
}

// recordingLogger fails the test on Fatalf (nats-server's Fatalf must reach
// a Logger as Errorf) and records errors.
type recordingLogger struct {
	t      *testing.T
	mu     sync.Mutex
	errors []string
}

func (l *recordingLogger) Noticef(string, ...any) {}
func (l *recordingLogger) Warnf(string, ...any)   {}
func (l *recordingLogger) Debugf(string, ...any)  {}
func (l *recordingLogger) Tracef(string, ...any)  {}
func (l *recordingLogger) Fatalf(format string, v ...any) {
	l.t.Errorf("Fatalf reached the Logger: "+format, v...)
}

func (l *recordingLogger) Errorf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, fmt.Sprintf(format, v...))
}

func (l *recordingLogger) hasError(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errors {
		if strings.Contains(e, sub) {
			return true
		}
	}
	return false
}

func TestCheckListen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	err = natsembed.CheckListen(addr)
	if err == nil || err.Error() != addr+" is already in use" || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("CheckListen(%s) while held = %v", addr, err)
	}
	l.Close()
	if err := natsembed.CheckListen(addr); err != nil {
		t.Fatalf("CheckListen(%s) once released = %v", addr, err)
	}
	// An address that is not this machine's: the cause, without the
	// address twice.
	err = natsembed.CheckListen("192.0.2.1:4222")
	if err == nil || !strings.HasPrefix(err.Error(), "cannot listen on 192.0.2.1:4222: bind: ") {
		t.Fatalf("CheckListen(192.0.2.1:4222) = %v", err)
	}
}
