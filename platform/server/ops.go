package server

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/telemetry"
)

// DefaultOpsShutdownTimeout bounds the ops server's graceful shutdown.
const DefaultOpsShutdownTimeout = 5 * time.Second

// OpsConfig configures the ops HTTP listener.
type OpsConfig struct {
	// Addr is host:port; ":0" picks a free port (tests).
	Addr string
	// ShutdownTimeout zero means DefaultOpsShutdownTimeout.
	ShutdownTimeout time.Duration
}

// RegisterFlags binds -ops-addr/RETAIN_OPS_ADDR with the current value as
// default.
func (c *OpsConfig) RegisterFlags(fs *flag.FlagSet) {
	config.StringVar(fs, &c.Addr, "ops-addr", "RETAIN_OPS_ADDR", "ops HTTP listen address for /healthz, /readyz, /metrics (host:port)")
}

// Validate reports every invalid field.
func (c OpsConfig) Validate() error {
	var v config.Validator
	validateAddr(&v, config.SettingName("RETAIN_OPS_ADDR", "ops-addr"), c.Addr)
	v.Check(c.ShutdownTimeout >= 0, "ops shutdown timeout", "must not be negative, got %s", c.ShutdownTimeout)
	return v.Err()
}

// OpsDeps are what the ops server serves.
type OpsDeps struct {
	// Telemetry provides /metrics; nil serves 404 there.
	Telemetry *telemetry.Telemetry
	// Readiness backs /readyz; usually Supervisor.Readiness(). Required.
	Readiness *Readiness
	// Logger defaults to Telemetry.Logger.
	Logger *slog.Logger
}

// Ops is the operations HTTP server: /healthz answers 200 while the process
// runs, /readyz 200 only when every readiness check passes and the process is
// not draining (else 503 with the reasons), /metrics the Prometheus metrics.
// Probes are neither traced nor logged.
//
// Add it to the supervisor first so it stops last and keeps answering 503
// on /readyz while the other components drain.
type Ops struct {
	*httpServer
	mux *http.ServeMux
}

// NewOps builds the ops server; it does not listen yet.
func NewOps(cfg OpsConfig, deps OpsDeps) (*Ops, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new ops server: %w", err)
	}
	if deps.Readiness == nil {
		return nil, errors.New("new ops server: readiness is required")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultOpsShutdownTimeout
	}
	logger := loggerFrom(deps.Logger, deps.Telemetry)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.Handle("GET /readyz", readyzHandler(deps.Readiness))
	if deps.Telemetry != nil && deps.Telemetry.MetricsHandler != nil {
		mux.Handle("GET /metrics", deps.Telemetry.MetricsHandler)
	}
	// Profiles on the ops port, which is internal like /metrics: the first
	// thing an operator asks for when a service is slow.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return &Ops{httpServer: newHTTPServer("ops", cfg.Addr, cfg.ShutdownTimeout, mux, logger), mux: mux}, nil
}

func readyzHandler(r *Readiness) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		reasons := r.Check(req.Context())
		if len(reasons) == 0 {
			writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
			return
		}
		list := make([]map[string]string, 0, len(reasons))
		for _, k := range sortedKeys(reasons) {
			list = append(list, map[string]string{"check": k, "reason": reasons[k]})
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reasons": list})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// A probe that hung up needs no answer.
	_ = json.NewEncoder(w).Encode(v)
}

// Handle adds a route (e.g. pprof) before Run.
func (o *Ops) Handle(pattern string, h http.Handler) { o.mux.Handle(pattern, h) }

// Handler is the routing of the ops server, for tests and embedding.
func (o *Ops) Handler() http.Handler { return o.mux }
