package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/httperr"
	"github.com/retainhq/retain/platform/telemetry"
)

// DefaultHTTPShutdownTimeout bounds the public HTTP server's graceful stop.
const DefaultHTTPShutdownTimeout = 10 * time.Second

// HTTPConfig configures a public HTTP listener.
type HTTPConfig struct {
	// Addr is host:port; ":0" picks a free port (tests).
	Addr string
	// ShutdownTimeout zero means DefaultHTTPShutdownTimeout.
	ShutdownTimeout time.Duration
	// TLS, when set, is the certificate the server serves TLS with; nil
	// serves plaintext.
	TLS *Certificate
}

// RegisterFlags binds -http-addr/RETAIN_HTTP_ADDR with the current value as
// default.
func (c *HTTPConfig) RegisterFlags(fs *flag.FlagSet) {
	config.StringVar(fs, &c.Addr, "http-addr", "RETAIN_HTTP_ADDR", "public HTTP listen address (host:port)")
}

// Validate reports every invalid field.
func (c HTTPConfig) Validate() error {
	var v config.Validator
	validateAddr(&v, config.SettingName("RETAIN_HTTP_ADDR", "http-addr"), c.Addr)
	v.Check(c.ShutdownTimeout >= 0, "HTTP shutdown timeout", "must not be negative, got %s", c.ShutdownTimeout)
	return v.Err()
}

// HTTP is a public HTTP server: every request gets a server span (W3C trace
// context is continued from the caller), a log line and panic recovery.
// Authentication is the handler's business (auth.RequireScope per route).
type HTTP struct {
	*httpServer
}

// NewHTTP builds a public HTTP server for h; tel may be nil (no tracing).
func NewHTTP(cfg HTTPConfig, h http.Handler, tel *telemetry.Telemetry, logger *slog.Logger) (*HTTP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new http server: %w", err)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultHTTPShutdownTimeout
	}
	logger = loggerFrom(logger, tel)
	var tracer trace.Tracer
	var prop propagation.TextMapPropagator = propagation.TraceContext{}
	var duration metric.Float64Histogram
	if tel != nil {
		tracer = tel.TracerProvider.Tracer("github.com/retainhq/retain/platform/server")
		prop = tel.Propagator
		var err error
		// The OpenTelemetry semantic convention's name and buckets, as
		// otelgrpc's rpc.server.call.duration is for the gRPC API: a 429
		// or 5xx rate alerts the same way on both.
		duration, err = tel.MeterProvider.Meter("github.com/retainhq/retain/platform/server").Float64Histogram("http.server.request.duration",
			metric.WithUnit("s"), metric.WithDescription("Duration of HTTP server requests, by method, route and status code."),
			metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
		if err != nil {
			return nil, fmt.Errorf("new http server: %w", err)
		}
	}
	s := newHTTPServer("http", cfg.Addr, cfg.ShutdownTimeout, instrument(h, tracer, prop, duration, logger), logger)
	if cfg.TLS != nil {
		s.srv.TLSConfig = cfg.TLS.ServerConfig()
	}
	return &HTTP{httpServer: s}, nil
}

