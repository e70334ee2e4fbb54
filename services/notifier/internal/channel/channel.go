// Package channel delivers rendered messages: email over SMTP, SMS through
// an HTTP provider API, signed webhooks, and a local file outbox for
// development. Every sender takes the request's idempotency key so that a
// retry after an unknown outcome can be recognised downstream.
package channel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Message is one rendered message ready to go.
type Message struct {
	Tenant, RequestID, CustomerID string
	// To is the email address or phone number (empty for webhooks).
	To                   string
	Subject, HTML, Text  string
	Body                 string // SMS text or webhook JSON
	Dir                  string
	UnsubscribeURL       string // email: List-Unsubscribe (empty: none)
	UnsubscribePostURL   string // email: the one-click POST target
	RequestedAt, Attempt time.Time
}

// IdempotencyKey is the key providers see: the same for every attempt of a
// request.
func (m *Message) IdempotencyKey() string { return m.Tenant + "/" + m.RequestID }

// Sender delivers one message and returns the provider's id for it.
type Sender interface {
	Send(ctx context.Context, m *Message) (providerID string, err error)
}

// Error is a failed send, classified: transient errors are retried (after
// RetryAfter when the provider said so), permanent ones end the delivery.
type Error struct {
	Permanent  bool
	RetryAfter time.Duration
	// Code is the reason code of the outcome ("provider_rejected",
	// "provider_unavailable", "provider_timeout").
	Code string
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Permanent wraps err as a permanent failure.
func Permanent(code string, err error) error { return &Error{Permanent: true, Code: code, Err: err} }

// Transient wraps err as a transient failure.
func Transient(code string, err error) error { return &Error{Code: code, Err: err} }

// Classify returns err as an *Error: unknown errors are transient (a
// network error, a timeout), so they are retried rather than lost.
func Classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	code := "provider_unavailable"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		code = "provider_timeout"
	}
	return &Error{Code: code, Err: err}
}

// httpStatusError classifies an HTTP provider's answer: 408, 425, 429 and
// 5xx are transient (429 and 503 honour Retry-After), other 4xx permanent,
// and a 3xx (not followed) is a URL to fix, named by the host it points to
// only (its path and query may hold anything). The error says what the
// answer says as answerReason puts it, blanking secrets and anything
// credential-like.
func httpStatusError(resp *http.Response, body []byte, secrets []string, now time.Time) error {
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		to := "nowhere (no Location)"
		if loc, err := resp.Location(); err == nil {
			to = loc.Host
		}
		return Permanent("provider_misconfigured", fmt.Errorf("HTTP %d: redirects to %s; redirects are not followed, set the URL they lead to", resp.StatusCode, to))
	}
	err := errors.New(answerReason(resp.StatusCode, body, secrets))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooEarly || resp.StatusCode >= 500:
		code := "provider_unavailable"
		if resp.StatusCode == http.StatusTooManyRequests {
			code = "provider_rate_limited"
		}
		return &Error{Code: code, Err: err, RetryAfter: RetryAfter(resp.Header.Get("Retry-After"), now)}
	}
	return Permanent("provider_rejected", err)
}

// RetryAfter reads a Retry-After header: seconds or an HTTP date. Nonsense
// and the past give 0 (use the backoff); more than a day is capped.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, 24*time.Hour)
}
