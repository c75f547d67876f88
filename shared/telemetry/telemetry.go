// Package telemetry sets up OpenTelemetry tracing for the functions and
// the relay, and carries W3C trace context across the broker: a trace that
// starts at CreateOrder continues through the delay message (traceparent
// header), the relay, the CloudEvent (traceparent extension) and
// HandleTimeout's calls, so one trace shows an order from creation to its
// end, the wait included.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	mexporter "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/metric"
	texporter "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/trace"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Exporters selectable with TRACE_EXPORTER.
const (
	ExportNone   = "none"   // spans are created (ids propagate) but not exported
	ExportStdout = "stdout" // JSON spans on stderr (local debugging)
	ExportGCP    = "gcp"    // Cloud Trace and Cloud Monitoring (production)
)

// Name is the instrumentation scope.
const Name = "github.com/ordertimeout/ordertimeout"

func init() {
	// Propagation works even before Setup, and in tests.
	otel.SetTextMapPropagator(propagation.TraceContext{})
}

// Setup installs the global tracer provider for exporter. The returned
// function flushes and stops it.
func Setup(exporter, project string) (func(context.Context) error, error) {
	var opts []sdktrace.TracerProviderOption
	switch exporter {
	case "", ExportNone:
	case ExportStdout:
		exp, err := stdouttrace.New(stdouttrace.WithWriter(io.Writer(os.Stderr)))
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case ExportGCP:
		exp, err := texporter.New(texporter.WithProjectID(project))
		if err != nil {
			return nil, fmt.Errorf("Cloud Trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	default:
		return nil, fmt.Errorf("trace exporter %q: want none, stdout or gcp", exporter)
	}
	tp := sdktrace.NewTracerProvider(append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))...)
	otel.SetTracerProvider(tp)
	if exporter != ExportGCP {
		return tp.Shutdown, nil
	}
	mexp, err := mexporter.New(mexporter.WithProjectID(project))
	if err != nil {
		return nil, fmt.Errorf("Cloud Monitoring exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(time.Minute))))
	otel.SetMeterProvider(mp)
	return func(ctx context.Context) error { return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx)) }, nil
}

// Tracer is the project's tracer (from the global provider).
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Inject returns the W3C traceparent of ctx's span, or "".
func Inject(ctx context.Context) string {
	c := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, c)
	return c["traceparent"]
}

// Extract returns ctx with the remote span context of a traceparent.
func Extract(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// TraceID returns ctx's trace id in hex, or "".
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
