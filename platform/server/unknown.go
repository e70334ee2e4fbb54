package server

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/unknownfields"
)

// UnknownFieldsOwner is a Service whose handlers check some request fields
// for unknown fields themselves (see Deps.OwnUnknownFields).
type UnknownFieldsOwner interface {
	// OwnUnknownFields names those fields: full names such as
	// "retain.ingest.v1.PublishBatchRequest.events".
	OwnUnknownFields() []protoreflect.FullName
}

// unknownFieldsReason is the google.rpc.ErrorInfo reason of the refusal of
// a request holding unknown fields, for clients to tell it from other bad
// input (UnknownRequestFields).
const unknownFieldsReason = "UNKNOWN_REQUEST_FIELDS"

// UnknownRequestFields reports whether err is a server's refusal of a
// request holding fields its schema lacks: what a client built on a newer
// .proto than the server's gets.
func UnknownRequestFields(err error) bool {
	return slices.ContainsFunc(status.Convert(err).Details(), func(d any) bool {
		info, ok := d.(*errdetails.ErrorInfo)
		return ok && info.GetReason() == unknownFieldsReason && info.GetDomain() == errorDomain
	})
}

// ownedUnknownFields resolves the names of Deps.OwnUnknownFields to the
// walk's skip. A name that is no message field of a linked .proto is a
// wiring mistake, refused at start-up: left as it is, the server would
// refuse whole the requests whose items the handler means to answer one by
// one.
func ownedUnknownFields(names []protoreflect.FullName) (unknownfields.Skip, error) {
	if len(names) == 0 {
		return nil, nil
	}
	owned := make(map[protoreflect.FieldDescriptor]bool, len(names))
	for _, name := range names {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		fd, ok := d.(protoreflect.FieldDescriptor)
		if err != nil || !ok || fd.Message() == nil {
			return nil, fmt.Errorf("%s, whose unknown fields a handler is to check, is not a message field of any .proto this program has", name)
		}
		owned[fd] = true
	}
	return func(fd protoreflect.FieldDescriptor) bool { return owned[fd] }, nil
}

// refuseUnknownFields is the INVALID_ARGUMENT for a request holding fields
// this server's schema lacks, or nil. Protobuf decoding keeps such fields
// (from a client built on a newer or forked .proto) where no handler sees
// them: a filter, a page size, a dry-run flag or a scope the server lacks
// would be ignored, and the caller answered as if it had not asked (an
// unfiltered list, an action meant as a preview). The answer names the
// first message holding any, as ingest names an event's (decision 0043).
func refuseUnknownFields(req any, skip unknownfields.Skip) error {
	// Every request a gRPC server of ours decodes is protobuf; another
	// codec's messages hold no unknown fields to refuse.
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	f := unknownfields.Find(m.ProtoReflect(), skip)
	if f == nil {
		return nil
	}
	field := f.Path
	if field == "" {
		field = "request"
	}
	return invalidArgument(&errdetails.ErrorInfo{Reason: unknownFieldsReason, Domain: errorDomain}, FieldViolation{
		Field: field,
		Description: fmt.Sprintf("%s has %s not in this server's schema, whose %s has %s; it acts only on fields it knows, so it did nothing: upgrade the service or drop the field",
			field, f.Numbers(), f.Message.FullName(), f.Schema()),
	})
}

// checkRequest refuses a request holding unknown fields, or else values no
// handler can act on (refuseBadValues): a client built on a newer .proto
// learns of the fields first, which explain its other values.
func checkRequest(req any, skip unknownfields.Skip) error {
	if err := refuseUnknownFields(req, skip); err != nil {
		return err
	}
	return refuseBadValues(req, skip)
}

// checkRequestUnary refuses a request checkRequest refuses. The health and
// reflection services are exempt: they are gRPC's, not Retain's, their
// servers ignore fields they do not know as protobuf intends, and a probe
// built on a newer grpc.health.v1 (kubelet's, grpc_health_probe) must not
// take a pod out of service over a field.
func checkRequestUnary(skip unknownfields.Skip) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !auth.IsPublicMethod(info.FullMethod) {
			if err := checkRequest(req, skip); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

// checkRequestStream checks each message a stream receives, exempting the
// same services; the handler gets the refusal from RecvMsg, as it would a
// broken stream's error. No Retain API streams today (health Watch and
// reflection do, exempt): this keeps a streaming method added later from
// being left unchecked.
func checkRequestStream(skip unknownfields.Skip) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if auth.IsPublicMethod(info.FullMethod) {
			return handler(srv, ss)
		}
		return handler(srv, &checkedStream{ServerStream: ss, skip: skip})
	}
}

type checkedStream struct {
	grpc.ServerStream
	skip unknownfields.Skip
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkRequest(m, s.skip)
}
