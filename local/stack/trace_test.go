package stack_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ordertimeout/ordertimeout/local/stack"
)

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.AsString()
		}
	}
	return ""
}

// One trace shows an order from creation to cancellation, across the wait:
// CreateOrder → the timer message → the relay → the CloudEvent →
// HandleTimeout → its calls to Pay and DeductStock.
func TestOneTraceFromCreateToCancel(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{
		"items": []map[string]any{{"itemId": "i1", "quantity": 1}}, "paymentTimeoutSeconds": 1,
	}, append(s.Bearer("alice"), "traceparent", caller)...)
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var o struct{ OrderID string }
	_ = r.JSON(&o)
	waitStatus(t, s, "alice", o.OrderID, "CANCELLED", 15*time.Second)
	time.Sleep(200 * time.Millisecond) // let the last spans end

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	var names []string
	var decided bool
	for _, sp := range spans.Ended() {
		if sp.SpanContext().TraceID().String() != traceID {
			continue
		}
		names = append(names, sp.Name())
		if strings.HasPrefix(sp.Name(), "HandleTimeout orders.timeout.due.v1") && attr(sp, "order_id") == o.OrderID && attr(sp, "outcome") == "cancelled" {
			decided = true
		}
	}
	joined := strings.Join(names, "\n")
	for _, want := range []string{
		"CreateOrder POST /",
		"DeductStock POST /",
		"ClearCart POST /",
		"relay.deliver orders.timeout.due.v1",
		"Pay POST /close",
		"DeductStock POST /restore",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("trace %s has no span %q; it has:\n%s", traceID, want, joined)
		}
	}
	if !decided {
		t.Errorf("the cancelling HandleTimeout span of %s is not in the caller's trace; spans:\n%s", o.OrderID, joined)
	}
	// The metrics moved.
	if s.Relay.Metrics.Delivered.Load() == 0 {
		t.Error("relay_delivered_total did not move")
	}
	var rm metricdata.ResourceMetrics
	if err := metrics.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					seen[m.Name] = seen[m.Name] || p.Value > 0
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					seen[m.Name] = seen[m.Name] || p.Count > 0
				}
			}
		}
	}
	for _, name := range []string{"orders.created", "orders.cancelled", "orders.timeout.lateness"} {
		if !seen[name] {
			t.Errorf("metric %s did not move (seen %v)", name, seen)
		}
	}
}
