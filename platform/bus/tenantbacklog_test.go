package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/tenant"
	"github.com/retainhq/retain/platform/testenv"
)

// tenantEvents builds n messages of type typ for tenantID, their ids
// starting with batch.
func tenantEvents(tenantID, typ, batch string, n int) []bus.Message {
	out := make([]bus.Message, n)
	for i := range out {
		out[i] = bus.Message{Subject: bus.EventSubject(tenantID, typ), ID: fmt.Sprintf("%s/%s-%s-%d", tenantID, batch, typ, i), Type: typ, Data: []byte("x")}
	}
	return out
}

// backlogs asks c for each tenant's backlog.
func backlogs(t *testing.T, c *bus.Consumer, tenants ...string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, tn := range tenants {
		n, err := c.TenantBacklog(testCtx(t), tn)
		if err != nil {
			t.Fatalf("TenantBacklog(%s): %v", tn, err)
		}
		out[tn] = n
	}
	return out
}

// TestTenantBacklog: one shop importing its history is behind, the others
// are not, although the consumer as a whole is: each tenant's count is
// its own messages past the consumer's ack floor, on the real server. A
// tenant the consumer does not see (its filters) has none, a bad tenant id
// is refused, and the probes do not stay on the stream.
func TestTenantBacklog(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{Durable: "tenants", BatchSize: 50, Concurrency: 2,
		EventTypes: []string{"order.placed"}}, applyAll)
	if _, err := c.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	if got := backlogs(t, c, "importer", "live"); got["importer"] != 0 || got["live"] != 0 {
		t.Fatalf("an empty stream: %v", got)
	}
	// Applied already: behind the ack floor, counted by nobody.
	if _, err := b.PublishDurable(ctx, append(tenantEvents("importer", "order.placed", "old", 30), tenantEvents("live", "order.placed", "old", 20)...)); err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	if err := c.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if got := backlogs(t, c, "importer", "live"); got["importer"] != 0 || got["live"] != 0 {
		t.Fatalf("caught up: %v", got)
	}
	// The import arrives, with a few live orders amid it; a type the
	// consumer skips is still passed by it, and counted.
	live := tenantEvents("live", "order.placed", "new", 4)
	var msgs []bus.Message
	for i, m := range tenantEvents("importer", "order.placed", "new", 400) {
		msgs = append(msgs, m)
		if i%100 == 0 {
			msgs = append(msgs, live[i/100])
		}
	}
	msgs = append(msgs, tenantEvents("importer", "ticket.opened", "new", 5)...)
	if _, err := b.PublishDurable(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	total, err := c.Backlog(ctx)
	if err != nil || total != 409 {
		t.Fatalf("consumer backlog %d, %v; want 409", total, err)
	}
	if got := backlogs(t, c, "importer", "live", "quiet"); got["importer"] != 405 || got["live"] != 4 || got["quiet"] != 0 {
		t.Fatalf("tenant backlogs %v, want importer 405, live 4, quiet 0", got)
	}

	if _, err := c.TenantBacklog(ctx, "Shop.eu"); err == nil || !strings.Contains(err.Error(), `"Shop.eu"`) || !strings.Contains(err.Error(), tenant.Pattern) {
		t.Errorf("a bad tenant id: %v, want it named with the pattern", err)
	}

	// The probes go by themselves.
	stream, err := b.JS.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the probes to be deleted", func() (bool, string) {
		info, err := stream.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.State.Consumers == 1, fmt.Sprintf("%d consumers", info.State.Consumers)
	})
}

// TestTenantBacklogFilteredConsumer: a consumer with filter subjects counts
// only what they match of the tenant, one probe per filter.
func TestTenantBacklogFilteredConsumer(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{Durable: "filtered",
		FilterSubjects: []string{bus.EventTypeFilter("order.placed"), bus.EventTypeFilter("ticket.opened"), bus.EventSubject("solo", "survey.answered")}},
		func(context.Context, pgx.Tx, []*bus.Delivery) error { return nil })
	if _, err := c.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs []bus.Message
	for _, tn := range []string{"shop", "solo"} {
		for _, typ := range []string{"order.placed", "ticket.opened", "survey.answered", "customer.updated"} {
			msgs = append(msgs, tenantEvents(tn, typ, "new", 3)...)
		}
	}
	if _, err := b.PublishDurable(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if got := backlogs(t, c, "shop", "solo"); got["shop"] != 6 || got["solo"] != 9 {
		t.Fatalf("tenant backlogs %v, want shop 6 (orders, tickets), solo 9 (and its surveys)", got)
	}
}

