package bus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/tenant"
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
// the probe answers it with silence; the timeout says which permission
// is missing, rather than only that time ran out.
func TestTenantBacklogProbeRefused(t *testing.T) {
	srv := runServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), Users: []*server.User{{
		Username: "campaign", Password: "pcampaign", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.CONSUMER.CREATE." + bus.EventsStream + ".*." + bus.EventsSubjectPrefix + ".>"}},
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
	c := newConsumer(t, b, setupPG(t), bus.ConsumerConfig{Durable: "refused"}, applyAll)
	if _, err := c.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishDurable(ctx, tenantEvents("shop", "order.placed", "x", 3)); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.TenantBacklog(short, "shop")
	want := "allow $JS.API.CONSUMER.CREATE." + bus.EventsStream + ".*." + bus.EventsSubjectPrefix + ".*.> for this service"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Permissions Violation") {
		t.Fatalf("a probe the server refuses: %v, want the refusal and %q", err, want)
	}
}
