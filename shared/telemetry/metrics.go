package telemetry

import (
	"context"
	"net"
	"net/http"
	"syscall"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Instruments are the order metrics, made by NewInstruments for each
// environment (app.Build) and handed to the services that record them. A
// nil *Instruments records nothing (the services' fast tests).
type Instruments struct {
	OrdersCreated   metric.Int64Counter
	OrdersPaid      metric.Int64Counter
	OrdersCancelled metric.Int64Counter
	// TimeoutLateness: seconds from an order's deadline to its cancellation.
	TimeoutLateness metric.Float64Histogram
	// SweeperFinds: orders or reservations the sweeper had to decide; any
	// find means a timer was lost or late (attribute kind: overdue, orphan).
	SweeperFinds metric.Int64Counter
	// OrdersRefused: creates refused by a shopper limit (attribute reason:
	// PURCHASE_LIMIT, TOO_MANY_UNPAID_ORDERS), so hoarding shows.
	OrdersRefused metric.Int64Counter
	// EventsPublished: order events published (attribute path: commit,
	// right after the change; sweeper, left by a writer and redelivered).
	EventsPublished metric.Int64Counter
	// EventsOutboxAge: seconds the oldest event a sweep found had waited
	// in the outbox (recorded only when one was waiting).
	EventsOutboxAge metric.Float64Histogram
}

// NewInstruments makes the instruments on the global meter provider (Cloud
// Monitoring in production, see Setup; Prometheus text locally). Before
// Setup, and with the none/stdout exporters, they record nowhere.
func NewInstruments() *Instruments {
	m := otel.Meter(Name)
	inst := &Instruments{}
	{
		inst.OrdersCreated, _ = m.Int64Counter("orders.created", metric.WithDescription("Orders created (UNPAID, stock reserved, timer confirmed)."))
		inst.OrdersPaid, _ = m.Int64Counter("orders.paid", metric.WithDescription("Orders that became PAID."))
		inst.OrdersCancelled, _ = m.Int64Counter("orders.cancelled", metric.WithDescription("Orders that became CANCELLED."))
		inst.TimeoutLateness, _ = m.Float64Histogram("orders.timeout.lateness", metric.WithUnit("s"),
			metric.WithDescription("Seconds from an order's deadline to its cancellation."),
			metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
		inst.OrdersRefused, _ = m.Int64Counter("orders.refused", metric.WithDescription("Creates refused by a shopper limit, by reason (PURCHASE_LIMIT, TOO_MANY_UNPAID_ORDERS)."))
		inst.EventsPublished, _ = m.Int64Counter("orders.events.published", metric.WithDescription("Order events published, by path (commit, sweeper)."))
		inst.EventsOutboxAge, _ = m.Float64Histogram("orders.events.outbox_age", metric.WithUnit("s"),
			metric.WithDescription("Seconds the oldest undelivered order event a sweep found had waited in the outbox."),
			metric.WithExplicitBucketBoundaries(1, 5, 10, 30, 60, 120, 300, 900, 3600))
		inst.SweeperFinds, _ = m.Int64Counter("sweeper.finds", metric.WithDescription("Orders or reservations the sweeper decided; non-zero means a timer was lost or late."))
	}
	return inst
}

// Created records an order created.
func (i *Instruments) Created(ctx context.Context) {
	if i != nil {
		i.OrdersCreated.Add(ctx, 1)
	}
}

// Paid records an order that became PAID.
func (i *Instruments) Paid(ctx context.Context) {
	if i != nil {
		i.OrdersPaid.Add(ctx, 1)
	}
}

// Refused records a create refused by a shopper limit.
func (i *Instruments) Refused(ctx context.Context, reason string) {
	if i != nil {
		i.OrdersRefused.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	}
}

// SweeperFound records n orders or reservations of kind a sweep decided.
func (i *Instruments) SweeperFound(ctx context.Context, kind string, n int) {
	if i != nil {
		i.SweeperFinds.Add(ctx, int64(n), metric.WithAttributes(attribute.String("kind", kind)))
	}
}

// EventsOut records n order events published by path.
func (i *Instruments) EventsOut(ctx context.Context, path string, n int) {
	if i != nil {
		i.EventsPublished.Add(ctx, int64(n), metric.WithAttributes(attribute.String("path", path)))
	}
}

// OutboxWaited records how long the oldest waiting order event had waited.
func (i *Instruments) OutboxWaited(ctx context.Context, d time.Duration) {
	if i != nil {
		i.EventsOutboxAge.Record(ctx, d.Seconds())
	}
}

// Cancelled records a cancellation and, for one at the payment deadline,
// its lateness.
func (i *Instruments) Cancelled(ctx context.Context, deadline, at time.Time, reason string) {
	if i == nil {
		return
	}
	i.OrdersCancelled.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	if reason == "PAYMENT_TIMEOUT" {
		i.TimeoutLateness.Record(ctx, at.Sub(deadline).Seconds())
	}
}

// NewPrometheus returns a metric reader that exports in Prometheus text and
// the handler serving it (/metrics): OpenTelemetry instruments, named the
// Prometheus way (relay.delivered → relay_delivered_total).
func NewPrometheus() (sdkmetric.Reader, http.Handler, error) {
	reg := prom.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, nil, err
	}
	return exp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// ServePrometheus makes the global meter provider export in Prometheus text
// on addr (/metrics), for local runs. It returns the server to close.
func ServePrometheus(addr string) (*http.Server, error) {
	reader, h, err := NewPrometheus()
	if err != nil {
		return nil, err
	}
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

// RegisterProcessCPU exports the process's CPU time (user + system, from
// getrusage) as the counter process.cpu.time: what a function instance or
// the relay spends per order, which `make load` and the capacity model read.
func RegisterProcessCPU() error {
	c, err := otel.Meter(Name).Float64ObservableCounter("process.cpu.time", metric.WithUnit("s"),
		metric.WithDescription("CPU seconds (user + system) this process has used."))
	if err != nil {
		return err
	}
	_, err = otel.Meter(Name).RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return err
		}
		o.ObserveFloat64(c, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds())
		return nil
	}, c)
	return err
}

// Requests counts a function's requests and the seconds they took
// (function.requests, function.request.time; attribute function), which
// Cloud Run bills as instance time while requests are in flight.
type Requests struct {
	count metric.Int64Counter
	time  metric.Float64Counter
	attr  metric.MeasurementOption
}

// NewRequests returns the request counters of function name.
func NewRequests(name string) *Requests {
	m := otel.Meter(Name)
	r := &Requests{attr: metric.WithAttributes(attribute.String("function", name))}
	r.count, _ = m.Int64Counter("function.requests", metric.WithDescription("Requests a function served."))
	r.time, _ = m.Float64Counter("function.request.time", metric.WithUnit("s"), metric.WithDescription("Seconds a function spent serving requests."))
	return r
}

// Served records one request that took d.
func (r *Requests) Served(ctx context.Context, d time.Duration) {
	ctx = context.WithoutCancel(ctx)
	r.count.Add(ctx, 1, r.attr)
	r.time.Add(ctx, d.Seconds(), r.attr)
}
