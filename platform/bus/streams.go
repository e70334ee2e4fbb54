package bus

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/config"
)

// Retain's streams (ARCHITECTURE.md section 2).
const (
	EventsStream        = "RETAIN_EVENTS"
	SignalsStream       = "RETAIN_SIGNALS"
	NotificationsStream = "RETAIN_NOTIFICATIONS"
	DeliveriesStream    = "RETAIN_DELIVERIES"

	EventsSubjectPrefix        = "retain.events"
	SignalsSubjectPrefix       = "retain.signals"
	NotificationsSubjectPrefix = "retain.notifications"
	DeliveriesSubjectPrefix    = "retain.deliveries"
)

// Stream defaults.
const (
	DefaultMaxAge     = 30 * 24 * time.Hour
	DefaultDuplicates = 10 * time.Minute
)

// The settings of the stream declarations: every service reads them, and
// all of them apply to all four streams, so every service of a deployment
// must be given the same values (the Helm chart renders one value for all:
// config.eventsMaxAge, config.duplicateWindow, config.streamReplicas).
const (
	EnvMaxAge     = "RETAIN_EVENTS_MAX_AGE"
	EnvDuplicates = "RETAIN_DUPLICATE_WINDOW"
	EnvReplicas   = "RETAIN_STREAM_REPLICAS"
)

// StreamOptions are the deploy-time knobs of the stream declarations. They
// size a stream when it is created; on an existing stream the service
// publishing on it only ever raises them (EnsureStreamsAs;
// docs/decisions/0021-stream-settings.md).
type StreamOptions struct {
	// MaxAge is how long every Retain stream (RETAIN_EVENTS,
	// RETAIN_SIGNALS, RETAIN_NOTIFICATIONS, RETAIN_DELIVERIES) keeps
	// messages: for RETAIN_EVENTS the window in which projections can be
	// rebuilt by replay.
	MaxAge time.Duration
	// Duplicates is the Nats-Msg-Id dedupe window. Retries and outbox
	// re-publishes later than this are only caught by consumer inboxes.
	Duplicates time.Duration
	// Replicas per stream (1 in dev, 3 in production).
	Replicas int
}

// RegisterFlags binds the options to -events-max-age/RETAIN_EVENTS_MAX_AGE,
// -duplicate-window/RETAIN_DUPLICATE_WINDOW and
// -stream-replicas/RETAIN_STREAM_REPLICAS, with the current values as
// defaults.
func (o *StreamOptions) RegisterFlags(fs *flag.FlagSet) {
	config.DurationVar(fs, &o.MaxAge, "events-max-age", EnvMaxAge,
		"how long every stream (RETAIN_EVENTS, RETAIN_SIGNALS, RETAIN_NOTIFICATIONS, RETAIN_DELIVERIES) keeps messages when this service creates it; an existing stream is only ever raised, by the service publishing on it, never shrunk")
	config.DurationVar(fs, &o.Duplicates, "duplicate-window", EnvDuplicates,
		"JetStream de-duplication window of every stream (raised, never shrunk, on an existing stream by the service publishing on it)")
	config.IntVar(fs, &o.Replicas, "stream-replicas", EnvReplicas,
		"replicas of every stream, 3 in production clusters (raised, never lowered, on an existing stream by the service publishing on it)")
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Duplicates == 0 {
		o.Duplicates = DefaultDuplicates
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	return o
}

// Validate reports option errors, each naming its setting; zero values
// mean defaults.
func (o StreamOptions) Validate() error {
	var v config.Validator
	maxAge := config.SettingName(EnvMaxAge, "events-max-age")
	dups := config.SettingName(EnvDuplicates, "duplicate-window")
	v.Check(o.MaxAge >= 0, maxAge, "must not be negative, got %s (0: the default, %s)", o.MaxAge, shortDuration(DefaultMaxAge))
	v.Check(o.Duplicates >= 0, dups, "must not be negative, got %s (0: the default, %s)", o.Duplicates, shortDuration(DefaultDuplicates))
	d := o.withDefaults()
	v.Check(o.MaxAge < 0 || o.Duplicates < 0 || d.Duplicates <= d.MaxAge, dups,
		"%s exceeds %s %s: the de-duplication window must fit in the streams' max age", shortDuration(d.Duplicates), EnvMaxAge, shortDuration(d.MaxAge))
	v.Check(o.Replicas >= 0 && o.Replicas <= 5, config.SettingName(EnvReplicas, "stream-replicas"), "must be 1-5, got %d", o.Replicas)
	return v.Err()
}

// baseStream is what every Retain stream shares: file storage (the only
// kind that survives a restart), atomic batch publishing allowed (our
// publishers pay one fsync per batch, not per message) and a dedupe window.
func baseStream(name, prefix string, o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:               name,
		Subjects:           []string{prefix + ".>"},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardOld,
		MaxAge:             o.MaxAge,
		Duplicates:         o.Duplicates,
		Replicas:           o.Replicas,
		AllowAtomicPublish: true,
	}
}

