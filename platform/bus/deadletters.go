package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// DeadLetter is a message a consumer gave up on.
type DeadLetter struct {
	ID           int64
	Consumer     string
	MsgID        string
	Subject      string
	Type         string
	Header       nats.Header
	Data         []byte
	Reason       string
	NumDelivered int
	FailedAt     time.Time
	ReplayedAt   *time.Time
}

var (
	// ErrDeadLetterNotFound: no dead letter with that id for this consumer.
	ErrDeadLetterNotFound = errors.New("bus: dead letter not found")
	// ErrAlreadyReplayed: the dead letter was replayed before.
	ErrAlreadyReplayed = errors.New("bus: dead letter already replayed")
)

// RejectedError is returned by Replay when the handler rejects the message
// again; the dead letter stays pending.
type RejectedError struct {
	MsgID  string
	Reason string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("bus: replay of %s rejected again: %s", e.MsgID, e.Reason)
}

// DeadLetterQuery selects dead letters of one consumer.
type DeadLetterQuery struct {
	// Tenant, when set, keeps the dead letters whose subject names that
	// tenant (every Retain subject is retain.<kind>.<tenant>.<type>), so an
	// admin of one shop never sees another's messages.
	Tenant string
	// IncludeReplayed also returns the ones already replayed.
	IncludeReplayed bool
	// AfterID pages: only ids greater than it.
	AfterID int64
	// Limit defaults to 100.
	Limit int
}

const deadLetterColumns = `id, consumer, msg_id, subject, headers, data, reason, num_delivered, failed_at, replayed_at`

// subjectTenantSQL is the tenant token of a subject in SQL, see DeadLetterQuery.
const subjectTenantSQL = `split_part(subject, '.', 3)`

// DeadLetters returns the consumer's dead letters matching q, oldest first.
func (c *Consumer) DeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	rows, err := c.pool.Query(ctx, `
		SELECT `+deadLetterColumns+`
		FROM bus_dead_letters
		WHERE consumer = $1 AND id > $2
		  AND ($3 OR replayed_at IS NULL)
		  AND ($4 = '' OR `+subjectTenantSQL+` = $4)
		ORDER BY id
		LIMIT $5`, c.cfg.Durable, q.AfterID, q.IncludeReplayed, q.Tenant, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("bus: list dead letters of %s: %w", c.cfg.Durable, err)
	}
	dls, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("bus: list dead letters of %s: %w", c.cfg.Durable, err)
	}
	return dls, nil
}

// DeadLetter returns one dead letter of the consumer; ErrDeadLetterNotFound
// when the id is not this consumer's or (tenant set) not that tenant's.
func (c *Consumer) DeadLetter(ctx context.Context, tenant string, id int64) (DeadLetter, error) {
	rows, err := c.pool.Query(ctx, `
		SELECT `+deadLetterColumns+`
		FROM bus_dead_letters
		WHERE consumer = $1 AND id = $2 AND ($3 = '' OR `+subjectTenantSQL+` = $3)`, c.cfg.Durable, id, tenant)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("bus: dead letter %d of %s: %w", id, c.cfg.Durable, err)
	}
	dl, err := pgx.CollectExactlyOneRow(rows, scanDeadLetter)
	if errors.Is(err, pgx.ErrNoRows) {
		return DeadLetter{}, fmt.Errorf("%w: id %d, consumer %s", ErrDeadLetterNotFound, id, c.cfg.Durable)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("bus: dead letter %d of %s: %w", id, c.cfg.Durable, err)
	}
	return dl, nil
}

// PendingDeadLetters counts the consumer's dead letters not yet replayed
// (of tenant, when set).
func (c *Consumer) PendingDeadLetters(ctx context.Context, tenant string) (int64, error) {
	var n int64
	err := c.pool.QueryRow(ctx, `
		SELECT count(*) FROM bus_dead_letters
		WHERE consumer = $1 AND replayed_at IS NULL AND ($2 = '' OR `+subjectTenantSQL+` = $2)`,
		c.cfg.Durable, tenant).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("bus: count dead letters of %s: %w", c.cfg.Durable, err)
	}
	return n, nil
}

