// Package app wires a function at cold start: configuration, clients and
// the request logger. Clients are created once per instance; a failed
// initialisation is never cached, so the next request tries again.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
	"github.com/ordertimeout/ordertimeout/shared/ordering"
	"github.com/ordertimeout/ordertimeout/shared/store"
	"github.com/ordertimeout/ordertimeout/shared/sweeper"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// Env is the one wiring of the system: the configuration, the clients, and
// every application service built from them. The functions, the local
// stack and the tests all build through it; a test replaces a field (a
// Stock that crashes, a Timers that drops) before asking for a service.
type Env struct {
	Cfg       config.Config
	Log       *slog.Logger
	Store     *store.Store
	Users     auth.Users
	Internal  auth.Internal
	Signer    auth.Signer
	Publisher *broker.Publisher
	// Metrics are the order metrics every service records.
	Metrics *telemetry.Instruments
	// Events delivers order events (nil when EVENTS_TOPIC is none or no
	// store is configured).
	Events *orderevents.Dispatcher
	// Peers: the other functions (clients of their URLs unless replaced).
	Stock clients.Stock
	Cart  clients.Cart
	Pay   clients.Pay
	// Timers schedules on Publisher (events.Timers) unless replaced.
	Timers interface {
		ordering.Timers
		AnnouncePaid(ctx context.Context, orderID, payOrderID string, paidAt time.Time) error
	}
}

// Client returns a peer client for base with the configured timeout.
func (e *Env) Client(base string) *clients.Client {
	return clients.New(base, e.Signer, e.Cfg.CallTimeout)
}

// Decider is the timeout decision: HandleTimeout, the sweeper and the
// shopper's cancel decide through it.
func (e *Env) Decider() *timeout.Decider {
	return &timeout.Decider{Metrics: e.Metrics, Orders: e.Store, Pay: e.Pay, Stock: e.Stock, Timers: e.Timers, SagaBudget: e.Cfg.SweepSagaBudget}
}

// Ordering is the shopper's order service.
func (e *Env) Ordering() *ordering.Service {
	svc := &ordering.Service{
		Metrics: e.Metrics,
		Orders:  e.Store, Keys: e.Store, Stock: e.Stock, Cart: e.Cart, Timers: e.Timers, Closer: e.Decider(),
		Settings: ordering.Settings{
			TimeoutDefault: e.Cfg.TimeoutDefault, TimeoutMin: e.Cfg.TimeoutMin, TimeoutMax: e.Cfg.TimeoutMax,
			CheckLadder: e.Cfg.CheckLadder, SagaBudget: e.Cfg.SweepSagaBudget, CallTimeout: e.Cfg.CallTimeout,
			MaxUnpaid: e.Cfg.MaxUnpaidPerShopper, RemindBefore: e.Cfg.RemindBefore,
		},
	}
	if e.Store != nil {
		svc.Allowances = e.Store
	}
	return svc
}

// Sweeper is the safety net with production's page sizes.
func (e *Env) Sweeper() *sweeper.Sweeper {
	sw := &sweeper.Sweeper{Metrics: e.Metrics, Find: e.Store, Decider: e.Decider(), Grace: e.Cfg.SweepGrace, SagaBudget: e.Cfg.SweepSagaBudget, PageSize: 100, MaxPages: 10}
	if e.Events != nil {
		sw.Events = e.Events
	}
	return sw
}

// Topology returns the broker topology of the configuration.
func Topology(c config.Config) broker.Topology {
	return broker.Topology{Prefix: c.BrokerPrefix, Mode: c.BrokerMode}
}

// NewEnv loads the config (requiring need), builds the environment and
// returns it with its cleanup: flush the batched spans and the last
// metrics, close the clients. The function hands the cleanup to
// OnTerminate (Cloud Run's SIGTERM); a test calls it itself. Telemetry is
// installed once per process (a failed setup is tried again by the next
// build).
func NewEnv(ctx context.Context, need ...string) (*Env, func(context.Context) error, error) {
	cfg, err := config.Load(need...)
	if err != nil {
		return nil, nil, err
	}
	flush, err := installTelemetry(cfg)
	if err != nil {
		return nil, nil, err
	}
	env, err := Build(ctx, cfg, logging.ForLevel(cfg.LogLevel))
	if err != nil {
		return nil, nil, err
	}
	return env, func(ctx context.Context) error { return errors.Join(flush(ctx), env.Close()) }, nil
}

// OnTerminate runs cleanup when the process gets SIGTERM (Cloud Run's
// notice before it stops an instance), within ShutdownGrace, then ends the
// process as the signal would.
func OnTerminate(log *slog.Logger, cleanup func(context.Context) error) {
	go OnSignal(sigterm(), func(ctx context.Context) {
		if err := cleanup(ctx); err != nil {
			log.Warn("shutdown: flush or close failed", "error", err.Error())
		}
	}, reraise)
}

