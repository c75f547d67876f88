package relay

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RegisterOTel publishes the relay's counters as OpenTelemetry observable
// instruments on meter (exported to Cloud Monitoring in production); the
// same numbers are on /metrics in Prometheus text.
func (m *Metrics) RegisterOTel(meter metric.Meter) error {
	counters := []struct {
		name, desc string
		get        func() int64
	}{
		{"relay.delivered", "Messages acked after a 2xx from the target.", m.Delivered.Load},
		{"relay.retried", "Deliveries re-scheduled after a failure (any answer but 2xx, 400 and 422, or none).", m.Retried.Load},
		{"relay.retry_copies", "Retries that moved to a copy in the retry queue or on the ladder.", m.RetryCopies.Load},
		{"relay.ack_frames", "Ack frames sent; one acks a run of consecutive deliveries.", m.AckFrames.Load},
		{"relay.dead_lettered", "Messages sent to the dead-letter queue.", m.DeadLettered.Load},
		{"relay.hops", "Messages re-published to a delay tier because not yet due.", m.Hops.Load},
		{"relay.redelivered", "Deliveries the broker marked as redelivered.", m.Redelivered.Load},
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
	inflight, err := meter.Int64ObservableGauge("relay.in_flight", metric.WithDescription("Messages taken from the broker and not yet acked."))
	if err != nil {
		return err
	}
	held, err := meter.Int64ObservableGauge("relay.held", metric.WithDescription("Messages waiting in memory."))
	if err != nil {
		return err
	}
	refusals, err := meter.Int64ObservableCounter("relay.target_refusals",
		metric.WithDescription("Deliveries the target refused with 401, 403, 404, 405 or 415 (a configuration problem; retried)."))
	if err != nil {
		return err
	}
	obs = append(obs, inflight, held, refusals)
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, c := range counters {
			o.ObserveInt64(cs[i], c.get())
		}
		o.ObserveInt64(inflight, m.InFlight.Load())
		o.ObserveInt64(held, m.Held.Load())
		for i, s := range refusalStatuses {
			o.ObserveInt64(refusals, m.refusals[i].Load(), metric.WithAttributes(attribute.Int("status", s)))
		}
		return nil
	}, obs...)
	return err
}
