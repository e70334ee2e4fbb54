package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sort"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/telemetry"
)

// DefaultGRPCShutdownTimeout bounds GracefulStop before in-flight calls are
// cut with Stop.
const DefaultGRPCShutdownTimeout = 10 * time.Second

// healthPollInterval is how often health Watch streams see readiness
// changes; Check calls evaluate readiness on the spot.
const healthPollInterval = 5 * time.Second

// GRPCConfig configures the gRPC listener.
type GRPCConfig struct {
	// Addr is host:port to listen on; ":0" picks a free port (tests).
	Addr string
	// ShutdownTimeout bounds the graceful stop; zero means
	// DefaultGRPCShutdownTimeout.
	ShutdownTimeout time.Duration
}

// RegisterFlags binds -grpc-addr/RETAIN_GRPC_ADDR with the current value as
// default.
func (c *GRPCConfig) RegisterFlags(fs *flag.FlagSet) {
	config.StringVar(fs, &c.Addr, "grpc-addr", "RETAIN_GRPC_ADDR", "gRPC listen address (host:port)")
}

// Validate reports every invalid field.
func (c GRPCConfig) Validate() error {
	var v config.Validator
	validateAddr(&v, config.SettingName("RETAIN_GRPC_ADDR", "grpc-addr"), c.Addr)
	v.Check(c.ShutdownTimeout >= 0, "gRPC shutdown timeout", "must not be negative, got %s", c.ShutdownTimeout)
	return v.Err()
}

// validateAddr checks a listen address: host:port with a port of 0-65535
// (0: any free port).
func validateAddr(v *config.Validator, setting, addr string) {
	if addr == "" {
		v.Addf(setting, "must be set: host:port such as :9090")
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		v.Addf(setting, "want host:port such as :9090, got %q", addr)
		return
	}
	if n, err := config.AddrPort(addr); err != nil {
		v.Addf(setting, "%v", err)
	} else if n < 0 || n > 65535 {
		v.Addf(setting, "want a port of 0-65535 (0: any free port) in host:port, got %q", addr)
	}
}

// Deps are what the gRPC server is built from.
type Deps struct {
	// Telemetry provides the tracer and meter providers and the logger;
	// nil means no tracing or metrics (tests).
	Telemetry *telemetry.Telemetry
	// Verifier checks bearer tokens; required.
	Verifier *auth.Verifier
	// MethodScopes maps each full method ("/retain.ingest.v1.IngestService/
	// Publish") to the scope it requires. Methods not listed are refused;
	// health and reflection are public.
	MethodScopes map[string]string
	// Logger defaults to Telemetry.Logger.
	Logger *slog.Logger
	// Readiness, when set, drives the health status: NOT_SERVING while a
	// check fails or the process drains. Usually Supervisor.Readiness().
	Readiness *Readiness
	// ServerOptions are appended after the standard ones (e.g. message size
	// limits).
	ServerOptions []grpc.ServerOption
	// TLS, when set, is the certificate the server serves TLS with; nil
	// serves plaintext.
	TLS *Certificate
	// OwnUnknownFields names request fields (full names, such as
	// "retain.ingest.v1.PublishBatchRequest.events") whose messages their
	// handler checks for unknown fields and bad values itself: ingest
	// rejects an event holding any on its own, which a refusal of its
	// whole batch would break. The server refuses a request holding
	// unknown fields (decision 0043), a NUL in a string or an unknown enum
	// value (decision 0049) anywhere else.
	OwnUnknownFields []protoreflect.FullName
}

// GRPC is a gRPC server with health, reflection, recovery, auth, tracing
// and request logging. Register services on Server before Run.
type GRPC struct {
	Server *grpc.Server

	cfg          GRPCConfig
	logger       *slog.Logger
	health       *healthService
	readiness    *Readiness
	methodScopes map[string]string
	tls          bool

	earlyListener
}

