package charttest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/ingest"
	"github.com/retainhq/retain/services/metrics"
	"github.com/retainhq/retain/services/notifier"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// publishes is the stream each service publishes to: ingest's facts, and
// the outbox relays of the others; the only stream it may update
// (bus.Publisher, decision 0045). metrics publishes nothing.
var publishes = map[string]string{
	"ingest":      bus.EventsStream,
	"churnsignal": bus.SignalsStream,
	"campaign":    bus.NotificationsStream,
	"notifier":    bus.DeliveriesStream,
}

// extraPublish is what a service calls besides declaring the streams,
// running its consumers and publishing on its stream.
var extraPublish = map[string][]string{
	// commit.StreamOriginals reads the original of a conflicting id, by
	// STREAM.MSG.GET, or DIRECT.GET once a stream allows direct gets.
	"ingest": {"$JS.API.STREAM.MSG.GET." + bus.EventsStream, "$JS.API.DIRECT.GET." + bus.EventsStream},
	// A rebuild (consumer.Rebuilder) replays a tenant with a consumer of
	// its own name (consumer.RebuildName), created for each batch,
	// pulled and deleted (decision 0044); its filters are the tenant's
	// types, several, so the create subject does not end with one.
	"metrics": {
		"$JS.API.CONSUMER.CREATE." + bus.EventsStream + "." + rebuildConsumer,
		"$JS.API.CONSUMER.MSG.NEXT." + bus.EventsStream + "." + rebuildConsumer,
		"$JS.API.CONSUMER.DELETE." + bus.EventsStream + "." + rebuildConsumer,
	},
}

// rebuildConsumer is metrics's consumer.RebuildName, which this module
// cannot import (internal): the metrics subtest runs a rebuild under the
// permissions, so a name that differs fails it.
const rebuildConsumer = "metrics-facts-rebuild"

// countsTenants are the services that ask their facts consumer for a
// tenant's backlog (campaign's scheduled audiences, churn-signal's held
// band changes, the notifier's requests for customers whose profile its
// contacts consumer may not have applied yet).
var countsTenants = map[string]bool{"campaign": true, "churnsignal": true, "notifier": true}

// streamPrefix is the subject prefix of a Retain stream.
func streamPrefix(t *testing.T, stream string) string {
	t.Helper()
	for _, sc := range bus.DefaultStreams(bus.StreamOptions{}) {
		if sc.Name == stream {
			return strings.TrimSuffix(sc.Subjects[0], ".>")
		}
	}
	t.Fatalf("no Retain stream %s", stream)
	return ""
}

// wantPublish is what the user of service must be allowed to publish,
// derived from the code: every service declares the four streams
// (service.Open: reads them, creates a missing one, updates the one it
// publishes on), creates, reads, pulls and acknowledges its consumers
// (bus.Consumer), and publishes on its stream.
func wantPublish(t *testing.T, name string, consumers []bus.ConsumerConfig) []string {
	var want []string
	if s, ok := publishes[name]; ok {
		// A batch whose ack does not come is checked against the
		// account's JetStream room (bus.storageShort), by $JS.API.INFO.
		want = append(want, streamPrefix(t, s)+".>", "$JS.API.INFO")
	}
	for _, op := range []string{"INFO", "CREATE"} {
		for _, sc := range bus.DefaultStreams(bus.StreamOptions{}) {
			want = append(want, "$JS.API.STREAM."+op+"."+sc.Name)
		}
	}
	if s, ok := publishes[name]; ok {
		want = append(want, "$JS.API.STREAM.UPDATE."+s)
	}
	for _, c := range consumers {
		sd := c.Stream + "." + c.Durable
		// CREATE ends with the filter subject when there is exactly one.
		want = append(want, "$JS.API.CONSUMER.CREATE."+sd, "$JS.API.CONSUMER.CREATE."+sd+".>",
			"$JS.API.CONSUMER.INFO."+sd, "$JS.API.CONSUMER.MSG.NEXT."+sd, "$JS.ACK."+sd+".>")
		if countsTenants[name] && c.Stream == bus.EventsStream {
			// bus.Consumer.TenantBacklog's probes: of the consumer's
			// probe name, their one filter (the end of the subject) one
			// tenant's facts, deleted once counted (decisions 0037, 0044).
			probe := c.Stream + "." + bus.ProbeName(c.Durable)
			want = append(want, "$JS.API.CONSUMER.CREATE."+probe+"."+bus.EventsSubjectPrefix+".*.>", "$JS.API.CONSUMER.DELETE."+probe)
		}
	}
	return append(want, extraPublish[name]...)
}