// statusRecorder remembers the status code for logs and spans.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument traces, measures, logs and recovers each request. Like gRPC
// calls, successes log at debug, client errors at info and server errors at
// error; headers (which hold the token) and bodies are never logged. tracer
// and duration may be nil.
func instrument(next http.Handler, tracer trace.Tracer, prop propagation.TextMapPropagator, duration metric.Float64Histogram, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		var span trace.Span
		if tracer != nil {
			// Named by method only until routing gives the low-cardinality
			// pattern; raw paths may hold ids.
			ctx, span = tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(
					attribute.String("http.request.method", r.Method),
					attribute.String("url.path", r.URL.Path),
				))
			defer span.End()
		}
		rec := &statusRecorder{ResponseWriter: w}
		routed := r.WithContext(ctx)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.ErrorContext(ctx, "panic in http handler", "http.path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if rec.status == 0 {
					httperr.Write(rec, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			if span != nil {
				if routed.Pattern != "" {
					name := routed.Pattern
					if !strings.HasPrefix(name, r.Method+" ") {
						name = r.Method + " " + name
					}
					span.SetName(name)
					span.SetAttributes(attribute.String("http.route", routed.Pattern))
				}
				span.SetAttributes(attribute.Int("http.response.status_code", status))
				if status >= 500 {
					span.SetStatus(codes.Error, http.StatusText(status))
				}
			}
			if duration != nil {
				attrs := []attribute.KeyValue{
					attribute.String("http.request.method", knownMethod(r.Method)),
					attribute.Int("http.response.status_code", status),
				}
				if routed.Pattern != "" { // unrouted paths are left out: raw paths may hold ids
					attrs = append(attrs, attribute.String("http.route", routed.Pattern))
				}
				duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs...))
			}
			level := slog.LevelDebug
			switch {
			case status >= 500:
				level = slog.LevelError
			case status >= 400:
				level = slog.LevelInfo
			}
			logger.LogAttrs(ctx, level, "http request",
				slog.String("http.method", r.Method),
				slog.String("http.path", r.URL.Path),
				slog.Int("http.status", status),
				slog.Duration("duration", time.Since(start)))
		}()
		next.ServeHTTP(rec, routed)
	})
}

// knownMethod is r.Method, or "_OTHER" for one outside RFC 9110 and PATCH
// (the semantic convention's rule): a client choosing methods must not
// choose the metric's series.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// jsonRouteErrors answers the requests mux has no route for in the API's
// JSON error shape rather than ServeMux's plain text: 404 not_found for an
// unknown path, 405 method_not_allowed (with the mux's Allow header) for a
// known path asked with another method. Routed requests, including the
// mux's redirects, are served by mux unchanged.
func jsonRouteErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets r.Pattern and the path values
			return
		}
		// h is the mux's NotFound or Method Not Allowed handler; run it
		// aside only to learn which, and the allowed methods.
		aside := &headerOnly{header: http.Header{}}
		h.ServeHTTP(aside, r)
		if aside.status == http.StatusMethodNotAllowed {
			allow := aside.header.Get("Allow")
			w.Header().Set("Allow", allow)
			httperr.Write(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
			return
		}
		httperr.Write(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such path: %s", r.URL.Path))
	})
}

// headerOnly is a ResponseWriter that keeps the status and headers and
// drops the body.
type headerOnly struct {
	header http.Header
	status int
}

func (h *headerOnly) Header() http.Header { return h.header }

func (h *headerOnly) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

func (h *headerOnly) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}

// httpServer is the listen/serve/graceful-stop loop shared by the public
// and ops servers.
type httpServer struct {
	earlyListener
	timeout time.Duration
	logger  *slog.Logger
	srv     *http.Server
}

func newHTTPServer(name, addr string, timeout time.Duration, h http.Handler, logger *slog.Logger) *httpServer {
	return &httpServer{
		earlyListener: earlyListener{name: name, addr: addr},
		timeout:       timeout,
		logger:        logger,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
	}
}

// Run serves until ctx is done, then shuts down gracefully within the
// shutdown timeout and closes what is left. Run may be called once.
func (s *httpServer) Run(ctx context.Context) error {
	lis, err := s.listener()
	if err != nil {
		return err
	}

	serveErr := make(chan error, 1)
	secure := s.srv.TLSConfig != nil
	go func() {
		if secure {
			// The certificate comes from TLSConfig.GetCertificate.
			serveErr <- s.srv.ServeTLS(lis, "", "")
			return
		}
		serveErr <- s.srv.Serve(lis)
	}()
	s.logger.InfoContext(ctx, s.name+" server listening", "addr", lis.Addr().String(), "tls", secure)

	select {
	case err := <-serveErr:
		return fmt.Errorf("%s serve on %s: %w", s.name, lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	var closeErr error
	if err := s.srv.Shutdown(sctx); err != nil {
		s.logger.WarnContext(ctx, s.name+" graceful shutdown timed out; closing connections", "error", err)
		closeErr = s.srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s serve on %s: %w", s.name, lis.Addr(), err)
	}
	if closeErr != nil {
		return fmt.Errorf("%s close: %w", s.name, closeErr)
	}
	s.logger.InfoContext(ctx, s.name+" server stopped")
	return nil
}