// NewGRPC builds the server; it does not listen yet.
func NewGRPC(cfg GRPCConfig, deps Deps) (*GRPC, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new grpc server: %w", err)
	}
	if deps.Verifier == nil {
		return nil, errors.New("new grpc server: a token verifier is required")
	}
	if err := auth.ValidateMethodScopes(deps.MethodScopes); err != nil {
		return nil, fmt.Errorf("new grpc server: %w", err)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultGRPCShutdownTimeout
	}
	logger := loggerFrom(deps.Logger, deps.Telemetry)

	otelOpts := []otelgrpc.Option{
		// Probes every few seconds would drown real traces.
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	}
	if t := deps.Telemetry; t != nil {
		otelOpts = append(otelOpts,
			otelgrpc.WithTracerProvider(t.TracerProvider),
			otelgrpc.WithMeterProvider(t.MeterProvider),
			otelgrpc.WithPropagators(t.Propagator))
	} else {
		otelOpts = append(otelOpts,
			otelgrpc.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelgrpc.WithPropagators(propagation.TraceContext{}))
	}

	skipOwned, err := ownedUnknownFields(deps.OwnUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("new grpc server: %w", err)
	}

	// Copy so later changes by the caller cannot open methods.
	scopes := make(map[string]string, len(deps.MethodScopes))
	for k, v := range deps.MethodScopes {
		scopes[k] = v
	}

	// Logging is outermost so it sees the code recovery and auth produce.
	// Requests are checked (unknown fields, bad values) after auth: a
	// caller without a token learns nothing of the schema, and no walk is
	// spent on it.
	calls := newCallLog(logger)
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		grpc.ChainUnaryInterceptor(
			logUnary(calls),
			recoverUnary(logger),
			auth.UnaryServerInterceptor(deps.Verifier, scopes),
			checkRequestUnary(skipOwned),
		),
		grpc.ChainStreamInterceptor(
			logStream(calls),
			recoverStream(logger),
			auth.StreamServerInterceptor(deps.Verifier, scopes),
			checkRequestStream(skipOwned),
		),
	}
	if deps.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(deps.TLS.ServerConfig())))
	}
	opts = append(opts, deps.ServerOptions...)
	srv := grpc.NewServer(opts...)

	hs := &healthService{Server: health.NewServer(), readiness: deps.Readiness, stopping: make(chan struct{})}
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)

	return &GRPC{
		Server:        srv,
		cfg:           cfg,
		logger:        logger,
		health:        hs,
		readiness:     deps.Readiness,
		methodScopes:  scopes,
		tls:           deps.TLS != nil,
		earlyListener: earlyListener{name: "grpc", addr: cfg.Addr},
	}, nil
}

func loggerFrom(l *slog.Logger, t *telemetry.Telemetry) *slog.Logger {
	switch {
	case l != nil:
		return l
	case t != nil && t.Logger != nil:
		return t.Logger
	default:
		return slog.New(slog.DiscardHandler)
	}
}

// Run serves until ctx is done, then reports NOT_SERVING, stops gracefully
// and, after ShutdownTimeout, forcibly. Run may be called once.
func (g *GRPC) Run(ctx context.Context) error {
	lis, err := g.listener()
	if err != nil {
		return err
	}

	g.warnUnscopedMethods(ctx)
	g.updateHealth(ctx)

	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Server.Serve(lis) }()
	g.logger.InfoContext(ctx, "grpc server listening", "addr", lis.Addr().String(), "tls", g.tls)

	pollDone := make(chan struct{})
	pollCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		defer close(pollDone)
		g.pollHealth(pollCtx)
	}()
	defer func() {
		stopPoll()
		<-pollDone
	}()

	select {
	case err := <-serveErr:
		return fmt.Errorf("grpc serve on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}

	// Tell clients and balancers first, then close Watch streams, which
	// GracefulStop would otherwise wait on until the timeout.
	g.health.Shutdown()
	close(g.health.stopping)

	stopped := make(chan struct{})
	go func() {
		g.Server.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(g.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		g.logger.WarnContext(ctx, "grpc graceful stop timed out; closing remaining calls", "timeout", g.cfg.ShutdownTimeout)
		g.Server.Stop()
		<-stopped
	}
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc serve on %s: %w", lis.Addr(), err)
	}
	g.logger.InfoContext(ctx, "grpc server stopped")
	return nil
}

// warnUnscopedMethods names registered methods nobody can call because
// MethodScopes lacks them; almost always a wiring mistake.
func (g *GRPC) warnUnscopedMethods(ctx context.Context) {
	var missing []string
	for svc, info := range g.Server.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			if _, ok := g.methodScopes[full]; !ok && !auth.IsPublicMethod(full) {
				missing = append(missing, full)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		g.logger.WarnContext(ctx, "grpc methods without a scope are refused to every caller", "methods", missing)
	}
}

func (g *GRPC) pollHealth(ctx context.Context) {
	if g.readiness == nil {
		return
	}
	t := time.NewTicker(healthPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.readiness.Draining():
			g.health.Shutdown()
			return
		case <-t.C:
			g.updateHealth(ctx)
		}
	}
}