// EventsStreamConfig declares RETAIN_EVENTS: the facts shops send, kept for
// MaxAge (limits retention) so every projection can be rebuilt by replay.
func EventsStreamConfig(o StreamOptions) jetstream.StreamConfig {
	c := baseStream(EventsStream, EventsSubjectPrefix, o)
	c.Description = "Retain facts from shops (orders, tickets, surveys, customers)"
	return c
}

// SignalsStreamConfig declares RETAIN_SIGNALS (churn-signal output).
func SignalsStreamConfig(o StreamOptions) jetstream.StreamConfig {
	c := baseStream(SignalsStream, SignalsSubjectPrefix, o)
	c.Description = "Retain derived signals (churn risk changes)"
	return c
}

// NotificationsStreamConfig declares RETAIN_NOTIFICATIONS, a work queue: a
// notification request is removed once the notifier acks it.
func NotificationsStreamConfig(o StreamOptions) jetstream.StreamConfig {
	c := baseStream(NotificationsStream, NotificationsSubjectPrefix, o)
	c.Description = "Retain notification requests (campaign -> notifier)"
	c.Retention = jetstream.WorkQueuePolicy
	return c
}

// DeliveriesStreamConfig declares RETAIN_DELIVERIES (notifier outcomes).
func DeliveriesStreamConfig(o StreamOptions) jetstream.StreamConfig {
	c := baseStream(DeliveriesStream, DeliveriesSubjectPrefix, o)
	c.Description = "Retain delivery outcomes (sent, failed, suppressed, deferred)"
	return c
}

// DefaultStreams returns all four Retain stream declarations.
func DefaultStreams(o StreamOptions) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		EventsStreamConfig(o),
		SignalsStreamConfig(o),
		NotificationsStreamConfig(o),
		DeliveriesStreamConfig(o),
	}
}

// publishers name the service that publishes on each stream: the only
// one that updates it (docs/decisions/0045-stream-updates-by-their-publisher.md).
var publishers = map[string]string{
	EventsStream:        "ingest",
	SignalsStream:       "churnsignal",
	NotificationsStream: "campaign",
	DeliveriesStream:    "notifier",
}

// Publisher returns the service that publishes on stream ("ingest" for
// RETAIN_EVENTS), "" for a stream that is not Retain's.
func Publisher(stream string) string { return publishers[stream] }

// EnsureStreams declares each stream as the service publishing on it
// would (EnsureStreamsAs): it creates, updates and raises them all. It is
// for tests and tools that stand in for every service; with no arguments
// it declares DefaultStreams(StreamOptions{}).
func (b *Bus) EnsureStreams(ctx context.Context, cfgs ...jetstream.StreamConfig) error {
	if len(cfgs) == 0 {
		cfgs = DefaultStreams(StreamOptions{})
	}
	return b.ensureStreams(ctx, func(string) bool { return true }, cfgs)
}

// EnsureStreamsAs declares each stream for the service named service
// ("ingest"), so every service can declare the streams it uses at
// start-up, idempotently, in any order.
//
// A missing stream is created as declared, whoever publishes on it. An
// existing stream is updated only by its publisher (Publisher): it gets
// the declaration's subjects, description, storage, retention, discard
// policy and atomic publish, while its size settings (max age,
// de-duplication window, replicas) are only ever raised to the declared
// values, never lowered: one replica started with a smaller value must
// not delete the replayable history of every service, nor flap the
// stream against the others at each restart. Another service only reads
// the stream and warns where the stream's settings are below its own or
// what the code owns differs, naming the publisher, which applies them;
// its NATS user may not update the stream (decision 0045). Where the
// stream keeps a larger value than declared, a warning names the stream,
// the setting, both values and how to lower it deliberately. Settings the
// declaration does not make (max bytes, max messages, ...) are left as an
// operator set them.
func (b *Bus) EnsureStreamsAs(ctx context.Context, service string, cfgs ...jetstream.StreamConfig) error {
	return b.ensureStreams(ctx, func(stream string) bool { return Publisher(stream) == service }, cfgs)
}

func (b *Bus) ensureStreams(ctx context.Context, updates func(stream string) bool, cfgs []jetstream.StreamConfig) error {
	for _, cfg := range cfgs {
		if err := b.ensureStream(ctx, cfg, updates(cfg.Name)); err != nil {
			return fmt.Errorf("bus: ensure stream %s: %w", cfg.Name, err)
		}
		b.addRoute(cfg.Name, cfg.Subjects)
	}
	return nil
}

