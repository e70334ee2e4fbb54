package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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

// StreamOptions are the deploy-time knobs of the stream declarations.
type StreamOptions struct {
	// MaxAge is how long RETAIN_EVENTS (and the other limits streams) keep
	// messages: the window in which projections can be rebuilt by replay.
	MaxAge time.Duration
	// Duplicates is the Nats-Msg-Id dedupe window. Retries and outbox
	// re-publishes later than this are only caught by consumer inboxes.
	Duplicates time.Duration
	// Replicas per stream (1 in dev, 3 in production).
	Replicas int
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

// Validate reports option errors; zero values mean defaults.
func (o StreamOptions) Validate() error {
	var errs []error
	if o.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("bus: stream MaxAge must not be negative (got %s)", o.MaxAge))
	}
	if o.Duplicates < 0 {
		errs = append(errs, fmt.Errorf("bus: stream Duplicates window must not be negative (got %s)", o.Duplicates))
	}
	if o.MaxAge > 0 && o.Duplicates > o.MaxAge {
		errs = append(errs, fmt.Errorf("bus: stream Duplicates window %s exceeds MaxAge %s", o.Duplicates, o.MaxAge))
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("bus: stream Replicas must be 1..5 (got %d)", o.Replicas))
	}
	return errors.Join(errs...)
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

// EnsureStreams creates each stream, or updates it to the declared config if
// it exists, so every service can declare the streams it uses at start-up.
// With no arguments it declares DefaultStreams(StreamOptions{}).
func (b *Bus) EnsureStreams(ctx context.Context, cfgs ...jetstream.StreamConfig) error {
	if len(cfgs) == 0 {
		cfgs = DefaultStreams(StreamOptions{})
	}
	for _, cfg := range cfgs {
		if _, err := b.JS.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("bus: ensure stream %s: %w", cfg.Name, err)
		}
		b.addRoute(cfg.Name, cfg.Subjects)
	}
	return nil
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