// updateHealth sets the overall status ("") and each registered service's.
func (g *GRPC) updateHealth(ctx context.Context) {
	st := healthpb.HealthCheckResponse_SERVING
	if g.readiness != nil && !g.readiness.Ready(ctx) {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	g.health.SetServingStatus("", st)
	for svc := range g.Server.GetServiceInfo() {
		g.health.SetServingStatus(svc, st)
	}
}

// healthService is grpc/health with Check and List answered from the
// current readiness rather than the last poll (which only feeds Watch).
type healthService struct {
	*health.Server
	readiness *Readiness
	stopping  chan struct{}
	shutdown  atomic.Bool
}

// status is the live answer: NOT_SERVING once shut down or while not ready.
func (h *healthService) status(ctx context.Context) healthpb.HealthCheckResponse_ServingStatus {
	if h.shutdown.Load() || (h.readiness != nil && !h.readiness.Ready(ctx)) {
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	return healthpb.HealthCheckResponse_SERVING
}

// Shutdown reports NOT_SERVING from now on, to Check and to Watch streams.
func (h *healthService) Shutdown() {
	h.shutdown.Store(true)
	h.Server.Shutdown()
}

func (h *healthService) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	// The embedded server still decides which services exist (NotFound).
	if _, err := h.Server.Check(ctx, in); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: h.status(ctx)}, nil
}

func (h *healthService) List(ctx context.Context, in *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	resp, err := h.Server.List(ctx, in)
	if err != nil {
		return nil, err
	}
	st := h.status(ctx)
	for _, s := range resp.GetStatuses() {
		s.Status = st
	}
	return resp, nil
}

func (h *healthService) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return h.Server.Watch(in, &watchStream{Health_WatchServer: stream, ctx: ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }

// logRPC logs one finished call. Successful calls log at debug: ingest
// serves thousands per second. Client-caused failures log at info without
// the message (it may quote request data); server-side failures log at error
// with it, and with the cause a Failure kept from the client. Metadata
// (which holds the token) is never logged.
func logRPC(ctx context.Context, logger *slog.Logger, method string, err error, d time.Duration, extra ...slog.Attr) {
	code := status.Code(err)
	attrs := []slog.Attr{
		slog.String("grpc.method", method),
		slog.String("grpc.code", code.String()),
		slog.Duration("duration", d),
	}
	level := slog.LevelInfo
	switch code {
	case codes.OK:
		level = slog.LevelDebug
	case codes.Unknown, codes.Internal, codes.Unavailable, codes.DataLoss, codes.DeadlineExceeded, codes.Unimplemented:
		level = slog.LevelError
		msg := status.Convert(err).Message()
		if f, ok := errors.AsType[*failure](err); ok {
			msg = f.Error() // the cause the client was not shown
		}
		attrs = append(attrs, slog.String("error", msg))
	}
	logger.LogAttrs(ctx, level, "grpc call", append(attrs, extra...)...)
}

// unavailableEvery is how often a method that keeps answering UNAVAILABLE
// is logged again.
const unavailableEvery = time.Minute

// callLog logs finished calls (logRPC), pacing each method's UNAVAILABLE
// answers: while what a method needs is down (NATS, its database, JetStream
// storage full) every call of it fails alike, and at ingest's rates a line
// per call buries everything else. The first is logged at once, then a
// line a minute with how many there were, and one line when the method
// answers OK again (telemetry.FailureRun, kept per method for good so that
// a method failing some calls and answering others logs at most two lines
// a minute). Other failures are the caller's or the call's, and log as
// they always do.
type callLog struct {
	logger *slog.Logger
	runs   telemetry.FailureRuns // by method
}

func newCallLog(logger *slog.Logger) *callLog {
	return &callLog{logger: logger, runs: telemetry.FailureRuns{Every: unavailableEvery}}
}

func (l *callLog) finished(ctx context.Context, method string, err error, d time.Duration) {
	now := time.Now()
	code := status.Code(err)
	if code != codes.Unavailable {
		if code == codes.OK {
			if line := l.runs.Ended(method, now); line.Log {
				l.logger.InfoContext(ctx, "grpc method answers again", "grpc.method", method,
					"unavailable_calls", line.Failures, "not_logged", line.Unlogged, "failing_for", line.FailingFor)
			}
		}
		logRPC(ctx, l.logger, method, err, d)
		return
	}
	line := l.runs.Of(method).Failed(now)
	if !line.Log {
		return
	}
	var extra []slog.Attr
	if !line.First {
		extra = []slog.Attr{slog.Int("unavailable_calls", line.Failures), slog.Duration("failing_for", line.FailingFor)}
	}
	logRPC(ctx, l.logger, method, err, d, extra...)
}

func logUnary(l *callLog) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		l.finished(ctx, info.FullMethod, err, time.Since(start))
		return resp, err
	}
}

func logStream(l *callLog) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		l.finished(ss.Context(), info.FullMethod, err, time.Since(start))
		return err
	}
}

func recovered(ctx context.Context, logger *slog.Logger, method string, p any) error {
	logger.ErrorContext(ctx, "panic in grpc handler",
		"grpc.method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	// The panic value stays in the logs; the caller learns nothing internal.
	return status.Error(codes.Internal, "internal error")
}

func recoverUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, recovered(ctx, logger, info.FullMethod, p)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = recovered(ss.Context(), logger, info.FullMethod, p)
			}
		}()
		return handler(srv, ss)
	}
}