// chartPermissions are the publish and subscribe allow lists of user in
// the values passed to the NATS chart.
func chartPermissions(t *testing.T, r *release, user string) (pub, sub []string) {
	t.Helper()
	authz := r.Values["nats"].(map[string]any)["config"].(map[string]any)["merge"].(map[string]any)["authorization"].(map[string]any)
	for _, u := range authz["users"].([]any) {
		u := u.(map[string]any)
		if u["user"] != user {
			continue
		}
		perms, _ := u["permissions"].(map[string]any)
		list := func(kind string) []string {
			var out []string
			k, _ := perms[kind].(map[string]any)
			for _, s := range k["allow"].([]any) {
				out = append(out, s.(string))
			}
			if _, ok := k["deny"]; ok {
				t.Errorf("%s: a %s deny list, which this test does not check", user, kind)
			}
			return out
		}
		return list("publish"), list("subscribe")
	}
	t.Fatalf("no NATS user %s", user)
	return nil, nil
}

// newService builds a service with the settings the chart gives its pod
// (its NATS login), as service.Open would at start-up, and returns its
// consumers' configurations and how to run it.
func newService(ctx context.Context, name string, cfg service.Config, tel *telemetry.Telemetry) (consumers []*bus.Consumer, run func(context.Context) error, err error) {
	switch name {
	case "ingest":
		c := ingest.DefaultConfig()
		c.Config = cfg
		s, err := ingest.New(ctx, c, tel)
		if err != nil {
			return nil, nil, err
		}
		return s.Consumers(), s.Run, nil
	case "metrics":
		c := metrics.DefaultConfig()
		c.Config = cfg
		s, err := metrics.New(ctx, c, tel)
		if err != nil {
			return nil, nil, err
		}
		return s.Consumers(), s.Run, nil
	case "churnsignal":
		c := churnsignal.DefaultConfig()
		c.Config = cfg
		s, err := churnsignal.New(ctx, c, tel)
		if err != nil {
			return nil, nil, err
		}
		return s.Consumers(), s.Run, nil
	case "campaign":
		c := campaign.DefaultConfig()
		c.Config = cfg
		s, err := campaign.New(ctx, c, tel)
		if err != nil {
			return nil, nil, err
		}
		return s.Consumers(), s.Run, nil
	case "notifier":
		c := notifier.DefaultConfig()
		c.Config = cfg
		c.UnsubscribeSecret = strings.Repeat("u", 32)
		s, err := notifier.New(ctx, c, tel)
		if err != nil {
			return nil, nil, err
		}
		return s.Consumers(), s.Run, nil
	}
	return nil, nil, fmt.Errorf("no service %s", name)
}

