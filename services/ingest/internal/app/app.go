// Package app is the ingest use case: turn a tenant's incoming events into
// per-event results, publishing the valid ones durably to RETAIN_EVENTS.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"

	"github.com/nats-io/nats.go"
	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/event"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

// ErrUnavailable wraps failures of the bus: the client should retry later
// with the same event ids.
var ErrUnavailable = errors.New("event bus unavailable")

// Committer is the group commit of internal/commit.
type Committer interface {
	Submit(ctx context.Context, msgs []bus.Message) ([]bus.PublishOutcome, error)
}

// Ingestor validates and publishes events.
type Ingestor struct {
	committer Committer
	now       func() time.Time
	newID     func() string
	results   metric.Int64Counter
}

// New returns an Ingestor. meter may be a noop meter.
func New(c Committer, meter metric.Meter) (*Ingestor, error) {
	results, err := meter.Int64Counter("retain_ingest_events",
		metric.WithDescription("Events received by ingest, by tenant and result (accepted, duplicate, rejected)."))
	if err != nil {
		return nil, fmt.Errorf("ingest metrics: %w", err)
	}
	return &Ingestor{
		committer: c,
		now:       time.Now,
		newID:     func() string { return ulid.Make().String() },
		results:   results,
	}, nil
}

// MsgID is the JetStream de-duplication key of an event. Event ids are unique
// per tenant only, so the tenant is part of the key.
func MsgID(tenant, eventID string) string { return tenant + "/" + eventID }

// Publish handles one request. events[i] may be nil when decoding it failed;
// decodeErrs[i] then says why. The response has one result per event, in
// order. An error means nothing can be said about the accepted events (the
// bus failed); the client retries the whole request with the same ids.
func (in *Ingestor) Publish(ctx context.Context, tenant string, events []*eventsv1.Event, decodeErrs map[int][]*ingestv1.FieldError) (*ingestv1.PublishBatchResponse, error) {
	now := in.now().UTC()
	resp := &ingestv1.PublishBatchResponse{Results: make([]*ingestv1.EventResult, len(events))}
	msgs := make([]bus.Message, 0, len(events))
	msgIndex := make([]int, 0, len(events))
	seen := make(map[string]int, len(events))
	carrier := propagation.HeaderCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	traceparent := carrier.Get("traceparent")

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
		event.Normalize(ev, tenant, now, in.newID)
		res.Id = ev.GetId()
		if errs := event.Validate(ev, now); len(errs) > 0 {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_REJECTED
			res.Errors = errs
			continue
		}
		// The same id twice in one request: the second is a duplicate of the
		// first, whatever happens to the first.
		if _, dup := seen[ev.GetId()]; dup {
			res.Status = ingestv1.EventStatus_EVENT_STATUS_DUPLICATE
			continue
		}
		seen[ev.GetId()] = i
		data, err := proto.Marshal(ev)
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
		}
		if traceparent != "" {
			m.Header = nats.Header{"traceparent": []string{traceparent}}
		}
		msgs = append(msgs, m)
		msgIndex = append(msgIndex, i)
	}

	if len(msgs) > 0 {
		outcomes, err := in.committer.Submit(ctx, msgs)
		if err != nil {
			if errors.Is(err, commit.ErrOverloaded) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		for k, o := range outcomes {
			res := resp.Results[msgIndex[k]]
			if o == bus.Duplicate {
				res.Status = ingestv1.EventStatus_EVENT_STATUS_DUPLICATE
			} else {
				res.Status = ingestv1.EventStatus_EVENT_STATUS_ACCEPTED
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
