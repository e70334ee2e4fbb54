package server

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	opsv1 "github.com/retainhq/retain/proto/gen/go/retain/ops/v1"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
)

// ConsumerOwner is implemented by services that run bus consumers; a Host
// serves retain.ops.v1.DeadLetterService over all of them, so an operator
// can list and replay what any hosted consumer gave up on.
type ConsumerOwner interface {
	Consumers() []*bus.Consumer
}

// deadLetterScopes: dead letters hold shop data and replay changes state.
var deadLetterScopes = map[string]string{
	opsv1.DeadLetterService_ListConsumers_FullMethodName:    auth.ScopeAdmin,
	opsv1.DeadLetterService_ListDeadLetters_FullMethodName:  auth.ScopeAdmin,
	opsv1.DeadLetterService_ReplayDeadLetter_FullMethodName: auth.ScopeAdmin,
}

const (
	defaultDeadLetterPage = 50
	maxDeadLetterPage     = 500
)

// deadLetterCursor is a ListDeadLetters page token's position: the last
// dead letter listed (they are listed by id).
type deadLetterCursor struct {
	ID int64 `json:"id"`
}

type deadLetterServer struct {
	opsv1.UnimplementedDeadLetterServiceServer
	consumers map[string]*bus.Consumer
	names     []string
}

// consumersOf collects the consumers of the services that own some, refusing
// two with one durable name (their dead letters would be indistinguishable).
func consumersOf(services []Service) (*deadLetterServer, error) {
	s := &deadLetterServer{consumers: map[string]*bus.Consumer{}}
	for _, svc := range services {
		owner, ok := svc.(ConsumerOwner)
		if !ok {
			continue
		}
		for _, c := range owner.Consumers() {
			if _, dup := s.consumers[c.Name()]; dup {
				return nil, fmt.Errorf("consumer %s is hosted twice", c.Name())
			}
			s.consumers[c.Name()] = c
			s.names = append(s.names, c.Name())
		}
	}
	sort.Strings(s.names)
	return s, nil
}

func (s *deadLetterServer) register(g *grpc.Server) {
	opsv1.RegisterDeadLetterServiceServer(g, s)
}

func (s *deadLetterServer) ListConsumers(ctx context.Context, _ *opsv1.ListConsumersRequest) (*opsv1.ListConsumersResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	resp := &opsv1.ListConsumersResponse{}
	for _, name := range s.names {
		c := s.consumers[name]
		n, err := c.PendingDeadLetters(ctx, tenant)
		if err != nil {
			return nil, Failure(err)
		}
		resp.Consumers = append(resp.Consumers, &opsv1.ConsumerSummary{Name: name, Stream: c.Config().Stream, PendingDeadLetters: n})
	}
	return resp, nil
}

func (s *deadLetterServer) consumer(name string) (*bus.Consumer, error) {
	if name == "" {
		return nil, InvalidArgument(FieldViolation{Field: "consumer", Description: "required; see ListConsumers"})
	}
	c, ok := s.consumers[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "consumer %q is not hosted here (hosted: %v)", name, s.names)
	}
	return c, nil
}

func (s *deadLetterServer) ListDeadLetters(ctx context.Context, req *opsv1.ListDeadLettersRequest) (*opsv1.ListDeadLettersResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var bad []FieldViolation
	size, v := PageSize(req.GetPageSize(), defaultDeadLetterPage, maxDeadLetterPage)
	if v != nil {
		bad = append(bad, *v)
	}
	var after deadLetterCursor
	if _, v := PageCursor(req, &after); v != nil {
		bad = append(bad, *v)
	}
	if len(bad) > 0 {
		return nil, InvalidArgument(bad...)
	}
	c, err := s.consumer(req.GetConsumer())
	if err != nil {
		return nil, err
	}
	// One extra row tells whether another page follows.
	dls, err := c.DeadLetters(ctx, bus.DeadLetterQuery{Tenant: tenant, IncludeReplayed: req.GetIncludeReplayed(), AfterID: after.ID, Limit: size + 1})
	if err != nil {
		return nil, Failure(err)
	}
	resp := &opsv1.ListDeadLettersResponse{}
	if len(dls) > size {
		dls = dls[:size]
		if resp.NextPageToken, err = NextPageToken(req, deadLetterCursor{ID: dls[size-1].ID}); err != nil {
			return nil, Failure(err)
		}
	}
	for _, dl := range dls {
		resp.DeadLetters = append(resp.DeadLetters, deadLetterProto(dl))
	}
	return resp, nil
}

func (s *deadLetterServer) ReplayDeadLetter(ctx context.Context, req *opsv1.ReplayDeadLetterRequest) (*opsv1.ReplayDeadLetterResponse, error) {
	tenant, err := auth.TenantFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetId() <= 0 {
		return nil, InvalidArgument(FieldViolation{Field: "id", Description: fmt.Sprintf("must be a dead letter id from ListDeadLetters, got %d", req.GetId())})
	}
	c, err := s.consumer(req.GetConsumer())
	if err != nil {
		return nil, err
	}
	// The tenant check comes first: Replay itself knows no tenants.
	if _, err := c.DeadLetter(ctx, tenant, req.GetId()); err != nil {
		return nil, deadLetterError(err)
	}
	if err := c.Replay(ctx, req.GetId()); err != nil {
		return nil, replayError(err)
	}
	dl, err := c.DeadLetter(ctx, tenant, req.GetId())
	if err != nil {
		return nil, deadLetterError(err)
	}
	return &opsv1.ReplayDeadLetterResponse{DeadLetter: deadLetterProto(dl)}, nil
}

func deadLetterError(err error) error {
	var rejected *bus.RejectedError
	switch {
	case errors.Is(err, bus.ErrDeadLetterNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, bus.ErrAlreadyReplayed), errors.As(err, &rejected):
		return status.Error(codes.FailedPrecondition, err.Error())
	default:
		return Failure(err)
	}
}

// replayError is deadLetterError for a replay, which runs the consumer's
// handler: a handler that fails again (the cause not fixed yet) is told
// with its error, as the dead letter's stored reason is to the same admin
// caller, rather than as an opaque internal error.
func replayError(err error) error {
	mapped := deadLetterError(err)
	if status.Code(mapped) != codes.Internal {
		return mapped // not found, already replayed, rejected again, unreachable, cancelled
	}
	return status.Error(codes.FailedPrecondition, "the replay failed and the message stays a dead letter; fix the cause and replay it again: "+err.Error())
}

func deadLetterProto(dl bus.DeadLetter) *opsv1.DeadLetter {
	p := &opsv1.DeadLetter{
		Id:           dl.ID,
		Consumer:     dl.Consumer,
		MsgId:        dl.MsgID,
		Subject:      dl.Subject,
		Type:         dl.Type,
		Reason:       dl.Reason,
		NumDelivered: int32(dl.NumDelivered),
		FailedAt:     timestamppb.New(dl.FailedAt),
		Data:         dl.Data,
	}
	if dl.ReplayedAt != nil {
		p.ReplayedAt = timestamppb.New(*dl.ReplayedAt)
	}
	return p
}