func (b *Bus) ensureStream(ctx context.Context, want jetstream.StreamConfig, update bool) error {
	s, err := b.JS.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Creating cannot alter a stream that exists (the server refuses
		// another configuration), so every service may: none waits for
		// the publisher to start first.
		_, err = b.JS.CreateStream(ctx, want)
		if err == nil {
			b.log.Info("stream created", "stream", want.Name, "max_age", shortDuration(want.MaxAge),
				"duplicate_window", shortDuration(want.Duplicates), "replicas", want.Replicas)
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		// Another replica created it meanwhile, maybe with other
		// settings: reconcile with what it created.
		s, err = b.JS.Stream(ctx, want.Name)
	}
	if err != nil {
		return err
	}
	have := s.CachedInfo().Config
	next, changes, kept := reconcileStream(have, want)
	for _, k := range kept {
		b.log.Warn("stream keeps a larger setting than this service's: a service only creates streams or raises their settings, never lowers them",
			"stream", want.Name, "setting", k.setting, "stream_value", k.have, "service_value", k.want, "variable", k.env,
			"to_lower", fmt.Sprintf("set %s=%s on every service (Helm chart: %s), then run: nats stream edit %s %s=%s",
				k.env, k.want, k.chart, want.Name, k.cliFlag, k.want))
	}
	if len(changes) == 0 {
		return nil
	}
	if !update {
		b.warnNotUpdated(want.Name, changes)
		return nil
	}
	if _, err := b.JS.UpdateStream(ctx, next); err != nil {
		return err
	}
	descs := make([]string, len(changes))
	for i, c := range changes {
		descs[i] = fmt.Sprintf("%s %s -> %s", c.setting, c.have, c.want)
	}
	b.log.Info("stream updated", "stream", want.Name, "changes", strings.Join(descs, ", "))
	return nil
}

// warnNotUpdated says what a service that does not publish on stream
// would have changed in it: its publisher applies the declaration when it
// starts (with the same settings, as the chart gives every service).
func (b *Bus) warnNotUpdated(stream string, changes []settingDiff) {
	publisher := Publisher(stream)
	who := publisher
	if who == "" {
		who = "the service publishing on it"
	}
	for _, c := range changes {
		attrs := []any{"stream", stream, "setting", c.setting, "stream_value", c.have, "service_value", c.want, "publisher", publisher}
		if c.env == "" {
			b.log.Warn("stream differs from this service's declaration of it: only the service publishing on it updates a stream",
				append(attrs, "to_update", fmt.Sprintf("%s brings it to its release's declaration when it starts", who))...)
			continue
		}
		b.log.Warn("stream has a smaller setting than this service's: only the service publishing on it raises a stream",
			append(attrs, "variable", c.env, "to_raise", fmt.Sprintf("set %s=%s on every service (Helm chart: %s); %s raises the stream when it starts",
				c.env, c.want, c.chart, who))...)
	}
}

// settingDiff is a setting of a stream whose value (have) differs from a
// declaration's (want).
type settingDiff struct {
	setting, have, want string
	// For a size setting, env and chart are where it is configured and
	// cliFlag is the `nats stream edit` flag changing it; empty for a
	// setting the code owns.
	env, chart, cliFlag string
}

// reconcileStream returns the configuration an existing stream (have)
// should get from a declaration (want), the changes that makes, and the
// size settings the stream keeps although want asks for less (see
// EnsureStreamsAs).
func reconcileStream(have, want jetstream.StreamConfig) (next jetstream.StreamConfig, changes, kept []settingDiff) {
	next = have
	declare := func(name string, differs bool, set func(), from, to any) {
		if differs {
			set()
			changes = append(changes, settingDiff{setting: name, have: fmt.Sprint(from), want: fmt.Sprint(to)})
		}
	}
	declare("subjects", !slices.Equal(have.Subjects, want.Subjects), func() { next.Subjects = want.Subjects }, have.Subjects, want.Subjects)
	declare("description", have.Description != want.Description, func() { next.Description = want.Description }, strconv.Quote(have.Description), strconv.Quote(want.Description))
	declare("storage", have.Storage != want.Storage, func() { next.Storage = want.Storage }, have.Storage, want.Storage)
	declare("retention", have.Retention != want.Retention, func() { next.Retention = want.Retention }, have.Retention, want.Retention)
	declare("discard", have.Discard != want.Discard, func() { next.Discard = want.Discard }, have.Discard, want.Discard)
	declare("allow_atomic", have.AllowAtomicPublish != want.AllowAtomicPublish, func() { next.AllowAtomicPublish = want.AllowAtomicPublish }, have.AllowAtomicPublish, want.AllowAtomicPublish)

	// size raises a size setting the stream has less of than want, and
	// keeps one it has more of.
	size := func(d settingDiff, more, less bool, raise func()) {
		switch {
		case more:
			raise()
			changes = append(changes, d)
		case less:
			kept = append(kept, d)
		}
	}
	// A max age of 0 keeps messages for ever: larger than any other.
	age := func(d time.Duration) time.Duration {
		if d == 0 {
			return math.MaxInt64
		}
		return d
	}
	size(settingDiff{"max_age", shortDuration(have.MaxAge), shortDuration(want.MaxAge), EnvMaxAge, "config.eventsMaxAge", "--max-age"},
		age(want.MaxAge) > age(have.MaxAge), age(want.MaxAge) < age(have.MaxAge), func() { next.MaxAge = want.MaxAge })
	size(settingDiff{"duplicate_window", shortDuration(have.Duplicates), shortDuration(want.Duplicates), EnvDuplicates, "config.duplicateWindow", "--dupe-window"},
		want.Duplicates > have.Duplicates, want.Duplicates < have.Duplicates, func() { next.Duplicates = want.Duplicates })
	size(settingDiff{"replicas", strconv.Itoa(have.Replicas), strconv.Itoa(want.Replicas), EnvReplicas, "config.streamReplicas", "--replicas"},
		want.Replicas > have.Replicas, want.Replicas < have.Replicas, func() { next.Replicas = want.Replicas })
	return next, changes, kept
}

// shortDuration is d as an operator writes it: 720h, not 720h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// EventSubject is the subject of a fact: retain.events.<tenant>.<type>, with
// type like "order.placed".
func EventSubject(tenant, eventType string) string {
	return EventsSubjectPrefix + "." + tenant + "." + eventType
}

// SignalSubject is retain.signals.<tenant>.<type>.
func SignalSubject(tenant, signalType string) string {
	return SignalsSubjectPrefix + "." + tenant + "." + signalType
}

// NotificationSubject is retain.notifications.<tenant>.<type>.
func NotificationSubject(tenant, notificationType string) string {
	return NotificationsSubjectPrefix + "." + tenant + "." + notificationType
}

// DeliverySubject is retain.deliveries.<tenant>.<type>.
func DeliverySubject(tenant, deliveryType string) string {
	return DeliveriesSubjectPrefix + "." + tenant + "." + deliveryType
}

// Types of the messages services exchange about notifications (the last
// subject tokens and the Retain-Event-Type header). The payloads are
// retain.notifier.v1.NotificationRequested and DeliveryOutcome; the outcome
// type follows DeliveryOutcome.outcome.
const (
	TypeNotificationRequested  = "notification.requested"
	TypeNotificationSent       = "notification.sent"
	TypeNotificationFailed     = "notification.failed"
	TypeNotificationSuppressed = "notification.suppressed"
	TypeNotificationDeferred   = "notification.deferred"
)

// EventTypeFilter is a consumer filter for one event type across tenants,
// e.g. "retain.events.*.order.placed".
func EventTypeFilter(eventType string) string {
	return EventsSubjectPrefix + ".*." + eventType
}

// streamRoute maps subject filters to the stream that captures them. Atomic
// batches are per stream, so PublishDurable groups messages by stream.
type streamRoute struct {
	stream  string
	filters []string
}

func (b *Bus) addRoute(stream string, filters []string) {
	b.routesMu.Lock()
	defer b.routesMu.Unlock()
	for i, r := range b.routes {
		if r.stream == stream {
			b.routes[i].filters = filters
			return
		}
	}
	b.routes = append(b.routes, streamRoute{stream: stream, filters: filters})
}

// streamFor returns the stream that stores subject: from the declared
// streams when possible, else asked from the server once and cached.
func (b *Bus) streamFor(ctx context.Context, subject string) (string, error) {
	b.routesMu.RLock()
	for _, r := range b.routes {
		for _, f := range r.filters {
			if subjectMatches(f, subject) {
				b.routesMu.RUnlock()
				return r.stream, nil
			}
		}
	}
	name, ok := b.bySubj[subject]
	b.routesMu.RUnlock()
	if ok {
		return name, nil
	}
	name, err := b.JS.StreamNameBySubject(ctx, subject)
	if err != nil {
		return "", fmt.Errorf("bus: find stream for subject %s: %w", subject, err)
	}
	b.routesMu.Lock()
	if len(b.bySubj) > 10_000 {
		// Bounded: subjects carry tenants, and this is only a cache.
		clear(b.bySubj)
	}
	b.bySubj[subject] = name
	b.routesMu.Unlock()
	return name, nil
}

// subjectMatches reports whether the literal subject matches filter, which may
// use the NATS wildcards * (one token) and > (one or more trailing tokens).
func subjectMatches(filter, subject string) bool {
	ft := strings.Split(filter, ".")
	st := strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		if f != "*" && f != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}
