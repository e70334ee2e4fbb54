package event

import ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"

// StatusWord is the lower-case word for an event's result used in HTTP
// answers and the CLI: the words a shop's engineer greps logs for, not the
// protobuf enum names.
func StatusWord(s ingestv1.EventStatus) string {
	switch s {
	case ingestv1.EventStatus_EVENT_STATUS_ACCEPTED:
		return "accepted"
	case ingestv1.EventStatus_EVENT_STATUS_DUPLICATE:
		return "duplicate"
	case ingestv1.EventStatus_EVENT_STATUS_REJECTED:
		return "rejected"
	}
	return "unknown"
}
