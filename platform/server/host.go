package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/telemetry"
)

// Service is what a Retain service's composition root hands the host: its
// gRPC API and scopes, its public HTTP routes, its background work (Run:
// consumers, relays, the bus connection) and its readiness.
type Service interface {
	Component
	// MethodScopes maps each gRPC full method to the scope it requires.
	MethodScopes() map[string]string
	// RegisterGRPC mounts the service's gRPC services.
	RegisterGRPC(*grpc.Server)
	// RegisterHTTP mounts the service's public HTTP routes (may do nothing).
	RegisterHTTP(*http.ServeMux)
	// Ready reports whether the service can take traffic (nil = ready).
	Ready(ctx context.Context) error
}

// Addrs are the listen addresses of a host. GRPC is required; an empty HTTP
// or Ops skips that server. After NewHost, Host.Addrs has the bound ones.
type Addrs struct {
	GRPC string
	HTTP string
	Ops  string
}

// HostConfig is what NewHost needs besides the services.
type HostConfig struct {
	Addrs     Addrs
	Telemetry *telemetry.Telemetry
	Verifier  *auth.Verifier
	// Logger defaults to Telemetry.Logger.
	Logger *slog.Logger
	// Supervisor tunes shutdown (zero values use the defaults).
	Supervisor SupervisorConfig
	// TLS, when enabled, has the gRPC and public HTTP servers serve TLS;
	// the ops server stays plaintext.
	TLS TLSConfig
}

// Host runs one or more services behind one gRPC server, one public HTTP
// server and one ops server, under a supervisor. `retain dev` hosts every
// service in one process; each service's own main hosts just itself.
//
// Stop order (reverse of start): public HTTP and gRPC stop taking requests,
// then each service's Run drains (last service first), then ops, which keeps
// answering 503 on /readyz until the very end.
type Host struct {
	sup   *Supervisor
	grpc  *GRPC
	http  *HTTP
	ops   *Ops
	addrs Addrs
}

// NewHost wires the servers and binds every address, so Addrs is known (and
// a busy port reported) before Run.
func NewHost(cfg HostConfig, services ...Service) (*Host, error) {
	if len(services) == 0 {
		return nil, errors.New("new host: no services")
	}
	logger := loggerFrom(cfg.Logger, cfg.Telemetry)
	sup := NewSupervisor(cfg.Supervisor, logger)
	h := &Host{sup: sup}

	scopes := map[string]string{}
	for _, s := range services {
		for m, sc := range s.MethodScopes() {
			if prev, dup := scopes[m]; dup && prev != sc {
				return nil, fmt.Errorf("new host: method %s is given scope %q and %q", m, prev, sc)
			}
			scopes[m] = sc
		}
	}
	var ownUnknown []protoreflect.FullName
	for _, s := range services {
		if o, ok := s.(UnknownFieldsOwner); ok {
			ownUnknown = append(ownUnknown, o.OwnUnknownFields()...)
		}
	}
	deadLetters, err := consumersOf(services)
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	var cert *Certificate
	if cfg.TLS.Enabled() {
		if cert, err = LoadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return nil, fmt.Errorf("new host: %w", err)
		}
		logger.Info("serving the gRPC and public HTTP APIs over TLS", cert.LogAttrs()...)
	}
	if len(deadLetters.names) > 0 {
		for m, sc := range deadLetterScopes {
			scopes[m] = sc
		}
	}
	g, err := NewGRPC(GRPCConfig{Addr: cfg.Addrs.GRPC}, Deps{
		Telemetry:        cfg.Telemetry,
		Verifier:         cfg.Verifier,
		MethodScopes:     scopes,
		Logger:           logger,
		Readiness:        sup.Readiness(),
		TLS:              cert,
		OwnUnknownFields: ownUnknown,
	})
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	h.grpc = g

	mux := http.NewServeMux()
	for _, s := range services {
		s.RegisterGRPC(g.Server)
		s.RegisterHTTP(mux)
	}
	if len(deadLetters.names) > 0 {
		deadLetters.register(g.Server)
	}
	if cfg.Addrs.HTTP != "" {
		if h.http, err = NewHTTP(HTTPConfig{Addr: cfg.Addrs.HTTP, TLS: cert}, jsonRouteErrors(mux), cfg.Telemetry, logger); err != nil {
			return nil, fmt.Errorf("new host: %w", err)
		}
	}
	if cfg.Addrs.Ops != "" {
		if h.ops, err = NewOps(OpsConfig{Addr: cfg.Addrs.Ops}, OpsDeps{Telemetry: cfg.Telemetry, Readiness: sup.Readiness(), Logger: logger}); err != nil {
			return nil, fmt.Errorf("new host: %w", err)
		}
	}

	if err := h.listen(); err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}

	if h.ops != nil {
		sup.Add("ops", h.ops)
	}
	if cert != nil {
		sup.Add("tls-certificate", ComponentFunc(func(ctx context.Context) error {
			cert.Watch(ctx, cfg.TLS.ReloadInterval, logger, cfg.Telemetry)
			return nil
		}))
	}
	for i, s := range services {
		name := serviceName(s, i)
		sup.Readiness().AddCheck(name, s.Ready)
		sup.Add(name, s)
	}
	sup.Add("grpc", g)
	if h.http != nil {
		sup.Add("http", h.http)
	}
	return h, nil
}