// TestBundledNATSPermissions: each service's user of the bundled NATS may
// publish exactly what the service's code sends, and that is enough for
// the service to run. The allow lists in the values are compared with
// the ones derived from the code (wantPublish), then a real nats-server
// configured with them runs every service (its start-up, on streams
// smaller than its settings, and its consumers), a consumer of each of its
// durables and its publishes, with no permission violation; and a user
// publishing on another service's stream, updating or deleting a stream
// it does not publish on, or subscribing to another service's inboxes
// (its replies and pulled messages) or the shared default ones is refused.
func TestBundledNATSPermissions(t *testing.T) {
	r := mustRender(t, []string{"values-production.yaml"}, "config.streamReplicas=1")
	keys := authtest.Keys(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	for _, name := range allServices {
		t.Run(name, func(t *testing.T) {
			// A server of its own, whose streams an earlier release
			// created smaller than the service's settings: the service
			// raises the one it publishes on and leaves the others to
			// their publishers.
			url, _ := startBundledNATS(t, r)
			buses, logs := connectAll(ctx, t, r, url)
			b := buses[name]
			smaller := bus.StreamOptions{MaxAge: 360 * time.Hour}
			for _, sc := range bus.DefaultStreams(smaller) {
				if _, err := b.JS.CreateStream(ctx, sc); err != nil {
					t.Fatalf("create %s: %v", sc.Name, err)
				}
			}
			env := podEnv(t, r, "retain-"+name)
			env["RETAIN_NATS_URL"] = url
			dbURL := testenv.Postgres(t)
			cfg := service.DefaultConfig(name)
			cfg.NATS, cfg.DatabaseURL, cfg.AuthPublicKey = natsConfig(t, name, env), dbURL, keys.Public
			svcLog := &testenv.SyncBuffer{}
			tel, err := telemetry.Setup(ctx, telemetry.Config{Service: name, LogLevel: "warn", Output: svcLog})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
			consumers, run, err := newService(ctx, name, cfg, tel)
			if err != nil {
				t.Fatalf("start-up with the chart's NATS login: %v", err)
			}
			var ccs []bus.ConsumerConfig
			for _, c := range consumers {
				ccs = append(ccs, c.Config())
			}
			pub, sub := chartPermissions(t, r, name)
			want := wantPublish(t, name, ccs)
			slices.Sort(pub)
			slices.Sort(want)
			if !slices.Equal(pub, want) {
				t.Errorf("publish allow list:\n got %q\nwant %q", pub, want)
			}
			// Besides its own inboxes, nats.go's default ones, where only
			// pods of releases before 0031 take replies (an upgrade's
			// rollout).
			if inbox := cfg.NATS.InboxPrefix() + ".>"; !slices.Equal(sub, []string{inbox, "_INBOX.>"}) {
				t.Errorf("subscribe allow list %q, want only the service's replies and pulled messages, %s, and the shared _INBOX.>", sub, inbox)
			}

			// The service itself runs a while: its consumers declared, its
			// relay and backlog gauges polling.
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- run(rctx) }()
			for _, c := range consumers {
				testenv.WaitFor(t, "consumer "+c.Name()+" declared", func() bool {
					_, err := b.JS.Consumer(ctx, c.Config().Stream, c.Name())
					return err == nil
				})
			}
			stop()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			raised(ctx, t, name, b, cfg.Streams.MaxAge, smaller.MaxAge)
			for _, sc := range bus.DefaultStreams(smaller) {
				if sc.Name == publishes[name] {
					continue
				}
				warning := fmt.Sprintf(`"stream":%q,"setting":"max_age","stream_value":"360h","service_value":"720h","publisher":%q`,
					sc.Name, bus.Publisher(sc.Name))
				if !strings.Contains(svcLog.String(), warning) {
					t.Errorf("start-up does not warn that %s's publisher raises it (%s):\n%s", sc.Name, warning, svcLog)
				}
			}

			// Every service declares the streams at start-up (which is
			// how its bus knows the stream of a subject), and raising a
			// setting updates the stream it publishes on.
			for other, ob := range buses {
				if err := ob.EnsureStreamsAs(ctx, other, bus.DefaultStreams(cfg.Streams)...); err != nil {
					t.Errorf("%s declares the streams: %v", other, err)
				}
			}
			if err := b.EnsureStreamsAs(ctx, name, bus.DefaultStreams(bus.StreamOptions{MaxAge: 2 * bus.DefaultMaxAge})...); err != nil {
				t.Errorf("update the streams: %v", err)
			}
			raised(ctx, t, name, b, 2*bus.DefaultMaxAge, cfg.Streams.MaxAge)
			pool, err := pgxpool.New(ctx, dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			for _, cc := range ccs {
				consumeOwn(ctx, t, b, pool, cc, buses)
				if countsTenants[name] && cc.Stream == bus.EventsStream {
					tenantBacklog(ctx, t, b, pool, cc, buses)
				}
			}
			if name == "metrics" {
				rebuild(ctx, t, cfg, keys, buses["ingest"])
			}
			for _, l := range []*testenv.SyncBuffer{logs[name], svcLog} {
				if s := l.String(); strings.Contains(strings.ToLower(s), "permissions violation") {
					t.Errorf("refused by NATS:\n%s", s)
				}
			}
			refused(ctx, t, name, ccs, buses, logs[name])
		})
	}
}

// raised checks, after name declared the streams with maxAge, that the
// stream it publishes on keeps maxAge and the others still keep the
// earlier age.
func raised(ctx context.Context, t *testing.T, name string, b *bus.Bus, maxAge, earlier time.Duration) {
	t.Helper()
	for _, sc := range bus.DefaultStreams(bus.StreamOptions{}) {
		want := earlier
		if sc.Name == publishes[name] {
			want = maxAge
		}
		s, err := b.JS.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxAge; got != want {
			t.Errorf("%s's max age %s after %s declared it with %s; want %s", sc.Name, got, name, maxAge, want)
		}
	}
}

// consumeOwn runs a consumer of cc on b, as its service would, and checks
// that it gets and acknowledges messages published by the service that
// publishes on its stream (atomic batch and single publishes).
func consumeOwn(ctx context.Context, t *testing.T, b *bus.Bus, pool *pgxpool.Pool, cc bus.ConsumerConfig, buses map[string]*bus.Bus) {
	t.Helper()
	var publisher string
	for s, stream := range publishes {
		if stream == cc.Stream {
			publisher = s
		}
	}
	subject, typ := streamPrefix(t, cc.Stream)+".shop.test.fact", "test.fact"
	switch {
	case len(cc.EventTypes) > 0:
		typ = cc.EventTypes[0]
		subject = streamPrefix(t, cc.Stream) + ".shop." + typ
	case len(cc.FilterSubjects) > 0:
		subject = strings.ReplaceAll(strings.ReplaceAll(cc.FilterSubjects[0], "*", "shop"), ">", "x")
	}
	msg := func() bus.Message {
		return bus.Message{Subject: subject, ID: nuid.Next(), Type: typ, Data: []byte("x")}
	}
	var got atomic.Int64
	c, err := bus.NewConsumer(b, pool, cc, func(_ context.Context, _ pgx.Tx, ds []*bus.Delivery) error {
		got.Add(int64(len(ds)))
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	defer func() { stop(); <-done }()
	if err := buses[publisher].PublishAtomic(ctx, []bus.Message{msg(), msg()}); err != nil {
		t.Fatalf("%s publishes a batch on %s: %v", publisher, subject, err)
	}
	if _, err := buses[publisher].Publish(ctx, msg()); err != nil {
		t.Fatalf("%s publishes on %s: %v", publisher, subject, err)
	}
	testenv.WaitFor(t, cc.Durable+" to apply and acknowledge 3 messages", func() bool {
		info, err := b.JS.Consumer(ctx, cc.Stream, cc.Durable)
		return err == nil && got.Load() == 3 && info.CachedInfo().NumAckPending == 0 && info.CachedInfo().NumPending == 0
	})
}

// tenantBacklog counts a tenant's backlog of a consumer of cc on b, as
// its service does (bus.Consumer.TenantBacklog, which creates a probe
// consumer once there is anything pending).
func tenantBacklog(ctx context.Context, t *testing.T, b *bus.Bus, pool *pgxpool.Pool, cc bus.ConsumerConfig, buses map[string]*bus.Bus) {
	t.Helper()
	typ := "test.fact"
	switch {
	case len(cc.EventTypes) > 0:
		typ = cc.EventTypes[0]
	case len(cc.FilterSubjects) > 0:
		// A consumer of one type, <prefix>.*.<type> (bus.EventTypeFilter).
		typ = strings.TrimPrefix(cc.FilterSubjects[0], bus.EventsSubjectPrefix+".*.")
	}
	c, err := bus.NewConsumer(b, pool, cc, func(context.Context, pgx.Tx, []*bus.Delivery) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buses["ingest"].Publish(ctx, bus.Message{Subject: bus.EventSubject("shop", typ), ID: nuid.Next(), Type: typ, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, cc.Durable+" to count the shop's pending fact", func() bool {
		n, err := c.TenantBacklog(ctx, "shop")
		return err == nil && n == 1
	})
}

// rebuild rebuilds a shop's metrics in a metrics process logged in as
// its pod is, through the service's API (consumer.Rebuilder): in batches
// of 2, each replayed through a consumer created, pulled and deleted.
func rebuild(ctx context.Context, t *testing.T, cfg service.Config, keys authtest.KeyPair, ingest *bus.Bus) {
	t.Helper()
	c := metrics.DefaultConfig()
	c.Config = cfg
	c.BatchSize = 2
	tel := servertest.Telemetry(t, "metrics")
	svc, err := metrics.New(ctx, c, tel)
	if err != nil {
		t.Fatal(err)
	}
	r := servertest.Start(t, svc, tel, svc.Verifier(), servertest.Loopback)
	defer func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	}()
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	evs := make([]*eventsv1.Event, 5)
	for i := range evs {
		id := fmt.Sprintf("o-%d", i)
		evs[i] = &eventsv1.Event{Id: id, Type: "order.placed", OccurredAt: timestamppb.New(at.Add(time.Duration(i) * time.Hour)),
			Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: &eventsv1.OrderPlaced{
				OrderId: id, CustomerId: "c-1", Total: &eventsv1.Money{AmountMinor: 1000, Currency: "EUR"}}}}
	}
	testenv.PublishEvents(t, ingest, "shop", at, evs...)
	tok, err := keys.Signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := metricsv1.NewMetricsServiceClient(r.Conn).Rebuild(rctx, &metricsv1.RebuildRequest{}, grpc.PerRPCCredentials(auth.BearerCredentials{Token: tok}))
	if err != nil || res.GetEventsReplayed() < int64(len(evs)) {
		t.Errorf("rebuild: %v, %v; want at least the %d facts published replayed", res, err, len(evs))
	}
}

// refused checks that name's user cannot publish on the streams of the
// others, update a stream it does not publish on (here cutting its
// history to one message), delete a stream, alter or delete another
// service's consumer,
// create a probe of a whole stream (for the services allowed tenant
// probes), nor read the inboxes of the others.
func refused(ctx context.Context, t *testing.T, name string, ccs []bus.ConsumerConfig, buses map[string]*bus.Bus, log *testenv.SyncBuffer) {
	t.Helper()
	b := buses[name]
	for _, other := range allServices {
		if other == name {
			continue
		}
		inbox := service.DefaultConfig(other).NATS.InboxPrefix() + ".>"
		if _, err := b.NC.SubscribeSync(inbox); err != nil {
			t.Fatal(err)
		}
		log.WaitFor(t, `Permissions Violation for Subscription to \"`+inbox+`\"`)
	}
	for other, stream := range publishes {
		if other == name {
			continue
		}
		subject := streamPrefix(t, stream) + ".shop.forged"
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := b.Publish(pctx, bus.Message{Subject: subject, ID: nuid.Next(), Type: "forged", Data: []byte("x")})
		cancel()
		if err == nil {
			t.Errorf("%s published on %s, %s's stream", name, subject, other)
		}
		log.WaitFor(t, `Permissions Violation for Publish to \"`+subject+`\"`)
	}
	if countsTenants[name] {
		// The probes' permission is one tenant's facts, not the stream's.
		probe := bus.ProbeName(ccs[slices.IndexFunc(ccs, func(cc bus.ConsumerConfig) bool { return cc.Stream == bus.EventsStream })].Durable)
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := b.JS.CreateConsumer(pctx, bus.EventsStream, jetstream.ConsumerConfig{Name: probe, FilterSubject: bus.EventsSubjectPrefix + ".>"})
		cancel()
		if err == nil {
			t.Errorf("%s created a consumer of all of %s", name, bus.EventsStream)
		}
		log.WaitFor(t, `Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE.`+bus.EventsStream+`.`+probe+`.`+bus.EventsSubjectPrefix+`.>\"`)
	}
	for _, sc := range bus.DefaultStreams(bus.StreamOptions{}) {
		if sc.Name == publishes[name] {
			continue
		}
		s, err := b.JS.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatal(err)
		}
		cut := s.CachedInfo().Config
		cut.MaxMsgs = 1
		uctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = b.JS.UpdateStream(uctx, cut)
		cancel()
		if s, serr := b.JS.Stream(ctx, sc.Name); err == nil || serr != nil || s.CachedInfo().Config.MaxMsgs == 1 {
			t.Errorf("%s updated %s, %s's stream: %v", name, sc.Name, bus.Publisher(sc.Name), err)
		}
		log.WaitFor(t, `Permissions Violation for Publish to \"$JS.API.STREAM.UPDATE.`+sc.Name+`\"`)
	}
	alterOthers(ctx, t, name, buses, log)
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	err := b.JS.DeleteStream(dctx, bus.EventsStream)
	cancel()
	if _, serr := b.JS.Stream(ctx, bus.EventsStream); err == nil || serr != nil {
		t.Errorf("%s deleted %s: %v", name, bus.EventsStream, err)
	}
	log.WaitFor(t, `Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.`+bus.EventsStream+`\"`)
}

// alterOthers checks that name's user can neither alter nor delete
// another service's durable consumer of RETAIN_EVENTS (decision 0044):
// not by creating a consumer of its name, which updates it (here
// re-filtered to one shop, and made ephemeral with an inactive threshold,
// which has the server delete it), on the create subject naming it (as a
// probe's or a rebuild's does theirs) nor on the one naming none (a
// legacy ephemeral's, whose name is in the request), and not by deleting
// it.
func alterOthers(ctx context.Context, t *testing.T, name string, buses map[string]*bus.Bus, log *testenv.SyncBuffer) {
	t.Helper()
	owner, victim := "metrics", "metrics-facts"
	if name == owner {
		owner, victim = "campaign", "campaign-facts"
	}
	if _, err := buses[owner].JS.CreateOrUpdateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: victim, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatalf("%s declares %s: %v", owner, victim, err)
	}
	b := buses[name]
	altered := jetstream.ConsumerConfig{Name: victim, FilterSubject: bus.EventSubject("shop", "order.placed"), AckPolicy: jetstream.AckExplicitPolicy, InactiveThreshold: time.Second}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := b.JS.CreateOrUpdateConsumer(pctx, bus.EventsStream, altered)
	cancel()
	if err == nil {
		t.Errorf("%s updated %s's consumer %s", name, owner, victim)
	}
	log.WaitFor(t, `Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE.`+bus.EventsStream+`.`+victim+`.`+altered.FilterSubject+`\"`)
	legacy, err := json.Marshal(map[string]any{"stream_name": bus.EventsStream, "config": altered})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.NC.Request("$JS.API.CONSUMER.CREATE."+bus.EventsStream, legacy, time.Second); err == nil {
		t.Errorf("%s updated %s's consumer %s by a legacy ephemeral creation", name, owner, victim)
	}
	log.WaitFor(t, `Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE.`+bus.EventsStream+`\"`)
	pctx, cancel = context.WithTimeout(ctx, time.Second)
	err = b.JS.DeleteConsumer(pctx, bus.EventsStream, victim)
	cancel()
	if err == nil {
		t.Errorf("%s deleted %s's consumer %s", name, owner, victim)
	}
	log.WaitFor(t, `Permissions Violation for Publish to \"$JS.API.CONSUMER.DELETE.`+bus.EventsStream+`.`+victim+`\"`)
	c, err := buses[owner].JS.Consumer(ctx, bus.EventsStream, victim)
	if err != nil {
		t.Fatalf("%s's consumer %s after %s's attempts: %v", owner, victim, name, err)
	}
	if cfg := c.CachedInfo().Config; cfg.Durable != victim || cfg.FilterSubject != "" || cfg.InactiveThreshold != 0 {
		t.Errorf("%s's consumer %s after %s's attempts: durable %q, filter %q, inactive threshold %s; want it as declared", owner, victim, name, cfg.Durable, cfg.FilterSubject, cfg.InactiveThreshold)
	}
}

// connectAll connects a bus per service to the NATS at url, logged in as
// its pod is, each with its log (where nats's async errors go: a refused
// publish or subscription).
func connectAll(ctx context.Context, t *testing.T, r *release, url string) (map[string]*bus.Bus, map[string]*testenv.SyncBuffer) {
	t.Helper()
	buses := map[string]*bus.Bus{}
	logs := map[string]*testenv.SyncBuffer{}
	for _, name := range allServices {
		env := podEnv(t, r, "retain-"+name)
		env["RETAIN_NATS_URL"] = url
		logs[name] = &testenv.SyncBuffer{}
		b, err := bus.Connect(ctx, natsConfig(t, name, env), slog.New(slog.NewTextHandler(logs[name], nil)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(b.Close)
		buses[name] = b
	}
	return buses, logs
}
