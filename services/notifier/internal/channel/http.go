package channel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// ShownURL is a provider URL as errors and logs show it: scheme and host.
// Its userinfo, path and query are left out, since providers' credentials
// are often put there (https://user:pass@..., ?api_key=..., a Slack
// webhook's /services/T../B../secret), and errors become delivery reasons
// that every shop of the deployment reads.
func ShownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "a URL that does not parse (not shown: it may hold a credential)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// withoutURL is err without the *url.Error net/http wraps it in, whose
// URL has the query and, from url.Parse, the password; the caller names
// the URL with ShownURL instead.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newClient is the HTTP client of a provider. It does not follow
// redirects: an endpoint could otherwise send the notifier to an address
// only it can reach (the ops port, a cloud metadata service) and have the
// start of the answer shown in the delivery's reason. A 3xx answer is
// returned as it is and fails (httpStatusError).
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// post sends one JSON POST and classifies the answer.
func post(ctx context.Context, client *http.Client, rawURL string, header http.Header, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, Permanent("provider_misconfigured", fmt.Errorf("build request to %s: %w", ShownURL(rawURL), withoutURL(err)))
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, Classify(fmt.Errorf("POST %s: %w", ShownURL(rawURL), withoutURL(err)))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, Classify(fmt.Errorf("read answer of %s: %w", ShownURL(rawURL), err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, httpStatusError(resp, b, requestSecrets(rawURL, header), time.Now())
	}
	return b, nil
}

// SMSConfig configures the HTTP SMS provider.
type SMSConfig struct {
	URL string
	// AuthHeader and AuthValue are sent on every request, e.g.
	// Authorization: Bearer <key>.
	AuthHeader, AuthValue string
	From                  string
	// RatePerSecond is the provider's request limit (burst 1 second's worth).
	RatePerSecond float64
	Timeout       time.Duration
}

// SMS posts {"to","from","text","reference"} with an Idempotency-Key header
// (the request's key, the same on every attempt) and reads the provider's
// message id from "id", "message_id" or "sid" in the answer.
type SMS struct {
	cfg     SMSConfig
	client  *http.Client
	limiter *rate.Limiter
}

// NewSMS returns the SMS sender.
func NewSMS(cfg SMSConfig) *SMS {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.AuthHeader == "" {
		cfg.AuthHeader = "Authorization"
	}
	lim := rate.NewLimiter(rate.Inf, 1)
	if cfg.RatePerSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.RatePerSecond), max(1, int(cfg.RatePerSecond)))
	}
	return &SMS{cfg: cfg, client: newClient(cfg.Timeout), limiter: lim}
}

// Send delivers one SMS.
func (s *SMS) Send(ctx context.Context, m *Message) (string, error) {
	if err := s.limiter.Wait(ctx); err != nil {
		return "", Transient("provider_rate_limited", fmt.Errorf("SMS rate limit: %w", err))
	}
	body, _ := json.Marshal(map[string]string{"to": m.To, "from": s.cfg.From, "text": m.Body, "reference": m.IdempotencyKey()})
	h := http.Header{}
	h.Set("Idempotency-Key", m.IdempotencyKey())
	if s.cfg.AuthValue != "" {
		h.Set(s.cfg.AuthHeader, s.cfg.AuthValue)
	}
	b, err := post(ctx, s.client, s.cfg.URL, h, body)
	if err != nil {
		return "", err
	}
	var ans struct {
		ID        string `json:"id"`
		MessageID string `json:"message_id"`
		SID       string `json:"sid"`
	}
	_ = json.Unmarshal(b, &ans) // an answer without an id is still a success
	switch {
	case ans.ID != "":
		return ans.ID, nil
	case ans.MessageID != "":
		return ans.MessageID, nil
	}
	return ans.SID, nil
}

// WebhookConfig configures the webhook channel.
type WebhookConfig struct {
	URL     string
	Secret  string
	Timeout time.Duration
}

// Webhook header names.
const (
	HeaderSignature = "Retain-Signature"
	HeaderRequestID = "Retain-Request-Id"
	// HeaderTenant names the shop. One endpoint receives every shop's
	// webhooks; the body's tenant_id (render) says the same under the
	// signature.
	HeaderTenant = "Retain-Tenant"
)

// Webhook posts the rendered JSON body signed with HMAC-SHA256 over
// "<unix seconds>.<body>" in Retain-Signature: t=<unix seconds>,v1=<hex>,
// naming the shop in Retain-Tenant.
type Webhook struct {
	cfg    WebhookConfig
	client *http.Client
}

// NewWebhook returns the webhook sender.
func NewWebhook(cfg WebhookConfig) *Webhook {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Webhook{cfg: cfg, client: newClient(cfg.Timeout)}
}

// Sign is the Retain-Signature value of body at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte("."))
	h.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(h.Sum(nil))
}

// Send delivers one webhook.
func (w *Webhook) Send(ctx context.Context, m *Message) (string, error) {
	body := []byte(m.Body)
	h := http.Header{}
	h.Set(HeaderSignature, Sign(w.cfg.Secret, time.Now(), body))
	h.Set("Idempotency-Key", m.IdempotencyKey())
	h.Set(HeaderRequestID, m.IdempotencyKey())
	h.Set(HeaderTenant, m.Tenant)
	if _, err := post(ctx, w.client, w.cfg.URL, h, body); err != nil {
		return "", err
	}
	return "", nil
}