// Close closes the environment's clients (the order-events publisher
// flushes what it holds).
func (e *Env) Close() error {
	var errs []error
	if e.Events != nil {
		if p, ok := e.Events.Publisher.(interface{ Close() error }); ok {
			errs = append(errs, p.Close())
		}
	}
	if e.Publisher != nil {
		errs = append(errs, e.Publisher.Close())
	}
	if e.Store != nil {
		errs = append(errs, e.Store.Close())
	}
	return errors.Join(errs...)
}

// OnSignal waits for one signal on sig, runs cleanup with a deadline of
// ShutdownGrace, then calls after (the process's default reaction).
func OnSignal(sig <-chan os.Signal, cleanup func(context.Context), after func(os.Signal)) {
	s, ok := <-sig
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	cleanup(ctx)
	after(s)
}

// ShutdownGrace bounds the flush on SIGTERM: Cloud Run kills an instance
// 10 s after the signal.
const ShutdownGrace = 5 * time.Second

func sigterm() <-chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	return c
}

// reraise ends the process the way the signal would have.
func reraise(s os.Signal) {
	signal.Reset(s)
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Signal(s)
	}
}

// telemetryState is the process's telemetry: OpenTelemetry's providers
// are process-global, so they are installed once; a failed install is not
// remembered, so the next build tries again.
var telemetryState struct {
	sync.Mutex
	flush func(context.Context) error
}

func installTelemetry(cfg config.Config) (func(context.Context) error, error) {
	return installTelemetryWith(func() (func(context.Context) error, error) {
		flush, err := telemetry.Setup(cfg.TraceExporter, cfg.Project)
		if err != nil {
			return nil, err
		}
		return flush, telemetry.RegisterProcessCPU()
	})
}

func installTelemetryWith(setup func() (func(context.Context) error, error)) (func(context.Context) error, error) {
	telemetryState.Lock()
	defer telemetryState.Unlock()
	if telemetryState.flush == nil {
		flush, err := setup()
		if err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
		telemetryState.flush = flush
	}
	return telemetryState.flush, nil
}

// Build builds the environment of cfg: the store (when a project is set),
// the publisher (when an AMQP URL is), the credentials, the peers.
func Build(ctx context.Context, cfg config.Config, log *slog.Logger) (*Env, error) {
	e := &Env{Cfg: cfg, Log: log, Metrics: telemetry.NewInstruments()}
	e.Users, e.Internal, e.Signer = auth.FromConfig(cfg)
	if cfg.Project != "" {
		var err error
		if e.Store, err = store.New(ctx, cfg.Project); err != nil {
			return nil, err
		}
		e.Store.SetRetention(cfg.OrderRetention)
		if cfg.EventsTopic != config.EventsOff {
			pub, err := orderevents.NewPublisher(ctx, cfg.EventsProject, cfg.EventsTopic)
			if err != nil {
				return nil, err
			}
			e.Events = &orderevents.Dispatcher{Publisher: pub, Outbox: e.Store, Metrics: e.Metrics}
			e.Store.SetEventSink(e.Events)
		}
	}
	if cfg.AMQPURL != "" {
		e.Publisher = broker.NewPublisher(cfg.AMQPURL, Topology(cfg))
		e.Timers = events.Timers{Publisher: e.Publisher}
	}
	e.Stock = clients.Stock{C: e.Client(cfg.DeductStockURL)}
	e.Cart = clients.Cart{C: e.Client(cfg.ClearCartURL)}
	e.Pay = clients.Pay{C: e.Client(cfg.PayURL)}
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

// Serve wraps a function's handler: a server span named after the function
// (continuing the caller's W3C trace), a request logger carrying the
// trace in Cloud Logging's key, and the function's request counters.
func Serve(name string, log *slog.Logger, project string, next http.Handler) http.Handler {
	return Counted(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := telemetry.Extract(r.Context(), r.Header.Get("traceparent"))
		ctx, span := telemetry.Tracer().Start(ctx, name+" "+r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		l := log
		if a := logging.TraceAttr(project, telemetry.Inject(ctx)); a.Key != "" {
			l = l.With(a)
		}
		next.ServeHTTP(w, r.WithContext(store.WithSource(logging.With(ctx, l), name)))
	}))
}

// Counted counts function name's requests and the time they took
// (function.requests, function.request.time), what Cloud Run bills.
func Counted(name string, next http.Handler) http.Handler {
	requests := telemetry.NewRequests(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func(start time.Time) { requests.Served(r.Context(), time.Since(start)) }(time.Now())
		next.ServeHTTP(w, r)
	})
}
