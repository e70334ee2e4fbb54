package testenv

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// Clock is a clock tests move by hand, for a service's Config.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// WaitFor polls cond until it holds, failing the test after 30 s. It waits
// for asynchronous work; it asserts nothing about how long that took.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForUpTo(t, 30*time.Second, what, cond)
}

// WaitForUpTo is WaitFor with another limit.
func WaitForUpTo(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, limit, func() string { return "timed out waiting for " + what }, cond)
}

// waitUntil polls cond until it holds, failing the test with failure()
// (computed then, so it can show the state at the deadline) after limit.
func waitUntil(t testing.TB, limit time.Duration, failure func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(failure())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Marshal encodes m as protobuf, failing the test if it cannot: the bytes
// a bus message carries, for decoder tests and fuzz seeds.
func Marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// PublishEvents puts events on RETAIN_EVENTS exactly as ingest does:
// protobuf Event with the tenant and receivedAt filled in, subject
// retain.events.<tenant>.<type>, Nats-Msg-Id "<tenant>/<event id>", one
// durable publish. Every event must carry its type. The events passed in
// are not modified.
func PublishEvents(t testing.TB, b *bus.Bus, tenant string, receivedAt time.Time, evs ...*eventsv1.Event) {
	t.Helper()
	msgs := make([]bus.Message, len(evs))
	for i, ev := range evs {
		if ev.GetType() == "" {
			t.Fatalf("event %q has no type", ev.GetId())
		}
		ev = proto.Clone(ev).(*eventsv1.Event)
		ev.TenantId = tenant
		ev.ReceivedAt = timestamppb.New(receivedAt)
		data, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = bus.Message{Subject: bus.EventSubject(tenant, ev.GetType()), ID: tenant + "/" + ev.GetId(), Type: ev.GetType(), Data: data}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := b.PublishDurable(ctx, msgs); err != nil {
		t.Fatal(err)
	}
}

// SyncBuffer is a log sink a test can read while the code under test
// writes to it from its goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor waits up to 30 s until every one of lines has been written,
// failing the test with what was written if they do not all come.
func (s *SyncBuffer) WaitFor(t testing.TB, lines ...string) {
	t.Helper()
	missing := ""
	waitUntil(t, 30*time.Second, func() string { return fmt.Sprintf("no %q in the log:\n%s", missing, s.String()) }, func() bool {
		out := s.String()
		for _, l := range lines {
			if !strings.Contains(out, l) {
				missing = l
				return false
			}
		}
		return true
	})
}
