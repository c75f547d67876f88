// Package telemetry sets up OpenTelemetry tracing for the functions and
// the relay, and carries W3C trace context across the broker: a trace that
// starts at CreateOrder continues through the delay message (traceparent
// header), the relay, the CloudEvent (traceparent extension) and
// HandleTimeout's calls, so one trace shows an order from creation to its
// end, the wait included.
package telemetry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/detectors/gcp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/oauth"
)

// Exporters selectable with TRACE_EXPORTER.
const (
	ExportNone   = "none"   // spans are created (ids propagate) but not exported
	ExportStdout = "stdout" // JSON spans on stderr (local debugging)
	ExportGCP    = "gcp"    // Cloud Trace and Cloud Monitoring through the Telemetry (OTLP) API (production)
)

// TelemetryEndpoint is Google Cloud's Telemetry API, which takes OTLP
// traces (into Cloud Trace) and metrics (into Cloud Monitoring) as they
// are, with the instance's service account (Application Default
// Credentials). It replaces the Cloud Trace and Cloud Monitoring
// exporters of opentelemetry-operations-go, deprecated and archived
// after 2027-01-01.
const TelemetryEndpoint = "telemetry.googleapis.com:443"

// MetricPrefix keeps the metric names the alert policies and the
// dashboard read (workload.googleapis.com/<name>, as the old exporter
// wrote them); without it the Telemetry API files them under
// prometheus.googleapis.com/.
const MetricPrefix = "workload.googleapis.com/"

// Name is the instrumentation scope.
const Name = "github.com/ordertimeout/ordertimeout"

func init() {
	// Propagation works even before Setup, and in tests.
	otel.SetTextMapPropagator(propagation.TraceContext{})
}

var recording atomic.Bool

// Recording reports whether Setup installed an exporter, i.e. whether spans
// are recorded at all. A hot path may skip its span when they are not (the
// trace context it was handed still propagates).
func Recording() bool { return recording.Load() }

// SetTracerProvider installs tp as the global tracer provider; records
// says whether its spans go anywhere (Recording).
func SetTracerProvider(tp trace.TracerProvider, records bool) {
	otel.SetTracerProvider(tp)
	recording.Store(records)
}

// Setup installs the global tracer provider for exporter, and a meter
// provider with readers (and, with gcp, one exporting to Cloud Monitoring)
// when there is any. The returned function flushes and stops them.
func Setup(exporter, project string, readers ...sdkmetric.Reader) (func(context.Context) error, error) {
	var opts []sdktrace.TracerProviderOption
	sampler := sdktrace.ParentBased(sdktrace.AlwaysSample())
	var gcpOpts []grpc.DialOption
	var res *resource.Resource
	headers := map[string]string{}
	switch exporter {
	case "", ExportNone:
		// Nothing reads the spans: they get ids (which propagate and
		// correlate logs) but are not recorded, which costs far less.
		sampler = sdktrace.NeverSample()
	case ExportStdout:
		exp, err := stdouttrace.New(stdouttrace.WithWriter(io.Writer(os.Stderr)))
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case ExportGCP:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		creds, err := oauth.NewApplicationDefault(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry credentials: %w", err)
		}
		gcpOpts = []grpc.DialOption{grpc.WithPerRPCCredentials(creds)}
		attrs := []attribute.KeyValue{attribute.String("service.name", serviceName())}
		if project != "" { // else the detector's (the instance's own project)
			attrs = append(attrs, attribute.String("gcp.project_id", project))
			headers["x-goog-user-project"] = project
		}
		if res, err = resource.New(ctx, resource.WithDetectors(gcp.NewDetector()), resource.WithTelemetrySDK(), resource.WithFromEnv(),
			resource.WithAttributes(attrs...)); err != nil {
			return nil, fmt.Errorf("telemetry resource: %w", err)
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(TelemetryEndpoint), otlptracegrpc.WithDialOption(gcpOpts...),
			otlptracegrpc.WithHeaders(headers))
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	default:
		return nil, fmt.Errorf("trace exporter %q: want none, stdout or gcp", exporter)
	}
	var mopts []sdkmetric.Option
	if exporter == ExportGCP {
		mexp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(TelemetryEndpoint), otlpmetricgrpc.WithDialOption(gcpOpts...),
			otlpmetricgrpc.WithHeaders(headers))
		if err != nil {
			return nil, fmt.Errorf("OTLP metric exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(time.Minute))),
			sdkmetric.WithView(func(i sdkmetric.Instrument) (sdkmetric.Stream, bool) {
				return sdkmetric.Stream{Name: MetricPrefix + i.Name, Description: i.Description, Unit: i.Unit}, true
			}))
	}
	tp := sdktrace.NewTracerProvider(append(opts, sdktrace.WithSampler(sampler))...)
	SetTracerProvider(tp, len(opts) > 0)
	if len(readers) == 0 && len(mopts) == 0 {
		return tp.Shutdown, nil
	}
	for _, r := range readers {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	otel.SetMeterProvider(mp)
	return func(ctx context.Context) error { return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx)) }, nil
}

// serviceName is the function's or the relay's name on Cloud Run
// (K_SERVICE), for the spans' and metrics' resource.
func serviceName() string {
	if s := os.Getenv("K_SERVICE"); s != "" {
		return s
	}
	return "ordertimeout"
}

// Tracer is the project's tracer (from the global provider).
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// traceFlags are the flags version 00 defines: sampled and random.
const traceFlags = trace.FlagsSampled | trace.FlagsRandom

// Inject returns the W3C traceparent of ctx's span, or "". It writes what
// propagation.TraceContext writes (version 00, the defined flags), without
// its per-call map; the relay calls it for every message when spans are
// recorded.
func Inject(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & traceFlags)})
	return string(b[:])
}

// Extract returns ctx with the remote span context of a traceparent. A
// well-formed version-00 value is parsed here; anything else goes through
// propagation.TraceContext, which also ignores what it cannot parse.
func Extract(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	if tp := traceparent; len(tp) == 55 && tp[:3] == "00-" && tp[35] == '-' && tp[52] == '-' {
		tid, err1 := trace.TraceIDFromHex(tp[3:35])
		sid, err2 := trace.SpanIDFromHex(tp[36:52])
		var flags [1]byte
		_, err3 := hex.Decode(flags[:], []byte(tp[53:55]))
		if err1 == nil && err2 == nil && err3 == nil && flags[0] <= byte(traceFlags) && tp[53:55] == strings.ToLower(tp[53:55]) {
			return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]), Remote: true}))
		}
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
