// Package app is the ingest use case: turn a tenant's incoming events into
// per-event results, publishing the valid ones durably to RETAIN_EVENTS.
package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/nats-io/nats.go"
	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/event"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

// ErrUnavailable wraps failures a retry can get past (the bus is
// unreachable, slow or out of storage, or an id's first use could not be
// read): the client should retry later with the same event ids. Other
// failures are internal: a retry would fail the same way.
var ErrUnavailable = errors.New("event bus unavailable")

// retryable tells the failures of a publish that a retry can get past
// (bus.Transient, or an id's first use that could not be read) from those
// it cannot.
func retryable(err error) bool {
	return bus.Transient(err) || errors.Is(err, commit.ErrUnresolved)
}

// Committer is the group commit of internal/commit.
type Committer interface {
	Submit(ctx context.Context, msgs []bus.Message) ([]commit.Outcome, error)
}

// Ingestor validates and publishes events.
type Ingestor struct {
	committer     Committer
	maxEventBytes func() int
	now           func() time.Time
	newID         func() string
	results       metric.Int64Counter
}

// busHeaderBytes bounds what the bus adds to the headers of an event's
// message beyond Message.Header and the values of its ID and Type: the
// names and framing of Nats-Msg-Id, Retain-Event-Type and Content-Type, and
// the atomic batch's Nats-Batch-Id, -Sequence and -Commit (160 bytes in
// all as of writing; the rest is margin).
const busHeaderBytes = 256

// publishedSize is the size of m as the NATS server holds it against its
// max_payload: the encoded headers and the data.
func publishedSize(m bus.Message) int {
	own := (&nats.Msg{Header: m.Header, Data: m.Data}).Size()
	return own + len(m.ID) + len(m.Type) + busHeaderBytes
}

// New returns an Ingestor. maxEventBytes tells the largest event, as
// published (publishedSize), to take now: it may follow the bus
// connection. meter may be a noop meter.
func New(c Committer, maxEventBytes func() int, meter metric.Meter) (*Ingestor, error) {
	results, err := meter.Int64Counter("retain.ingest.events",
		metric.WithDescription("Events received by ingest, by tenant and result (accepted, duplicate, rejected, refused: answered 429/503 for a retry)."))
	if err != nil {
		return nil, fmt.Errorf("ingest metrics: %w", err)
	}
	return &Ingestor{
		committer:     c,
		maxEventBytes: maxEventBytes,
		now:           time.Now,
		newID:         func() string { return ulid.Make().String() },
		results:       results,
	}, nil
}

// MsgID is the JetStream de-duplication key of an event. Event ids are unique
// per tenant only, so the tenant is part of the key.
func MsgID(tenant, eventID string) string { return tenant + "/" + eventID }

