package relay

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds of the lateness histogram (seconds).
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics are the relay's counters; all fields are safe for concurrent use.
type Metrics struct {
	Delivered    atomic.Int64 // acked after a 2xx
	Retried      atomic.Int64 // re-published for a later attempt after a 5xx or timeout
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

	lateCount   atomic.Int64
	lateSumUS   atomic.Int64
	lateBuckets [14]atomic.Int64 // len(latencyBuckets)+1
}

// Refused counts a delivery the target refused with a configuration
// status (see refusalStatuses).
func (m *Metrics) Refused(status int) {
	for i, s := range refusalStatuses {
		if s == status {
			m.refusals[i].Add(1)
		}
	}
}

// Refusals returns how many deliveries the target refused with status.
func (m *Metrics) Refusals(status int) int64 {
	for i, s := range refusalStatuses {
		if s == status {
			return m.refusals[i].Load()
		}
	}
	return 0
}

// ObserveLateness records how late a first delivery attempt was.
func (m *Metrics) ObserveLateness(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	m.lateBuckets[i].Add(1)
	m.lateCount.Add(1)
	m.lateSumUS.Add(d.Microseconds())
}

// WritePrometheus writes the metrics in Prometheus text format.
func (m *Metrics) WritePrometheus(w io.Writer) {
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter("relay_delivered_total", "Messages acked after a 2xx from the target.", m.Delivered.Load())
	counter("relay_retried_total", "Deliveries re-scheduled after a failure (any answer but 2xx, 400 and 422, or none).", m.Retried.Load())
	counter("relay_retry_copies_total", "Retries that moved to a copy in the retry queue or on the ladder; the rest waited in memory.", m.RetryCopies.Load())
	counter("relay_ack_frames_total", "Ack frames sent; one acks a run of consecutive deliveries.", m.AckFrames.Load())
	counter("relay_dead_lettered_total", "Messages sent to the dead-letter queue.", m.DeadLettered.Load())
	counter("relay_hops_total", "Messages re-published to a delay tier because not yet due.", m.Hops.Load())
	counter("relay_redelivered_total", "Deliveries the broker marked as redelivered (possible duplicates).", m.Redelivered.Load())
	counter("relay_reconnects_total", "Broker reconnections.", m.Reconnects.Load())
	fmt.Fprintf(w, "# HELP relay_target_refusals_total Deliveries the target refused with 401, 403, 404, 405 or 415 (a configuration problem; retried).\n# TYPE relay_target_refusals_total counter\n")
	for i, s := range refusalStatuses {
		fmt.Fprintf(w, "relay_target_refusals_total{status=\"%d\"} %d\n", s, m.refusals[i].Load())
	}
	gauge("relay_in_flight", "Messages taken from the broker and not yet acked.", m.InFlight.Load())
	gauge("relay_held", "Messages waiting in memory until due or until their retry.", m.Held.Load())
	up := int64(0)
	if m.Connected.Load() {
		up = 1
	}
	gauge("relay_connected", "1 while the relay is connected to the broker.", up)
	fmt.Fprintf(w, "# HELP relay_lateness_seconds Delay between a message's due time and its first delivery attempt.\n# TYPE relay_lateness_seconds histogram\n")
	var cum int64
	for i, b := range latencyBuckets {
		cum += m.lateBuckets[i].Load()
		fmt.Fprintf(w, "relay_lateness_seconds_bucket{le=\"%g\"} %d\n", b, cum)
	}
	cum += m.lateBuckets[len(latencyBuckets)].Load()
	fmt.Fprintf(w, "relay_lateness_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	fmt.Fprintf(w, "relay_lateness_seconds_sum %g\nrelay_lateness_seconds_count %d\n", float64(m.lateSumUS.Load())/1e6, m.lateCount.Load())
}
