// Package app wires a function at cold start: configuration, clients and
// the request logger. Clients are created once per instance; a failed
// initialisation is never cached, so the next request tries again.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/store"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// Env is what a function may use; Build fills only what was asked for.
type Env struct {
	Cfg       config.Config
	Log       *slog.Logger
	Store     *store.Store
	Users     auth.Users
	Internal  auth.Internal
	Signer    auth.Signer
	Publisher *broker.Publisher
}

// Client returns a peer client for base with the configured timeout.
func (e *Env) Client(base string) *clients.Client {
	return clients.New(base, e.Signer, e.Cfg.CallTimeout)
}

// Decider is the timeout decision on this environment: the store, the Pay
// and DeductStock clients, the publisher. HandleTimeout and Sweep decide
// through the same one.
func (e *Env) Decider() *timeout.Decider {
	return &timeout.Decider{
		Orders:     e.Store,
		Pay:        clients.Pay{C: e.Client(e.Cfg.PayURL)},
		Stock:      clients.Stock{C: e.Client(e.Cfg.DeductStockURL)},
		Publisher:  e.Publisher,
		SagaBudget: e.Cfg.SweepSagaBudget,
	}
}

// Topology returns the broker topology of the configuration.
func Topology(c config.Config) broker.Topology {
	return broker.Topology{Prefix: c.BrokerPrefix, Mode: c.BrokerMode}
}

// NewEnv loads the config (requiring need) and opens the store.
func NewEnv(ctx context.Context, need ...string) (*Env, error) {
	cfg, err := config.Load(need...)
	if err != nil {
		return nil, err
	}
	e := &Env{Cfg: cfg, Log: logging.ForLevel(cfg.LogLevel)}
	traceOnce.Do(func() { _, traceErr = telemetry.Setup(cfg.TraceExporter, cfg.Project) })
	if traceErr != nil {
		return nil, traceErr
	}
	e.Users, e.Internal, e.Signer = auth.FromConfig(cfg)
	if cfg.Project != "" {
		if e.Store, err = store.New(ctx, cfg.Project); err != nil {
			return nil, err
		}
	}
	if cfg.AMQPURL != "" {
		e.Publisher = broker.NewPublisher(cfg.AMQPURL, Topology(cfg))
	}
	return e, nil
}

// BuildTimeout bounds one cold-start build of a function's dependencies.
const BuildTimeout = 30 * time.Second

// Lazy returns a handler that builds the real one on first use. While the
// build fails, requests get 503 and the next one tries again. The build
// runs under a context of its own (BuildTimeout, not the first request's):
// the clients it creates serve every later request, and must not end with
// the request that happened to build them, nor fail because it hung up.
func Lazy(build func(context.Context) (http.Handler, error)) http.HandlerFunc {
	var (
		mu sync.Mutex
		h  http.Handler
	)
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if h == nil {
			ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
			built, err := build(ctx)
			cancel()
			if err != nil {
				mu.Unlock()
				httpx.Error(w, r, fmt.Errorf("%w: initialise: %w", domain.ErrUnavailable, err))
				return
			}
			h = built
		}
		mu.Unlock()
		h.ServeHTTP(w, r)
	}
}

// traceOnce installs the process's tracer provider once.
var (
	traceOnce sync.Once
	traceErr  error
)

// Serve wraps a function's handler: a server span named after the function
// (continuing the caller's W3C trace), and a request logger carrying the
// trace in Cloud Logging's key.
func Serve(name string, log *slog.Logger, project string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := telemetry.Extract(r.Context(), r.Header.Get("traceparent"))
		ctx, span := telemetry.Tracer().Start(ctx, name+" "+r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		l := log
		if a := logging.TraceAttr(project, telemetry.Inject(ctx)); a.Key != "" {
			l = l.With(a)
		}
		next.ServeHTTP(w, r.WithContext(logging.With(ctx, l)))
	})
}
