package relay

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// latencyBuckets are the bucket bounds of the lateness histogram (seconds).
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics are the relay's counters; all fields are safe for concurrent use.
// The hot path only adds to atomics; RegisterOTel publishes them as
// OpenTelemetry instruments (read when collected), exported as Prometheus
// text on /metrics and to Cloud Monitoring in production.
type Metrics struct {
	Delivered    atomic.Int64 // acked after a 2xx
	Retried      atomic.Int64 // re-scheduled for a later attempt
	DeadLettered atomic.Int64 // sent to the dead-letter queue
	RetryCopies  atomic.Int64 // retries that moved to a confirmed copy (retry queue or ladder)
	Hops         atomic.Int64 // re-published to a tier because not yet due
	AckFrames    atomic.Int64 // ack frames sent (one may ack many messages)
	Redelivered  atomic.Int64 // deliveries the broker marked as redelivered
	InFlight     atomic.Int64 // taken from the broker, not yet acked
	Held         atomic.Int64 // waiting in memory: due within broker.HoldMax, or a retry's backoff
	Connected    atomic.Bool
	Reconnects   atomic.Int64

	refusals [len(refusalStatuses)]atomic.Int64 // by refusalStatuses
	depth    [len(depthQueues)]atomic.Int64     // messages in the due, retry and dead queues

	lateness metric.Float64Histogram // set by RegisterOTel
}

// depthQueues name the queues whose depth the relay exports, in
// Metrics.depth's order.
var depthQueues = [...]string{"due", "retry", "dead"}

// Depth returns the last depth read of queue ("due", "retry" or "dead").
func (m *Metrics) Depth(queue string) int64 {
	if i := slices.Index(depthQueues[:], queue); i >= 0 {
		return m.depth[i].Load()
	}
	return 0
}

// Refused counts a delivery the target refused with a configuration
// status (see refusalStatuses).
func (m *Metrics) Refused(status int) {
	if i := slices.Index(refusalStatuses[:], status); i >= 0 {
		m.refusals[i].Add(1)
	}
}

// Refusals returns how many deliveries the target refused with status.
func (m *Metrics) Refusals(status int) int64 {
	if i := slices.Index(refusalStatuses[:], status); i >= 0 {
		return m.refusals[i].Load()
	}
	return 0
}

// ObserveLateness records how late a first delivery attempt was.
func (m *Metrics) ObserveLateness(d time.Duration) {
	if m.lateness != nil {
		m.lateness.Record(context.Background(), max(d, 0).Seconds())
	}
}

// RegisterOTel publishes the metrics as OpenTelemetry instruments on meter.
func (m *Metrics) RegisterOTel(meter metric.Meter) error {
	counters := []struct {
		name, desc string
		get        func() int64
	}{
		{"relay.delivered", "Messages acked after a 2xx from the target.", m.Delivered.Load},
		{"relay.retried", "Deliveries re-scheduled after a failure (any answer but 2xx, 400 and 422, or none).", m.Retried.Load},
		{"relay.retry_copies", "Retries that moved to a copy in the retry queue or on the ladder; the rest waited in memory.", m.RetryCopies.Load},
		{"relay.ack_frames", "Ack frames sent; one acks a run of consecutive deliveries.", m.AckFrames.Load},
		{"relay.dead_lettered", "Messages sent to the dead-letter queue.", m.DeadLettered.Load},
		{"relay.hops", "Messages re-published to a delay tier because not yet due.", m.Hops.Load},
		{"relay.redelivered", "Deliveries the broker marked as redelivered (possible duplicates).", m.Redelivered.Load},
		{"relay.reconnects", "Broker reconnections.", m.Reconnects.Load},
	}
	var obs []metric.Observable
	cs := make([]metric.Int64ObservableCounter, len(counters))
	for i, c := range counters {
		var err error
		if cs[i], err = meter.Int64ObservableCounter(c.name, metric.WithDescription(c.desc)); err != nil {
			return err
		}
		obs = append(obs, cs[i])
	}
	refusals, err := meter.Int64ObservableCounter("relay.target_refusals",
		metric.WithDescription("Deliveries the target refused with 401, 403, 404, 405 or 415 (a configuration problem; retried)."))
	if err != nil {
		return err
	}
	gauges := []struct {
		name, desc string
		get        func() int64
	}{
		{"relay.in_flight", "Messages taken from the broker and not yet acked.", m.InFlight.Load},
		{"relay.held", "Messages waiting in memory until due or until their retry.", m.Held.Load},
		{"relay.connected", "1 while the relay is connected to the broker.", func() int64 {
			if m.Connected.Load() {
				return 1
			}
			return 0
		}},
	}
	gs := make([]metric.Int64ObservableGauge, len(gauges))
	for i, g := range gauges {
		if gs[i], err = meter.Int64ObservableGauge(g.name, metric.WithDescription(g.desc)); err != nil {
			return err
		}
		obs = append(obs, gs[i])
	}
	depth, err := meter.Int64ObservableGauge("relay.queue_depth",
		metric.WithDescription("Messages in the due, retry and dead-letter queues (queue=due|retry|dead), read every 5 s."))
	if err != nil {
		return err
	}
	obs = append(obs, refusals, depth)
	if m.lateness, err = meter.Float64Histogram("relay.lateness", metric.WithUnit("s"),
		metric.WithDescription("Delay between a message's due time and its first delivery attempt."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, c := range counters {
			o.ObserveInt64(cs[i], c.get())
		}
		for i, g := range gauges {
			o.ObserveInt64(gs[i], g.get())
		}
		for i, s := range refusalStatuses {
			o.ObserveInt64(refusals, m.refusals[i].Load(), metric.WithAttributes(attribute.Int("status", s)))
		}
		for i, q := range depthQueues {
			o.ObserveInt64(depth, m.depth[i].Load(), metric.WithAttributes(attribute.String("queue", q)))
		}
		return nil
	}, obs...)
	return err
}