func scanDeadLetter(row pgx.CollectableRow) (DeadLetter, error) {
	var (
		dl DeadLetter
		h  map[string][]string
	)
	if err := row.Scan(&dl.ID, &dl.Consumer, &dl.MsgID, &dl.Subject, &h, &dl.Data, &dl.Reason,
		&dl.NumDelivered, &dl.FailedAt, &dl.ReplayedAt); err != nil {
		return DeadLetter{}, err
	}
	dl.Header = nats.Header(h)
	if dl.Header == nil {
		dl.Header = nats.Header{}
	}
	dl.Type = dl.Header.Get(HeaderEventType)
	if dl.Type == "" {
		// A message published without the header (by hand, or by a
		// publisher other than Retain's): its subject still names the
		// type, <stream prefix>.<tenant>.<type>.
		for _, prefix := range []string{EventsSubjectPrefix, SignalsSubjectPrefix, NotificationsSubjectPrefix, DeliveriesSubjectPrefix} {
			if _, typ, err := SplitSubject(prefix, dl.Subject); err == nil {
				dl.Type = typ
				break
			}
		}
	}
	return dl, nil
}

// Replay runs the handler on dead letter id in one transaction (inbox
// checked like any delivery) and marks it replayed on commit. If the id was
// applied meanwhile (e.g. a corrected re-publish) it is only marked
// replayed. A handler error rolls back and is returned; a Reject returns a
// *RejectedError. Nothing is published: the stored copy is used.
//
// Locks are taken in the runner's order, the message's inbox row first
// and then the dead letter's row: a batch that meets the same message
// again (a redelivery whose termination was lost) claims it and then
// writes its dead letter, so locking the dead letter first could deadlock
// with it. The stored copy is read without a lock, and whether it was
// replayed meanwhile is checked again under the row's lock.
func (c *Consumer) Replay(ctx context.Context, id int64) error {
	// The handler's AfterCommit hooks run as they do after a batch.
	return InHandlerTx(ctx, c.pool, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT `+deadLetterColumns+`
			FROM bus_dead_letters WHERE id = $1 AND consumer = $2`, id, c.cfg.Durable)
		if err != nil {
			return fmt.Errorf("bus: replay dead letter %d of %s: %w", id, c.cfg.Durable, err)
		}
		dl, err := pgx.CollectExactlyOneRow(rows, scanDeadLetter)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: id %d, consumer %s", ErrDeadLetterNotFound, id, c.cfg.Durable)
		}
		if err != nil {
			return fmt.Errorf("bus: replay dead letter %d of %s: %w", id, c.cfg.Durable, err)
		}
		if dl.ReplayedAt != nil {
			return fmt.Errorf("%w: id %d (msg %s) at %s", ErrAlreadyReplayed, id, dl.MsgID, dl.ReplayedAt.Format(time.RFC3339))
		}

		d := &Delivery{
			ID:           dl.MsgID,
			Type:         dl.Type,
			Subject:      dl.Subject,
			Data:         dl.Data,
			Header:       dl.Header,
			NumDelivered: uint64(dl.NumDelivered),
		}
		var links []trace.Link
		if sc := c.bus.ExtractTrace(ctx, d.Header); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
		ctx, span := c.bus.tracer.Start(ctx, "replay "+c.cfg.Durable,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.String("messaging.consumer.group.name", c.cfg.Durable),
				attribute.String("messaging.message.id", d.ID),
			))
		defer span.End()

		fresh, _, err := c.claim(ctx, tx, []*Delivery{d})
		if err != nil {
			return fmt.Errorf("bus: replay dead letter %d of %s: %w", id, c.cfg.Durable, err)
		}
		var replayedAt *time.Time
		if err := tx.QueryRow(ctx, `SELECT replayed_at FROM bus_dead_letters WHERE id = $1 FOR UPDATE`, id).Scan(&replayedAt); err != nil {
			return fmt.Errorf("bus: replay dead letter %d of %s: %w", id, c.cfg.Durable, err)
		}
		if replayedAt != nil { // by a replay that committed while this one waited
			return fmt.Errorf("%w: id %d (msg %s) at %s", ErrAlreadyReplayed, id, dl.MsgID, replayedAt.Format(time.RFC3339))
		}
		if len(fresh) == 1 {
			if err := c.callHandler(ctx, tx, fresh); err != nil {
				return fmt.Errorf("bus: replay dead letter %d (msg %s) of %s: %w", id, d.ID, c.cfg.Durable, err)
			}
			if d.rejected {
				return &RejectedError{MsgID: d.ID, Reason: d.reason}
			}
		} else {
			c.log.Info("dead letter already applied, marking replayed", "dead_letter", id, "msg_id", d.ID)
		}
		if _, err := tx.Exec(ctx, `UPDATE bus_dead_letters SET replayed_at = now() WHERE id = $1`, id); err != nil {
			return fmt.Errorf("bus: mark dead letter %d replayed: %w", id, err)
		}
		return nil
	})
}
