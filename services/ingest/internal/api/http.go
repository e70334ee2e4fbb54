// Package api translates HTTP and gRPC requests into calls of the ingest use
// case and its results back into each transport's terms.
package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/httperr"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/event"
	"github.com/retainhq/retain/services/ingest/internal/app"
	"github.com/retainhq/retain/services/ingest/internal/commit"
)

// MaxBodyBytes is the largest request body accepted, after decompression.
const MaxBodyBytes = 1 << 20

// HTTP serves POST /v1/events.
type HTTP struct {
	ingestor    *app.Ingestor
	log         *slog.Logger
	storageFull *StorageFullLog
}

// NewHTTP returns the HTTP edge; mount Handler behind auth.RequireScope.
// storageFull is shared with the gRPC edge.
func NewHTTP(in *app.Ingestor, log *slog.Logger, storageFull *StorageFullLog) *HTTP {
	return &HTTP{ingestor: in, log: log, storageFull: storageFull}
}

// Register mounts the routes on mux, each guarded by the events:write scope.
func (h *HTTP) Register(mux *http.ServeMux, v *auth.Verifier) {
	mux.Handle("POST /v1/events", auth.RequireScope(v, auth.ScopeEventsWrite)(http.HandlerFunc(h.publish)))
}

// httpResult is the JSON form of one event's result.
type httpResult struct {
	Index  int                    `json:"index"`
	ID     string                 `json:"id,omitempty"`
	Status string                 `json:"status"`
	Errors []*ingestv1.FieldError `json:"errors,omitempty"`
}

type httpResponse struct {
	Accepted   int32        `json:"accepted"`
	Duplicates int32        `json:"duplicates"`
	Rejected   int32        `json:"rejected"`
	Results    []httpResult `json:"results"`
}

func (h *HTTP) publish(w http.ResponseWriter, r *http.Request) {
	claims, ok := auth.ClaimsFromContext(r.Context())
	if !ok {
		httperr.Write(w, http.StatusUnauthorized, "unauthenticated", "missing credentials")
		return
	}
	body, rerr := readBody(w, r)
	if rerr != nil {
		httperr.Write(w, rerr.status, rerr.code, rerr.msg)
		return
	}
	events, decodeErrs, err := event.DecodeBatch(body)
	if err != nil {
		if errors.Is(err, event.ErrTooManyEvents) {
			httperr.Write(w, http.StatusRequestEntityTooLarge, "too_many_events", err.Error())
			return
		}
		httperr.Write(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	resp, err := h.ingestor.Publish(r.Context(), claims.Tenant, events, event.FieldErrorsByIndex(decodeErrs))
	if err != nil {
		h.failed(w, r.Context(), err)
		return
	}
	h.storageFull.stored(r.Context(), resp.Accepted)
	out := httpResponse{Accepted: resp.Accepted, Duplicates: resp.Duplicates, Rejected: resp.Rejected, Results: make([]httpResult, len(resp.Results))}
	for i, res := range resp.Results {
		out.Results[i] = httpResult{Index: int(res.Index), ID: res.Id, Status: event.StatusWord(res.Status), Errors: res.Errors}
	}
	// An event that failed to decode has no Event to take the id from; name
	// it by the id the client sent, when that much could be read.
	for _, de := range decodeErrs {
		if r := &out.Results[de.Index]; r.ID == "" {
			r.ID = de.ID
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(out)
}

// failed answers a request whose events could not be published. A failure
// a retry can get past is 429 with Retry-After (a retry with the same ids is
// safe); any other is 500 without its detail, which may quote internals: the
// log has it.
func (h *HTTP) failed(w http.ResponseWriter, ctx context.Context, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away; nothing to answer
	}
	switch {
	case errors.Is(err, commit.ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		httperr.Write(w, http.StatusTooManyRequests, "overloaded", err.Error()+"; retry with the same event ids")
	case errors.Is(err, bus.ErrStorageFull):
		// An operator has to make room (or old events expire): the log
		// says so (see StorageFullLog). A retry within a second would only
		// be refused again.
		h.storageFull.refused(ctx, err)
		w.Header().Set("Retry-After", "30")
		httperr.Write(w, http.StatusTooManyRequests, "storage_full", err.Error()+"; retry with the same event ids")
	case errors.Is(err, commit.ErrLogUnavailable):
		// The committer logs the outage when it starts and when it ends,
		// not once per refused request.
		w.Header().Set("Retry-After", "1")
		httperr.Write(w, http.StatusTooManyRequests, "ingest_log_unavailable", err.Error()+"; retry with the same event ids")
	case errors.Is(err, app.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		if !errors.Is(err, bus.ErrNotConnected) {
			// A lost NATS connection is logged by the bus when it drops and
			// when it is back, not once per refused request.
			h.log.WarnContext(ctx, "ingest publish failed", "err", err)
		}
		w.Header().Set("Retry-After", "1")
		httperr.Write(w, http.StatusTooManyRequests, "bus_unavailable", err.Error()+"; retry with the same event ids")
	default:
		h.log.ErrorContext(ctx, "ingest publish failed", "err", err)
		httperr.Write(w, http.StatusInternalServerError, "internal", "internal error; the server's log has the detail")
	}
}

// requestError is a refusal of the whole request: its status and the
// snake_case code and message of the JSON error body.
type requestError struct {
	status    int
	code, msg string
}

func refuse(status int, code, format string, args ...any) *requestError {
	return &requestError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// readBody returns the request body, decompressed, refusing bodies over
// MaxBodyBytes with 413.
func readBody(w http.ResponseWriter, r *http.Request) (io.Reader, *requestError) {
	// Media types are case-insensitive and may carry parameters
	// (charset=utf-8); application/jsonx is another type.
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", "content type %q: want application/json", ct)
		}
		// JSON is UTF-8 (RFC 8259); a body declared otherwise would be
		// read as UTF-8 all the same, its text silently garbled.
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return nil, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", "charset %q: JSON is UTF-8", cs)
		}
	}
	raw := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	var src io.Reader = raw
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return nil, refuse(http.StatusBadRequest, "bad_request", "gzip body: %v", err)
		}
		src = zr
	default:
		return nil, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", "content encoding %q: only gzip is supported", enc)
	}
	buf, err := io.ReadAll(io.LimitReader(src, MaxBodyBytes+1))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, refuse(http.StatusRequestEntityTooLarge, "body_too_large", "body larger than %d bytes", MaxBodyBytes)
		}
		return nil, refuse(http.StatusBadRequest, "bad_request", "read body: %v", err)
	}
	if len(buf) > MaxBodyBytes {
		return nil, refuse(http.StatusRequestEntityTooLarge, "body_too_large", "body larger than %d bytes after decompression", MaxBodyBytes)
	}
	return bytes.NewReader(buf), nil
}
