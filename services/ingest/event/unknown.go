package event

import (
	"github.com/retainhq/retain/platform/unknownfields"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// UnknownFields returns an error naming the fields of ev that this ingest's
// retain.events.v1 schema does not have, or nil. Protobuf decoding keeps such
// fields (from a client built on a newer or forked .proto) as unknown fields,
// which Validate cannot see and Encode would publish as they came; the
// protojson decoding of the HTTP API refuses them, and so does this. The
// error is on the first message holding any, in field order, as the HTTP API
// reports the first unknown field: path in protojson form ("event" for the
// event itself), and every unknown field number in that message.
//
// The gRPC server's own check of requests (platform/server) leaves events
// to this, so that one event's unknown field rejects that event, not its
// batch.
func UnknownFields(ev *eventsv1.Event) *ingestv1.FieldError {
	f := unknownfields.Find(ev.ProtoReflect(), nil)
	if f == nil {
		return nil
	}
	field := f.Path
	if field == "" {
		field = "event"
	}
	return fieldErr(field, "has %s not in this ingest's schema, whose %s has %s; ingest stores only fields it can check, so the event was not stored",
		f.Numbers(), f.Message.FullName(), f.Schema())
}