func (h *Host) listen() error {
	var err error
	defer func() {
		if err != nil {
			h.closeListeners()
		}
	}()
	if err = h.grpc.Listen(); err != nil {
		return err
	}
	h.addrs.GRPC = h.grpc.Addr()
	if h.http != nil {
		if err = h.http.Listen(); err != nil {
			return err
		}
		h.addrs.HTTP = h.http.Addr()
	}
	if h.ops != nil {
		if err = h.ops.Listen(); err != nil {
			return err
		}
		h.addrs.Ops = h.ops.Addr()
	}
	return nil
}

func (h *Host) closeListeners() {
	h.grpc.closeListener()
	if h.http != nil {
		h.http.closeListener()
	}
	if h.ops != nil {
		h.ops.closeListener()
	}
}

// serviceName names a service in logs and readiness reasons: its Name()
// when it has one, else its Go type.
func serviceName(s Service, i int) string {
	if n, ok := s.(interface{ Name() string }); ok && n.Name() != "" {
		return n.Name()
	}
	name := fmt.Sprintf("%T", s)
	name = strings.TrimPrefix(name, "*")
	if name == "" {
		name = fmt.Sprintf("service-%d", i)
	}
	return name
}

// Addrs are the bound addresses (real ports when ":0" was asked for).
func (h *Host) Addrs() Addrs { return h.addrs }

// GRPCServer is the underlying gRPC server, to register extra services
// before Run.
func (h *Host) GRPCServer() *grpc.Server { return h.grpc.Server }

// Readiness is the host's readiness, to add checks before Run.
func (h *Host) Readiness() *Readiness { return h.sup.Readiness() }

// Run runs everything until ctx is done or a component fails; see
// Supervisor.Run. Run may be called once.
func (h *Host) Run(ctx context.Context) error { return h.sup.Run(ctx) }

// WaitReady blocks until every readiness check passes, for callers that must
// not send traffic before the services are up (`retain dev`, tests). It
// fails after timeout, when ctx is done, or once the host drains.
func (h *Host) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := h.sup.Readiness()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		reasons := r.Check(ctx)
		if len(reasons) == 0 {
			return nil
		}
		if r.IsDraining() {
			return errors.New("host is shutting down")
		}
		select {
		case <-ctx.Done():
			parts := make([]string, 0, len(reasons))
			for _, k := range sortedKeys(reasons) {
				parts = append(parts, k+": "+reasons[k])
			}
			return fmt.Errorf("not ready after %s: %s", timeout, strings.Join(parts, "; "))
		case <-tick.C:
		}
	}
}
