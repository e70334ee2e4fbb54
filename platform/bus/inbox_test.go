package bus_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

func TestInboxPrefix(t *testing.T) {
	for name, want := range map[string]string{
		"":                  "_INBOX_retain",
		"retain-campaign":   "_INBOX_retain-campaign",
		"Test/sub case.x*>": "_INBOX_Test_sub_case_x__",
		"a\tb$c_d":          "_INBOX_a_b_c_d",
	} {
		if got := (bus.Config{Name: name}).InboxPrefix(); got != want {
			t.Errorf("InboxPrefix of name %q = %q, want %q", name, got, want)
		}
	}
}

// TestConnectOwnInboxes: a connection receives its replies on inboxes
// under its own prefix only, so a server allowing each user to subscribe
// to its own prefix alone runs everything the bus does through inboxes
// (JetStream API requests, publish acks, an atomic batch's ack, pulled
// messages), and refuses a user subscribing to another's inboxes.
func TestConnectOwnInboxes(t *testing.T) {
	user := func(name string) *server.User {
		return &server.User{Username: name, Password: "p" + name, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{bus.Config{Name: "retain-" + name}.InboxPrefix() + ".>"}},
		}}
	}
	srv := runServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), Users: []*server.User{user("campaign"), user("ingest")}})
	url := "nats://" + srv.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connectAs := func(name string) (*bus.Bus, *testenv.SyncBuffer) {
		logs := &testenv.SyncBuffer{}
		b, err := bus.Connect(ctx, bus.Config{URL: url, Name: "retain-" + name, User: name, Password: "p" + name},
			slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(b.Close)
		return b, logs
	}
	b, logs := connectAs("campaign")

	if err := b.EnsureStreams(ctx, bus.DefaultStreams(bus.StreamOptions{})...); err != nil {
		t.Fatalf("declare the streams: %v", err)
	}
	msg := func() bus.Message {
		return bus.Message{Subject: bus.EventSubject("shop", "order.placed"), ID: nuid.Next(), Type: "order.placed", Data: []byte("x")}
	}
	if _, err := b.PublishDurable(ctx, []bus.Message{msg(), msg()}); err != nil {
		t.Fatalf("an atomic batch: %v", err)
	}
	if _, err := b.Publish(ctx, msg()); err != nil {
		t.Fatalf("a single publish: %v", err)
	}
	c, err := b.JS.CreateOrUpdateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: "inbox-test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		got++
		if err := m.Ack(); err != nil {
			t.Errorf("ack: %v", err)
		}
	}
	if got != 3 || batch.Error() != nil {
		t.Errorf("pulled %d messages (%v), want 3", got, batch.Error())
	}
	if s := logs.String(); strings.Contains(strings.ToLower(s), "permissions violation") {
		t.Errorf("refused by NATS:\n%s", s)
	}

	other, otherLogs := connectAs("ingest")
	if _, err := other.NC.SubscribeSync(bus.Config{Name: "retain-campaign"}.InboxPrefix() + ".>"); err != nil {
		t.Fatal(err)
	}
	otherLogs.WaitFor(t, `Permissions Violation for Subscription to \"_INBOX_retain-campaign.>\"`)
}
