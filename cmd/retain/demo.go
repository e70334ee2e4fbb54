package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/simulate"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/event"
)

// runDemo loads a simulated shop through the public gRPC API, exactly as a
// shop's pipeline would, and prints what Retain did with it.
// caughtUpWaiter is a service whose projections the demo report reads.
type caughtUpWaiter interface {
	WaitCaughtUp(ctx context.Context) error
}

func runDemo(ctx context.Context, env *cliEnv, s devState, natsURL string, o devOptions, projections ...caughtUpWaiter) error {
	w := env.stdout
	end, err := demoEnd(o.dir)
	if err != nil {
		return err
	}
	cfg := simulate.DefaultConfig()
	cfg.Customers, cfg.Days, cfg.Start, cfg.Seed = o.demoCustomers, o.demoDays, end.AddDate(0, 0, -o.demoDays), o.demoSeed
	shop, err := simulate.New(cfg)
	if err != nil {
		return err
	}
	e := &endpoint{addr: s.GRPCAddr, token: s.Token}
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()

	fmt.Fprintf(w, "Demo: a simulated shop, %d customers over %d days (seed %d), sent through the public API\n", o.demoCustomers, o.demoDays, o.demoSeed)
	if err := installDemoPlaybooks(ctx, w, conn); err != nil {
		return err
	}
	byType := map[string]int{}
	var first []*eventsv1.Event
	next := eventPump(ctx, shop, func(ev *eventsv1.Event) {
		byType[ev.GetType()]++
		if len(first) < 500 {
			first = append(first, ev)
		}
	})
	sum, err := newSender(conn, env.stderr).send(ctx, next)
	if err != nil {
		return err
	}
	printSummary(w, sum, 5)

	// A client retry: the same events again are reported as duplicates and
	// change nothing downstream.
	client := ingestv1.NewIngestServiceClient(conn)
	retry, err := client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: first})
	if err != nil {
		return fmt.Errorf("re-send: %w", callError(err, "ingest", auth.ScopeEventsWrite))
	}
	fmt.Fprintf(w, "re-sent the first %d events as a client retry would: %d accepted, %d duplicates\n", len(first), retry.GetAccepted(), retry.GetDuplicates())

	// Bad input is refused event by event, naming the field.
	bad, err := client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: demoBadEvents(time.Now().UTC())})
	if err != nil {
		return fmt.Errorf("send bad events: %w", callError(err, "ingest", auth.ScopeEventsWrite))
	}
	fmt.Fprintf(w, "sent %d malformed events: %d rejected\n", len(bad.GetResults()), bad.GetRejected())
	for _, r := range bad.GetResults() {
		fmt.Fprintf(w, "  #%d %s: %s\n", r.GetIndex(), event.StatusWord(r.GetStatus()), describeErrors(r.GetErrors()))
	}

	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintln(w, "events by type:")
	for _, t := range types {
		fmt.Fprintf(w, "  %-18s %7d\n", t, byType[t])
	}
	if err := printStream(ctx, w, natsURL); err != nil {
		return err
	}
	// The projections are eventually consistent: report once every
	// consumer has applied everything on the stream.
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, p := range projections {
		if err := p.WaitCaughtUp(waitCtx); err != nil {
			return fmt.Errorf("wait for the projections: %w", err)
		}
	}
	if err := printMetricsDemo(ctx, w, conn, end); err != nil {
		return err
	}
	if err := printChurnDemo(ctx, w, conn); err != nil {
		return err
	}
	if err := printCampaignDemo(ctx, w, conn, projections); err != nil {
		return err
	}
	if err := printNotifierDemo(ctx, w, conn, natsURL, projections); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

// demoEnd is the last day of the demo shop's history: today on the first
// run, remembered in the state directory after that, so that running the
// demo again on another day re-sends the same shop (all duplicates) instead
// of adding a second, shifted one.
func demoEnd(dir string) (time.Time, error) {
	path := filepath.Join(dir, "demo-end")
	if b, err := os.ReadFile(path); err == nil {
		t, err := time.Parse(time.DateOnly, strings.TrimSpace(string(b)))
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %w (delete it to start a new demo shop)", path, err)
		}
		return t, nil
	}
	end := time.Now().UTC().Truncate(24 * time.Hour)
	if err := os.WriteFile(path, []byte(end.Format(time.DateOnly)+"\n"), 0o644); err != nil {
		return time.Time{}, err
	}
	return end, nil
}

// eventPump runs the generator in a goroutine and returns a pull function for
// the sender; seen is called for every event before it is handed out.
func eventPump(ctx context.Context, shop *simulate.Shop, seen func(*eventsv1.Event)) func() (sourceEvent, error) {
	ch := make(chan *eventsv1.Event, 1024)
	errc := make(chan error, 1)
	go func() {
		defer close(ch)
		errc <- shop.Events(func(ev *eventsv1.Event) error {
			select {
			case ch <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	line := 0
	return func() (sourceEvent, error) {
		ev, ok := <-ch
		if !ok {
			if err := <-errc; err != nil {
				return sourceEvent{}, err
			}
			return sourceEvent{}, io.EOF
		}
		line++
		seen(ev)
		return sourceEvent{line: line, event: ev}, nil
	}
}

func demoBadEvents(now time.Time) []*eventsv1.Event {
	ts := timestamppb.New(now.Add(-time.Hour))
	return []*eventsv1.Event{
		{Id: "demo-bad-1", OccurredAt: ts, Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{CustomerId: "c-1", OrderId: "o-x", Total: &eventsv1.Money{AmountMinor: -100, Currency: "EUR"}}}},
		{Id: "demo-bad-2", OccurredAt: ts, Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: &eventsv1.SurveyAnswered{CustomerId: "c-1", SurveyId: "s-1", Kind: eventsv1.SurveyKind_SURVEY_KIND_NPS, Score: 11}}},
		{Id: "demo-bad-3", OccurredAt: timestamppb.New(now.Add(72 * time.Hour)), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{OrderId: "o-y", Total: &eventsv1.Money{AmountMinor: 100, Currency: "XYZ"}}}},
	}
}

// printStream shows what is on the bus: the proof that accepted events are
// there exactly once.
func printStream(ctx context.Context, w io.Writer, natsURL string) error {
	nc, err := nats.Connect(natsURL, nats.Name("retain-demo"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s holds %d messages (%.1f MiB), fsynced before each acknowledgement\n", bus.EventsStream, info.State.Msgs, float64(info.State.Bytes)/(1<<20))
	return nil
}
