package bus

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instruments are the bus metrics. Attributes stay low-cardinality: consumer
// names, outcomes and kinds, never subjects (they carry tenants) or ids.
type instruments struct {
	published       metric.Int64Counter       // messages by outcome (published/duplicate)
	publishDuration metric.Float64Histogram   // per publish call: single or atomic batch
	consumed        metric.Int64Counter       // messages by consumer and outcome
	batchDuration   metric.Float64Histogram   // fetch -> tx -> ack, per batch
	batchSize       metric.Int64Histogram     // messages per fetched batch
	deadLetters     metric.Int64Counter       // by consumer and cause
	leaseHeld       metric.Int64UpDownCounter // exclusive consumers running here (1 on the lease holder)
	heldBatches     metric.Int64UpDownCounter // batches waiting for an unreachable database
	outboxPublished metric.Int64Counter       // relayed rows by outcome
	outboxLag       metric.Float64Histogram   // commit of the outbox row -> published

	// The backlog gauges are observed from what consumers and relays last
	// read, each refreshing its own (backlog.go), through meter.
	meter               metric.Meter
	consumerPending     metric.Int64ObservableGauge   // not yet delivered, by consumer and stream
	consumerAckPending  metric.Int64ObservableGauge   // delivered, not yet acknowledged
	consumerDeadLetters metric.Int64ObservableGauge   // dead letters not replayed
	outboxUnpublished   metric.Int64ObservableGauge   // rows waiting for the relay, by database
	outboxOldestAge     metric.Float64ObservableGauge // how long the first of them has waited
}

var (
	kindSingle = metric.WithAttributes(attribute.String("kind", "single"))
	kindAtomic = metric.WithAttributes(attribute.String("kind", "atomic"))
)

func outcomeAttr(o PublishOutcome) metric.AddOption {
	return metric.WithAttributes(attribute.String("outcome", o.String()))
}

var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func newInstruments(m metric.Meter) (*instruments, error) {
	var (
		in   instruments
		errs []error
		err  error
	)
	in.published, err = m.Int64Counter("retain.bus.published.messages",
		metric.WithDescription("Messages sent to JetStream, by outcome (published, duplicate)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.publishDuration, err = m.Float64Histogram("retain.bus.publish.duration",
		metric.WithDescription("Time from send to ack of one publish (single message or atomic batch)."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	in.consumed, err = m.Int64Counter("retain.bus.consumer.messages",
		metric.WithDescription("Messages processed by consumers, by outcome (handled, duplicate, rejected, dead_lettered, retried, skipped: not one of the consumer's event types)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.batchDuration, err = m.Float64Histogram("retain.bus.consumer.batch.duration",
		metric.WithDescription("Time to process one fetched batch: inbox, handler, commit, acks."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	in.batchSize, err = m.Int64Histogram("retain.bus.consumer.batch.size",
		metric.WithDescription("Messages per fetched batch."),
		metric.WithUnit("{message}"),
		metric.WithExplicitBucketBoundaries(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
	errs = append(errs, err)
	in.deadLetters, err = m.Int64Counter("retain.bus.consumer.dead_letters",
		metric.WithDescription("Messages dead-lettered, by cause (rejected, max_deliver)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.leaseHeld, err = m.Int64UpDownCounter("retain.bus.consumer.lease.held",
		metric.WithDescription("Exclusive consumers running in this process: 1 on the replica holding the consumer's lease, 0 on those standing by (summed over replicas, 0 means nobody applies the stream)."),
		metric.WithUnit("{consumer}"))
	errs = append(errs, err)
	in.heldBatches, err = m.Int64UpDownCounter("retain.bus.consumer.held_batches",
		metric.WithDescription("Batches held because the database is unreachable, waiting for it to answer (non-zero: the consumer is stalled on its database, and nothing is lost)."),
		metric.WithUnit("{batch}"))
	errs = append(errs, err)
	in.outboxPublished, err = m.Int64Counter("retain.bus.outbox.published",
		metric.WithDescription("Outbox rows relayed to JetStream, by outcome (published, duplicate)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.outboxLag, err = m.Float64Histogram("retain.bus.outbox.lag",
		metric.WithDescription("Time from an outbox row's insert to its publish ack."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	in.meter = m
	in.consumerPending, err = m.Int64ObservableGauge("retain.bus.consumer.pending",
		metric.WithDescription("Messages the consumer has not been delivered yet (the server's count, refreshed every 15 s; the same on every replica)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.consumerAckPending, err = m.Int64ObservableGauge("retain.bus.consumer.ack_pending",
		metric.WithDescription("Messages delivered to the consumer and not acknowledged yet: batches in flight or held (refreshed every 15 s)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.consumerDeadLetters, err = m.Int64ObservableGauge("retain.bus.consumer.dead_letters.pending",
		metric.WithDescription("The consumer's dead letters not replayed yet (its bus_dead_letters rows, refreshed every 15 s)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.outboxUnpublished, err = m.Int64ObservableGauge("retain.bus.outbox.unpublished",
		metric.WithDescription("Outbox rows not yet published, counted up to 100000 (refreshed every 15 s)."),
		metric.WithUnit("{message}"))
	errs = append(errs, err)
	in.outboxOldestAge, err = m.Float64ObservableGauge("retain.bus.outbox.oldest_age",
		metric.WithDescription("How long the next outbox row to publish has waited since its transaction began (0 when none waits; refreshed every 15 s)."),
		metric.WithUnit("s"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bus: create metric instruments: %w", err)
	}
	return &in, nil
}
