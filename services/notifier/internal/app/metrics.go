package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/channel"
)

// instruments are the notifier's metrics. Attributes stay low-cardinality:
// outcome, channel, result and reason code, never tenants, customers or
// request ids.
type instruments struct {
	deliveries       metric.Int64Counter     // committed outcome events
	providerAttempts metric.Int64Counter     // provider calls by result
	providerDuration metric.Float64Histogram // one provider call
}

func newInstruments(m metric.Meter) (instruments, error) {
	var (
		in   instruments
		errs []error
		err  error
	)
	in.deliveries, err = m.Int64Counter("retain.notifier.deliveries",
		metric.WithDescription("Delivery outcomes published to RETAIN_DELIVERIES, each counted once when its transaction commits, by outcome (sent, failed, suppressed, deferred), channel (email, sms, webhook) and reason (the reason code; none for sent)."),
		metric.WithUnit("{delivery}"))
	errs = append(errs, err)
	in.providerAttempts, err = m.Int64Counter("retain.notifier.provider.attempts",
		metric.WithDescription("Provider calls (SMTP sends, SMS and webhook requests), by channel, result (accepted; retried: failed, the delivery is tried again after backoff; failed: failed, the delivery fails) and reason (the provider_* code; none when accepted)."),
		metric.WithUnit("{attempt}"))
	errs = append(errs, err)
	in.providerDuration, err = m.Float64Histogram("retain.notifier.provider.duration",
		metric.WithDescription("Time of one provider call, by channel and result (accepted, retried, failed)."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return instruments{}, fmt.Errorf("notifier: create metric instruments: %w", err)
	}
	return in, nil
}

// outcomeKey is what the metrics keep of one outcome event.
type outcomeKey struct {
	outcome notifierv1.Outcome
	channel notifierv1.Channel
	code    string
}

// tally is the outcomes a transaction publishes. It is counted only once
// the transaction has committed: a rolled-back attempt publishes nothing,
// and its retry (a redelivered batch, the next pass) decides, and tallies,
// again.
type tally []outcomeKey

var outcomeNames = map[notifierv1.Outcome]string{
	notifierv1.Outcome_OUTCOME_SENT:       "sent",
	notifierv1.Outcome_OUTCOME_FAILED:     "failed",
	notifierv1.Outcome_OUTCOME_SUPPRESSED: "suppressed",
	notifierv1.Outcome_OUTCOME_DEFERRED:   "deferred",
}

// reasonCodes are the reason codes the notifier gives outcomes and
// provider errors. A code not listed (a suppression reason stored by hand,
// a code added without adding it here) is counted as "other", so no value
// from the database can grow the metric's series.
var reasonCodes = map[string]bool{
	// the policy
	"expired": true, "unknown_customer": true, "no_address": true, "unsubscribed": true, "consent_revoked": true,
	"no_consent": true, "suppressed_hard_bounce": true, "suppressed_complaint": true, "suppressed_manual": true,
	"frequency_cap": true, "quiet_hours": true,
	// held for the customer's profile (holdForContacts)
	CodeContactsPending: true,
	// the send
	"template_not_found": true, "template_invalid": true, "template_missing_variable": true, "template_variable_type": true,
	"template_render_failed": true, "channel_not_configured": true, "retries_exhausted": true,
	// the providers (channel.Error codes)
	"provider_rejected": true, "provider_misconfigured": true, "provider_unavailable": true, "provider_timeout": true,
	"provider_rate_limited": true,
}

func reasonAttr(code string) attribute.KeyValue {
	if !reasonCodes[code] {
		code = "other"
	}
	return attribute.String("reason", code)
}

// channelName is a channel as metrics and logs name it.
func channelName(c notifierv1.Channel) string {
	switch c {
	case notifierv1.Channel_CHANNEL_EMAIL:
		return "email"
	case notifierv1.Channel_CHANNEL_SMS:
		return "sms"
	case notifierv1.Channel_CHANNEL_WEBHOOK:
		return "webhook"
	}
	return "other"
}

// count records a committed transaction's outcomes.
func (in instruments) count(ctx context.Context, t tally) {
	// A batch's outcomes repeat a few keys: one Add per key.
	n := make(map[outcomeKey]int64, 4)
	for _, k := range t {
		n[k]++
	}
	for k, c := range n {
		attrs := []attribute.KeyValue{attribute.String("outcome", outcomeNames[k.outcome]), attribute.String("channel", channelName(k.channel))}
		if k.code != "" {
			attrs = append(attrs, reasonAttr(k.code))
		}
		in.deliveries.Add(ctx, c, metric.WithAttributes(attrs...))
	}
}

// Results of a provider call.
const (
	resultAccepted = "accepted"
	resultRetried  = "retried"
	resultFailed   = "failed"
)

// attempt records one provider call: ce is nil when the provider accepted
// the message.
func (in instruments) attempt(ctx context.Context, ch notifierv1.Channel, result string, ce *channel.Error, took time.Duration) {
	attrs := []attribute.KeyValue{attribute.String("channel", channelName(ch)), attribute.String("result", result)}
	in.providerDuration.Record(ctx, took.Seconds(), metric.WithAttributes(attrs...))
	if ce != nil {
		attrs = append(attrs, reasonAttr(ce.Code))
	}
	in.providerAttempts.Add(ctx, 1, metric.WithAttributes(attrs...))
}
