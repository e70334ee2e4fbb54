package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/tenant"
)

// probeLife is how long a backlog probe (see TenantBacklog) left behind
// outlives its last use: the server deletes it this long after, as it
// has no pull waiting, so a probe of a process that died between creating
// and deleting it does not stay.
const probeLife = 2 * time.Second

// probeAttempts bounds how often TenantBacklog finds its probe's name
// taken (see probe) before it gives up on a count: with probeWait between
// them, long enough for one left behind to expire.
const probeAttempts = 5

// probeWait is how long a probe whose name is taken, and cannot be
// deleted, waits before trying again.
const probeWait = probeLife / 3

// probeDeleteTimeout bounds a probe's deletion: a NATS that does not allow
// it answers with silence, and the count is known by then.
const probeDeleteTimeout = 2 * time.Second

// ProbeName is the name of the backlog probes of the consumer durable
// (TenantBacklog): one name per consumer, so that the NATS permissions of
// a service name its own probes and no other consumer
// (docs/decisions/0044-consumer-permissions-per-service.md).
func ProbeName(durable string) string { return durable + "-probe" }

// TenantBacklog is how many of tenant's messages on the consumer's stream
// the consumer has yet to apply: those its filters match past its ack
// floor (docs/decisions/0037-per-tenant-facts-backlog.md). Backlog says
// that of the whole consumer, and one shop importing its history makes it
// large for every shop; this tells that shop from the others, whose own
// messages are few.
//
// The count comes from the server: a short-lived consumer (a probe) of
// the tenant's subjects, <prefix>.<tenant>.> on the consumer's stream
// (narrowed by the consumer's FilterSubjects, one probe per filter),
// starting after the ack floor, reports how many messages it has pending
// when it is created. The probe has no acks, lives in memory on one
// replica and is deleted once its count is read (the server deletes it
// by itself after probeLife otherwise); nothing is ever delivered to it.
// It counts the tenant's messages of every type the filters match,
// EventTypes or not (the runner passes the other types in the same
// fetches, decision 0013), and those acknowledged past the ack floor, as
// Backlog counts those delivered and not yet acknowledged.
//
// Each call reads the consumer's info; only when the consumer has
// anything pending or awaiting an ack does it create the probes. A
// caller with a threshold asks Backlog first: no tenant's backlog
// exceeds the consumer's.
func (c *Consumer) TenantBacklog(ctx context.Context, tenantID string) (int64, error) {
	if err := tenant.Validate(tenantID); err != nil {
		return 0, fmt.Errorf("bus: backlog of consumer %s: %w", c.cfg.Durable, err)
	}
	prefix, ok := streamSubjectPrefix(c.cfg.Stream)
	if !ok {
		return 0, fmt.Errorf("bus: backlog of consumer %s: stream %s is not one of Retain's, whose subjects are <prefix>.<tenant>.<type>", c.cfg.Durable, c.cfg.Stream)
	}
	filters := tenantFilters(prefix, tenantID, c.cfg.FilterSubjects)
	if len(filters) == 0 {
		// The consumer's filters exclude the tenant.
		return 0, nil
	}
	info, err := c.info(ctx)
	if err != nil {
		return 0, err
	}
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return 0, nil
	}
	var n int64
	for _, f := range filters {
		pending, err := c.probe(ctx, f, info.AckFloor.Stream+1, "backlog of "+c.cfg.Durable+" for tenant "+tenantID)
		if err != nil {
			return 0, fmt.Errorf("bus: backlog of consumer %s for tenant %s: probe of %s: %w%s", c.cfg.Durable, tenantID, f, err, c.probeRefused(prefix))
		}
		n += pending
	}
	return n, nil
}

