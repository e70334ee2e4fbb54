package bus

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/tenant"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// SplitSubject returns the tenant and type of a subject <prefix>.<tenant>.<type>
// (the subjects of RETAIN_EVENTS, RETAIN_SIGNALS, RETAIN_DELIVERIES); an
// error names the subject and the form it lacks.
func SplitSubject(prefix, subject string) (tenantID, typ string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	tenantID, typ, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || !tenant.Valid(tenantID) || typ == "" {
		return "", "", fmt.Errorf("subject %q is not %s.<tenant>.<type>", subject, prefix)
	}
	return tenantID, typ, nil
}

// DecodeEvent decodes a RETAIN_EVENTS message published on subject
// (retain.events.<tenant>.<type>), as every consumer of facts must: the
// tenant is the subject's, which the event's tenant_id (set by ingest) must
// agree with, and occurred_at must be set and valid. An error names what is
// wrong and is permanent: the message can never apply.
func DecodeEvent(subject string, data []byte) (tenantID, eventType string, ev *eventsv1.Event, err error) {
	if tenantID, eventType, err = SplitSubject(EventsSubjectPrefix, subject); err != nil {
		return "", "", nil, err
	}
	ev = &eventsv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return "", "", nil, fmt.Errorf("cannot decode retain.events.v1.Event: %w", err)
	}
	if id := ev.GetTenantId(); id != "" && id != tenantID {
		return "", "", nil, fmt.Errorf("tenant_id %q differs from the subject's tenant %q", id, tenantID)
	}
	if ev.GetOccurredAt() == nil {
		return "", "", nil, errors.New("occurred_at: is required")
	}
	if err := ev.GetOccurredAt().CheckValid(); err != nil {
		return "", "", nil, fmt.Errorf("occurred_at: %w", err)
	}
	return tenantID, eventType, ev, nil
}
