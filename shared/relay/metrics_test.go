package relay

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// BenchmarkObserveLateness is what the one metrics path costs a delivery:
// one OpenTelemetry histogram record (the counters are atomics, read only
// when collected). Compare it with the relay's CPU per message in
// docs/benchmarks.md (20–40 µs).
func BenchmarkObserveLateness(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())
	var m Metrics
	if err := m.RegisterOTel(mp.Meter("bench")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveLateness(3 * time.Millisecond)
		}
	})
}