// TestTenantBacklogProbeRefused: a NATS that does not allow this login
// the probe's creation answers it with silence; the timeout says which
// permissions are missing, rather than only that time ran out. One that
// does not allow the deletion (a NATS whose lists predate decision 0044
// during an upgrade) costs nothing: the count came with the creation, the
// server deletes the probe once idle, and the refusal is logged once,
// naming the permissions.
func TestTenantBacklogProbeRefused(t *testing.T) {
	for what, deny := range map[string]string{
		"creation": "$JS.API.CONSUMER.CREATE." + bus.EventsStream + ".*." + bus.EventsSubjectPrefix + ".>",
		"deletion": "$JS.API.CONSUMER.DELETE." + bus.EventsStream + ".*",
	} {
		t.Run(what, func(t *testing.T) {
			srv := runServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), Users: []*server.User{{
				Username: "campaign", Password: "pcampaign", Permissions: &server.Permissions{
					Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{deny}},
				}}}})
			ctx := testCtx(t)
			b, err := bus.Connect(ctx, bus.Config{URL: "nats://" + srv.Addr().String(), Name: "retain-campaign", User: "campaign", Password: "pcampaign"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			if err := b.EnsureStreams(ctx); err != nil {
				t.Fatal(err)
			}
			logs := &testenv.SyncBuffer{}
			c, err := bus.NewConsumer(b, setupPG(t), bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "refused"}, applyAll, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Declare(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.PublishDurable(ctx, tenantEvents("shop", "order.placed", "x", 3)); err != nil {
				t.Fatal(err)
			}
			want := "allow $JS.API.CONSUMER.CREATE." + bus.EventsStream + ".refused-probe." + bus.EventsSubjectPrefix + ".*.> and $JS.API.CONSUMER.DELETE." + bus.EventsStream + ".refused-probe for this service"
			if what == "deletion" {
				// A probe another replica left, of another configuration,
				// holds the name: it cannot be deleted either, and is
				// waited out (it expires after its inactive threshold).
				if _, err := b.JS.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{
					Name: bus.ProbeName("refused"), Description: "another replica's", FilterSubject: bus.EventsSubjectPrefix + ".other.>",
					AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Second,
				}); err != nil {
					t.Fatal(err)
				}
				for range 2 {
					if n, err := c.TenantBacklog(ctx, "shop"); err != nil || n != 3 {
						t.Fatalf("backlog with the probe's deletion refused: %d, %v; want 3", n, err)
					}
				}
				logs.WaitFor(t, "cannot delete backlog probes", want)
				if n := strings.Count(logs.String(), "cannot delete backlog probes"); n != 1 {
					t.Fatalf("the refused deletion logged %d times, want once:\n%s", n, logs)
				}
				return
			}
			short, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err = c.TenantBacklog(short, "shop")
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Permissions Violation") {
				t.Fatalf("a probe the server refuses: %v, want the refusal and %q", err, want)
			}
		})
	}
}

// TestTenantBacklogProbeNameTaken: the probes have one name per consumer
// (bus.ProbeName), which another replica of the service may be using, or
// a process that died left taken: the count is still right, the probe
// is not reused (it may count from elsewhere) and goes once counted;
// replicas counting at once each get their own tenant's count.
func TestTenantBacklogProbeNameTaken(t *testing.T) {
	srv, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	cfg := bus.ConsumerConfig{Durable: "taken"}
	c := newConsumer(t, b, pool, cfg, applyAll)
	if _, err := c.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs []bus.Message
	for i, tn := range []string{"a", "b", "c", "d"} {
		msgs = append(msgs, tenantEvents(tn, "order.placed", "x", i+1)...)
	}
	if _, err := b.PublishDurable(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	// Left by a process that died: another tenant's, from elsewhere.
	if _, err := b.JS.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Name: bus.ProbeName("taken"),
		FilterSubject: bus.EventSubject("d", "order.placed"), DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: 9,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if got := backlogs(t, c, "d"); got["d"] != 4 {
		t.Fatalf("with the probe's name taken: %v, want d 4", got)
	}

	// Replicas, each its connection, counting at once.
	var replicas []*bus.Consumer
	for range 3 {
		rb := connect(t, srv.URL(), bus.Config{})
		replicas = append(replicas, newConsumer(t, rb, pool, cfg, applyAll))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*20)
	for _, r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				tn := []string{"a", "b", "c", "d"}[i%4]
				n, err := r.TenantBacklog(ctx, tn)
				if err == nil && n != int64(i%4+1) {
					err = fmt.Errorf("tenant %s: %d, want %d", tn, n, i%4+1)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stream, err := b.JS.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Consumers != 1 {
		t.Fatalf("consumers left on the stream: %v, %v; want the durable alone", info.State.Consumers, err)
	}
}
