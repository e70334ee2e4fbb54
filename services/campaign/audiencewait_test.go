package campaign_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/campaign/internal/app"
)

// TestAudiencesWaitForTheFactsConsumer: a shop imports its history with
// win-back installed. A scheduled pass over the facts applied so far
// finds every customer whose newer orders are still on the stream lapsed
// (QA: 7,814 active customers enrolled, 40% into an import). While the
// facts consumer is further behind than the limit the audiences stay due,
// and run once it has caught up, on the whole history.
func TestAudiencesWaitForTheFactsConsumer(t *testing.T) {
	ctx := context.Background()
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var facts *bus.Consumer
	env := newEngineEnv(t, app.Config{AudienceMaxBacklog: 5,
		FactsBacklog: func(ctx context.Context) (int64, error) { return facts.Backlog(ctx) }}, log)
	b, pool, clock, e := env.pub, env.pool, env.clock, env.engine
	var err error
	if facts, err = bus.NewConsumer(b, pool, bus.ConsumerConfig{Stream: bus.EventsStream, Durable: campaign.FactsConsumer,
		EventTypes: app.FactTypes, BatchSize: 500}, e.HandleFacts, log); err != nil {
		t.Fatal(err)
	}
	if _, err := facts.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.InstallPlaybook(ctx, "shop", "win-back", "", false); err != nil {
		t.Fatal(err)
	}
	// Ten customers: a first order 200 days ago, applied; a second one
	// 10 days ago, still on the stream.
	now := clock.Now()
	var first, recent []*eventsv1.Event
	for i := range 10 {
		c := string(rune('a'+i)) + "-customer"
		first = append(first, orderEv(c+"-1", c, now.Add(-200*day), 1000))
		recent = append(recent, orderEv(c+"-2", c, now.Add(-10*day), 1000))
	}
	testenv.PublishEvents(t, b, "shop", now, first...)
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- facts.Run(run) }()
	if err := facts.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	testenv.PublishEvents(t, b, "shop", now, recent...)

	if ran, err := e.RunAudiences(ctx); err != nil || ran != 0 {
		t.Fatalf("RunAudiences with 10 events behind = %d, %v; want it to wait", ran, err)
	}
	logs.WaitFor(t, "scheduled audiences wait for the facts consumer to catch up")
	if !strings.Contains(logs.String(), "backlog=10 limit=5") {
		t.Errorf("the wait does not say how far behind:\n%s", logs.String())
	}

	run, stop = context.WithCancel(ctx)
	go func() { done <- facts.Run(run) }()
	t.Cleanup(func() { stop(); <-done })
	if err := facts.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if ran, err := e.RunAudiences(ctx); err != nil || ran != 1 {
		t.Fatalf("RunAudiences caught up = %d, %v; want the win-back pass", ran, err)
	}
	logs.WaitFor(t, "scheduled audiences run again: the facts consumer caught up")
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM enrollments WHERE campaign_id = 'win-back'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d win-back enrollments (%v), want none: every customer ordered 10 days ago", n, err)
	}
}
