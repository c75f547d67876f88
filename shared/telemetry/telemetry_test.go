package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Inject and Extract agree with propagation.TraceContext, value for value.
func TestTraceparentMatchesPropagator(t *testing.T) {
	prop := propagation.TraceContext{}
	viaProp := func(ctx context.Context) string {
		c := propagation.MapCarrier{}
		prop.Inject(ctx, c)
		return c["traceparent"]
	}
	for _, tp := range []string{
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03",        // sampled and random
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff",        // reserved flags: invalid
		"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",        // upper case: invalid
		"00-00000000000000000000000000000000-b7ad6b7169203331-01",        // zero trace id: invalid
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",        // zero span id: invalid
		"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",        // version ff: invalid
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future", // a later version may add fields
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
		"garbage",
	} {
		want := prop.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
		got := Extract(context.Background(), tp)
		if w, g := trace.SpanContextFromContext(want), trace.SpanContextFromContext(got); !w.Equal(g) {
			t.Errorf("Extract(%q) = %v, propagator %v", tp, g, w)
		}
		if w, g := viaProp(want), Inject(got); w != g {
			t.Errorf("Inject after %q = %q, propagator %q", tp, g, w)
		}
	}
	if Inject(context.Background()) != "" || Extract(context.Background(), "") != context.Background() {
		t.Error("no span context: want empty traceparent and the same context")
	}
}

func BenchmarkTraceparentRoundTrip(b *testing.B) {
	ctx := Extract(context.Background(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	b.ReportAllocs()
	for b.Loop() {
		_ = Inject(Extract(ctx, Inject(ctx)))
	}
}