// Publish handles one request. events[i] may be nil when decoding it failed;
// decodeErrs[i] then says why. The response has one result per event, in
// order. An error means nothing can be said about the accepted events: the
// bus failed or the first use of a re-sent id could not be read (ErrUnavailable:
// the client retries the whole request with the same ids), or an internal
// failure a retry will not fix.
func (in *Ingestor) Publish(ctx context.Context, tenant string, events []*eventsv1.Event, decodeErrs map[int][]*ingestv1.FieldError) (*ingestv1.PublishBatchResponse, error) {
	now := in.now().UTC()
	resp := &ingestv1.PublishBatchResponse{Results: make([]*ingestv1.EventResult, len(events))}
	msgs := make([]bus.Message, 0, len(events))
	msgIndex := make([]int, 0, len(events))
	carrier := propagation.HeaderCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	traceparent := carrier.Get("traceparent")
	maxEvent := in.maxEventBytes()

	for i, ev := range events {
		res := &ingestv1.EventResult{Index: int32(i)}
		resp.Results[i] = res
		if errs := decodeErrs[i]; len(errs) > 0 || ev == nil {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
			res.Errors = errs
			if ev != nil {
				res.Id = ev.GetId()
			}
			continue
		}
		// Fields ingest does not know (a gRPC client's newer or forked
		// .proto) would go on the bus unchecked, as they came, for
		// consumers of a newer schema to read: refused, as the HTTP API
		// refuses an unknown JSON field.
		if fe := event.UnknownFields(ev); fe != nil {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
			res.Id = ev.GetId()
			res.Errors = []*ingestv1.FieldError{fe}
			continue
		}
		// An event naming another tenant than the token's is a client
		// holding the wrong token: storing it under the token's tenant
		// would file one shop's customers under another's.
		if t := strings.TrimSpace(ev.GetTenantId()); t != "" && t != tenant {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
			res.Id = ev.GetId()
			res.Errors = []*ingestv1.FieldError{{Field: "tenant_id", Description: fmt.Sprintf("%q is not the tenant of the token (%q): leave tenant_id out (ingest sets it from the token) or send with that tenant's token", t, tenant)}}
			continue
		}
		event.Normalize(ev, tenant, now, in.newID)
		res.Id = ev.GetId()
		if errs := event.Validate(ev, now); len(errs) > 0 {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
			res.Errors = errs
			continue
		}
		// The same id twice in one request is left to the committer: the
		// later one is a duplicate or a conflict of what the id is first
		// used for, which may be an event sent long before.
		data, fingerprint, err := event.Encode(ev)
		if err != nil {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
			res.Errors = []*ingestv1.FieldError{{Field: "event", Description: fmt.Sprintf("cannot encode: %v", err)}}
			continue
		}
		m := bus.Message{
			Subject: bus.EventSubject(tenant, ev.GetType()),
			ID:      MsgID(tenant, ev.GetId()),
			Type:    ev.GetType(),
			Data:    data,
			Header:  nats.Header{event.HeaderFingerprint: []string{fingerprint}},
		}
		if traceparent != "" {
			m.Header[bus.HeaderTraceparent] = []string{traceparent}
		}
		// Checked here, per event: the NATS server refuses a message over
		// its max_payload, and with it the whole atomic batch, which holds
		// other requests' events too.
		if size := publishedSize(m); size > maxEvent {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
			res.Errors = []*ingestv1.FieldError{{Field: "event", Description: fmt.Sprintf(
				"is %d bytes as stored (the encoded event and its headers); at most %d bytes are allowed in one event", size, maxEvent)}}
			continue
		}
		msgs = append(msgs, m)
		msgIndex = append(msgIndex, i)
	}

	if len(msgs) > 0 {
		outcomes, err := in.committer.Submit(ctx, msgs)
		if err != nil {
			overloaded, retry := errors.Is(err, commit.ErrOverloaded), retryable(err)
			if overloaded || retry {
				in.results.Add(ctx, int64(len(msgs)), metric.WithAttributes(attribute.String("tenant", tenant), attribute.String("result", "refused")))
			}
			switch {
			case overloaded, errors.Is(err, commit.ErrLogUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
				// Not the bus's fault: they say what is.
				return nil, err
			case retry:
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			return nil, fmt.Errorf("publish %d events: %w", len(msgs), err)
		}
		for k, o := range outcomes {
			res := resp.Results[msgIndex[k]]
			switch o.Status {
			case commit.Published:
				res.Status = ingestv1.EventStatus_EVENT_STATUS_ACCEPTED
			case commit.Duplicate:
				res.Status = ingestv1.EventStatus_EVENT_STATUS_DUPLICATE
			case commit.Conflict:
				res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
				res.Errors = []*ingestv1.FieldError{idConflict(res.Id, o.Original)}
			default:
				return nil, fmt.Errorf("publish: outcome %d for event %s", o.Status, res.Id)
			}
		}
	}
	for _, r := range resp.Results {
		switch r.Status {
		case ingestv1.EventStatus_EVENT_STATUS_ACCEPTED:
			resp.Accepted++
		case ingestv1.EventStatus_EVENT_STATUS_DUPLICATE:
			resp.Duplicates++
		case ingestv1.EventStatus_EVENT_STATUS_REJECTED:
			resp.Rejected++
		}
	}
	in.count(ctx, tenant, resp)
	return resp, nil
}

// idConflict is the rejection of an event whose id was first used for a
// different event: as a field error on id, so that a client that reuses ids
// (one per order or ticket instead of one per event) learns it from the
// first rejected event, in the words its other rejections use.
func idConflict(id string, first commit.Entry) *ingestv1.FieldError {
	var what string
	switch {
	case first.Type != "" && !first.AcceptedAt.IsZero():
		what = fmt.Sprintf(" (a %s event accepted at %s)", first.Type, first.AcceptedAt.UTC().Format(time.RFC3339))
	case first.Type != "":
		what = fmt.Sprintf(" (a %s event)", first.Type)
	case !first.AcceptedAt.IsZero():
		what = fmt.Sprintf(" (accepted at %s)", first.AcceptedAt.UTC().Format(time.RFC3339))
	}
	return &ingestv1.FieldError{Field: "id", Description: fmt.Sprintf(
		"%q was already used for a different event%s; this event was not stored. An id names one event: a retry repeats it unchanged, every other event needs an id of its own",
		id, what)}
}

func (in *Ingestor) count(ctx context.Context, tenant string, resp *ingestv1.PublishBatchResponse) {
	t := attribute.String("tenant", tenant)
	for _, c := range []struct {
		result string
		n      int32
	}{{"accepted", resp.Accepted}, {"duplicate", resp.Duplicates}, {"rejected", resp.Rejected}} {
		if c.n > 0 {
			in.results.Add(ctx, int64(c.n), metric.WithAttributes(t, attribute.String("result", c.result)))
		}
	}
}
