package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/retainhq/retain/platform/telemetry"
)

// storageFullEvery is the longest the log goes without a line while
// requests keep being refused for lack of JetStream storage.
const storageFullEvery = time.Minute

// Messages of the storage-full log, constant so that a log query can find
// them.
const (
	msgStorageFull      = "ingest publish refused: JetStream storage is full; make room: raise the JetStream storage limit or lower RETAIN_EVENTS_MAX_AGE. Further refusals are counted and logged once a minute until events are stored again"
	msgStorageStillFull = "ingest publish still refused: JetStream storage is full"
	msgStorageRoom      = "ingest publish stores events again: JetStream has room"
)

// StorageFullLog paces the log of requests refused for lack of JetStream
// storage: while it lasts every request is refused (QA saw two a second),
// and the lines would all say the same thing. It is the service's, shared
// by the HTTP and gRPC edges: storage is full or has room for both, so a
// refusal on either counts and an event stored through either ends it.
type StorageFullLog struct {
	log *slog.Logger
	now func() time.Time
	run telemetry.FailureRun
}

// NewStorageFullLog returns the log the edges share.
func NewStorageFullLog(log *slog.Logger) *StorageFullLog {
	return &StorageFullLog{log: log, now: time.Now, run: telemetry.FailureRun{Every: storageFullEvery}}
}

// refused records a request refused for lack of storage (err): the first
// refusal says at once what to do, the others are counted.
func (s *StorageFullLog) refused(ctx context.Context, err error) {
	switch l := s.run.Failed(s.now()); {
	case !l.Log:
	case l.First:
		s.log.WarnContext(ctx, msgStorageFull, "err", err)
	default:
		s.log.WarnContext(ctx, msgStorageStillFull, "refused_requests", l.Failures, "full_for", l.FailingFor.Round(time.Second), "err", err)
	}
}

// stored records a request that stored accepted events. Only a stored
// event shows there is room again: a request of duplicates is answered
// without storing anything.
func (s *StorageFullLog) stored(ctx context.Context, accepted int32) {
	if accepted == 0 {
		return
	}
	if l := s.run.Ended(s.now()); l.Log {
		s.log.InfoContext(ctx, msgStorageRoom, "refused_requests", l.Failures, "full_for", l.FailingFor.Round(time.Second))
	}
}
