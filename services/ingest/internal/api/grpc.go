package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/event"
	"github.com/retainhq/retain/services/ingest/internal/app"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

// MethodScopes is the scope each IngestService method requires.
var MethodScopes = map[string]string{
	ingestv1.IngestService_Publish_FullMethodName:      auth.ScopeEventsWrite,
	ingestv1.IngestService_PublishBatch_FullMethodName: auth.ScopeEventsWrite,
}

// OwnUnknownFields are the request fields whose unknown fields and values
// ingest checks itself, per event (event.UnknownFields, event.Validate): an
// event holding some is rejected on its own and the rest of its batch
// stored, as over HTTP, where the gRPC server's check would refuse the
// whole request. The server checks the rest of each request (decisions
// 0043, 0049).
var OwnUnknownFields = []protoreflect.FullName{
	"retain.ingest.v1.PublishRequest.event",
	"retain.ingest.v1.PublishBatchRequest.events",
}

// GRPC implements retain.ingest.v1.IngestService.
type GRPC struct {
	ingestv1.UnimplementedIngestServiceServer
	ingestor    *app.Ingestor
	storageFull *StorageFullLog
}

// NewGRPC returns the gRPC edge. storageFull is shared with the HTTP edge.
func NewGRPC(in *app.Ingestor, storageFull *StorageFullLog) *GRPC {
	return &GRPC{ingestor: in, storageFull: storageFull}
}

// Publish accepts one event; a rejected event is INVALID_ARGUMENT with the
// field violations as BadRequest details.
func (g *GRPC) Publish(ctx context.Context, req *ingestv1.PublishRequest) (*ingestv1.PublishResponse, error) {
	if req.GetEvent() == nil {
		return nil, invalid([]*ingestv1.FieldError{{Field: "event", Description: "is required"}})
	}
	resp, err := g.publish(ctx, []*eventsv1.Event{req.GetEvent()})
	if err != nil {
		return nil, err
	}
	res := resp.Results[0]
	if res.Status == ingestv1.EventStatus_EVENT_STATUS_REJECTED {
		return nil, invalid(res.Errors)
	}
	return &ingestv1.PublishResponse{Result: res}, nil
}

// PublishBatch accepts up to event.MaxBatchEvents events with a result each.
func (g *GRPC) PublishBatch(ctx context.Context, req *ingestv1.PublishBatchRequest) (*ingestv1.PublishBatchResponse, error) {
	if n := len(req.GetEvents()); n > event.MaxBatchEvents {
		return nil, invalid([]*ingestv1.FieldError{{Field: "events", Description: fmt.Sprintf("%d events: at most %d per request", n, event.MaxBatchEvents)}})
	}
	return g.publish(ctx, req.GetEvents())
}

func (g *GRPC) publish(ctx context.Context, events []*eventsv1.Event) (*ingestv1.PublishBatchResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := g.ingestor.Publish(ctx, tenant, events, nil)
	if errors.Is(err, bus.ErrStorageFull) {
		// Also UNAVAILABLE below, which the call log paces per method;
		// this log is the one that tells what to do, and when it is over.
		g.storageFull.refused(ctx, err)
	}
	switch {
	case err == nil:
		g.storageFull.stored(ctx, resp.Accepted)
		return resp, nil
	case errors.Is(err, commit.ErrOverloaded):
		return nil, status.Error(codes.ResourceExhausted, err.Error()+"; retry with the same event ids")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, status.FromContextError(err).Err()
	case errors.Is(err, app.ErrUnavailable), errors.Is(err, commit.ErrLogUnavailable):
		// The cause (NATS down, a timeout) is in the message, which the
		// call's log line carries.
		return nil, status.Error(codes.Unavailable, err.Error()+"; retry with the same event ids")
	default:
		// A retry will not help: INTERNAL, the detail in the call's log line.
		return nil, server.Failure(err)
	}
}

func invalid(errs []*ingestv1.FieldError) error {
	vs := make([]server.FieldViolation, len(errs))
	for i, e := range errs {
		vs[i] = server.FieldViolation{Field: e.Field, Description: e.Description}
	}
	return server.InvalidArgument(vs...)
}