// probe creates the consumer's probe of filter from stream sequence
// start, and deletes it once it has read how many messages it has
// pending.
//
// The probe always has the same name (ProbeName), which the NATS
// permissions of a service can name where a generated one would need a
// wildcard that names every consumer of the stream: with that, a service
// could re-filter, or have the server delete, another service's durable
// by creating a "probe" of its name (decision 0044). The creation asks
// for a new consumer, never an update: the name taken (a probe of another
// replica of the service, of this process when its deletion failed, or of
// a process that died) is not reused but deleted, and the creation tried
// again. Deleting another's probe costs it nothing: its count came with
// its creation. The probes of one name in this process take turns
// (UseNamedConsumer).
//
// A single FilterSubject, not FilterSubjects: the create request's
// subject then ends with it, which the NATS permissions of a service
// restrict to tenant filters of its stream (the chart, decision 0037).
func (c *Consumer) probe(ctx context.Context, filter string, start uint64, description string) (n int64, err error) {
	name := ProbeName(c.cfg.Durable)
	err = c.bus.UseNamedConsumer(ctx, NamedConsumer{
		Stream: c.cfg.Stream,
		Config: jetstream.ConsumerConfig{
			Name:              name,
			Description:       description,
			FilterSubject:     filter,
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       start,
			AckPolicy:         jetstream.AckNonePolicy,
			MemoryStorage:     true,
			Replicas:          1,
			InactiveThreshold: probeLife,
		},
		Attempts: probeAttempts,
		Taken: func(ctx context.Context) error {
			if c.bus.DeleteNamedConsumer(ctx, c.cfg.Stream, name, probeDeleteTimeout) != nil {
				// Not deletable (the permission not there yet): the
				// server deletes it within probeLife.
				return sleepCtx(ctx, probeWait)
			}
			return nil
		},
		DeleteTimeout: probeDeleteTimeout,
		// The count came with the creation: a probe that cannot be
		// deleted (a NATS whose permissions still lack the deletion, as
		// during an upgrade to 0044's) costs its count nothing, and the
		// server deletes it after probeLife.
		Deleted: func(err error) {
			if err != nil && c.probeLeft.CompareAndSwap(false, true) {
				prefix, _ := streamSubjectPrefix(c.cfg.Stream)
				c.log.Warn("bus: cannot delete backlog probes; the server deletes each after it is idle, and the counts are kept",
					"consumer", c.cfg.Durable, "probe", name, "after", probeLife, "error", err.Error()+c.probeRefused(prefix))
			}
		},
	}, func(probe jetstream.Consumer) error {
		n = int64(probe.CachedInfo().NumPending)
		return nil
	})
	return n, err
}

// probeRefused explains a probe that got no answer when the server last
// refused this connection a probe's subject: NATS answers a request it
// does not allow with silence (the refusal comes as an asynchronous
// error), so the call only times out, and an operator whose own NATS
// lacks the permission would read a timeout. "" otherwise.
func (c *Consumer) probeRefused(prefix string) string {
	last := c.bus.NC.LastError()
	name := ProbeName(c.cfg.Durable)
	create, del := "$JS.API.CONSUMER.CREATE."+c.cfg.Stream+"."+name+".", "$JS.API.CONSUMER.DELETE."+c.cfg.Stream+"."+name
	if !errors.Is(last, nats.ErrPermissionViolation) || (!strings.Contains(last.Error(), create) && !strings.Contains(last.Error(), del)) {
		return ""
	}
	return fmt.Sprintf(" (the NATS server refused this login the probe: %v; allow %s%s.*.> and %s for this service, docs/decisions/0044-consumer-permissions-per-service.md)", last, create, prefix, del)
}

// streamSubjectPrefix is the subject prefix of a Retain stream, whose
// subjects are <prefix>.<tenant>.<type>.
func streamSubjectPrefix(stream string) (string, bool) {
	switch stream {
	case EventsStream:
		return EventsSubjectPrefix, true
	case SignalsStream:
		return SignalsSubjectPrefix, true
	case NotificationsStream:
		return NotificationsSubjectPrefix, true
	case DeliveriesStream:
		return DeliveriesSubjectPrefix, true
	}
	return "", false
}

// tenantFilters are the subjects of tenantID among those filters match
// on a stream of <prefix>.<tenant>.<type> subjects: each filter narrowed to
// the tenant, those that cannot match it left out (none: every subject of
// the stream). A tenant id is a single subject token with no wildcard
// (tenant.Valid), so putting it in a filter cannot widen it. Filters of a
// consumer do not overlap (the server refuses those that do), so neither
// do these, and their counts add up.
func tenantFilters(prefix, tenantID string, filters []string) []string {
	all := prefix + "." + tenantID + ".>"
	if len(filters) == 0 {
		return []string{all}
	}
	pt := strings.Split(prefix, ".")
	var out []string
	for _, f := range filters {
		ft := strings.Split(f, ".")
		narrowed, ok := func() (string, bool) {
			for i, p := range pt {
				switch {
				case i >= len(ft):
					return "", false
				case ft[i] == ">":
					return all, true
				case ft[i] != "*" && ft[i] != p:
					return "", false
				}
			}
			if len(ft) == len(pt) {
				return "", false // the prefix alone: no tenant subject
			}
			switch t := ft[len(pt)]; t {
			case ">":
				return all, true
			case "*", tenantID:
				if len(ft) == len(pt)+1 {
					return "", false // <prefix>.<tenant> has no type
				}
				return prefix + "." + tenantID + "." + strings.Join(ft[len(pt)+1:], "."), true
			}
			return "", false
		}()
		if ok {
			out = append(out, narrowed)
		}
	}
	return out
}
