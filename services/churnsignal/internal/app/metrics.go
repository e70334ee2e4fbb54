package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// passMetrics are the metrics of full rescoring passes (scheduled, after a
// refit or a change of weights, on demand). Counters advance as each range's
// transaction commits, so a failed pass counts what it did store. No tenant
// attribute: tenants are unbounded.
type passMetrics struct {
	duration    metric.Float64Histogram
	customers   metric.Int64Counter
	written     metric.Int64Counter
	bandChanges metric.Int64Counter
}

var (
	passOK     = metric.WithAttributes(attribute.String("result", "ok"))
	passFailed = metric.WithAttributes(attribute.String("result", "failed"))
)

func newPassMetrics(m metric.Meter) (passMetrics, error) {
	var (
		pm   passMetrics
		errs []error
		err  error
	)
	pm.duration, err = m.Float64Histogram("retain.churn.rescore.duration",
		metric.WithDescription("Time of one full rescoring pass over a tenant's customers, by result (ok, failed)."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600))
	errs = append(errs, err)
	pm.customers, err = m.Int64Counter("retain.churn.rescore.customers",
		metric.WithDescription("Customers scored by full rescoring passes."),
		metric.WithUnit("{customer}"))
	errs = append(errs, err)
	pm.written, err = m.Int64Counter("retain.churn.rescore.rows_written",
		metric.WithDescription("Score rows full rescoring passes rewrote because the score, band or reasons changed."),
		metric.WithUnit("{row}"))
	errs = append(errs, err)
	pm.bandChanges, err = m.Int64Counter("retain.churn.rescore.band_changes",
		metric.WithDescription("Band changes found by full rescoring passes, each a churn.risk_changed in the outbox."),
		metric.WithUnit("{event}"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return passMetrics{}, fmt.Errorf("churn-signal: create metric instruments: %w", err)
	}
	return pm, nil
}

// chunk records a committed range of a pass.
func (pm passMetrics) chunk(ctx context.Context, st Stats) {
	pm.customers.Add(ctx, int64(st.Customers))
	pm.written.Add(ctx, int64(st.Changed))
	pm.bandChanges.Add(ctx, int64(st.BandChanges))
}

// pass records a pass that ended after took, with err nil when complete.
func (pm passMetrics) pass(ctx context.Context, took time.Duration, err error) {
	result := passOK
	if err != nil {
		result = passFailed
	}
	pm.duration.Record(context.WithoutCancel(ctx), took.Seconds(), result)
}
