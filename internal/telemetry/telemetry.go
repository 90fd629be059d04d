// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// variables, and carries trace context across the places a revocation
// travels that are not HTTP: the outbox row and the NATS message.
//
// Tracing is off unless configured: OTEL_TRACES_EXPORTER=otlp, or an OTLP
// endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
// turns it on; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keeps it
// off. The exporter speaks OTLP over HTTP (http/protobuf, the default) or
// gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc) and reads the rest of its
// configuration (headers, timeouts, TLS) from the same variables, as does
// the sampler (OTEL_TRACES_SAMPLER, default parentbased_always_on) and the
// resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES). Off, the tracer
// is OpenTelemetry's no-op one, and a traceparent that came in still goes
// on (a span that records nothing carries its parent's context).
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator is how trace context travels: W3C traceparent and tracestate,
// in HTTP headers, NATS message headers and the outbox's traceparent
// column.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Setup returns the tracer provider the standard variables (read through
// getenv) ask for, and how to flush and stop it. Off, it is the no-op
// provider and stopping does nothing.
func Setup(ctx context.Context, getenv func(string) string, service, version string) (trace.TracerProvider, func(context.Context) error, error) {
	off := noop.NewTracerProvider()
	nothing := func(context.Context) error { return nil }
	on, err := enabled(getenv)
	if err != nil || !on {
		return off, nothing, err
	}
	for _, k := range endpointVars {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			if u, perr := url.Parse(v); perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return off, nothing, fmt.Errorf("%s: %q is not an http(s) URL (e.g. http://otel-collector:4318)", k, v)
			}
		}
	}
	var exp *otlptrace.Exporter
	switch p := protocol(getenv); p {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return off, nothing, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not grpc or http/protobuf (http/json is not supported)", p)
	}
	if err != nil {
		return off, nothing, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx, resource.WithFromEnv(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)), resource.WithHost())
	if err != nil && res == nil {
		return off, nothing, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// endpointVars name the OTLP endpoint; either turns tracing on.
var endpointVars = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

// enabled reads whether tracing is configured.
func enabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch e := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); e {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
		return slices.ContainsFunc(endpointVars, func(k string) bool { return getenv(k) != "" }), nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported (otlp or none)", e)
	}
}

func protocol(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

// Traceparent is the W3C traceparent of the span in ctx ("" for none): what
// an outbox row keeps of the request that wrote it.
func Traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	Propagator.Inject(ctx, c)
	return c["traceparent"]
}

// WithTraceparent is ctx with the remote span context of a traceparent
// (ctx unchanged for "" or one that does not parse).
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// Records reports whether tp makes spans that record (not nil, not the
// no-op provider): instrumentation on a hot path makes no span at all
// otherwise, not even a no-op one.
func Records(tp trace.TracerProvider) bool {
	if tp == nil {
		return false
	}
	_, off := tp.(noop.TracerProvider)
	return !off
}

// Tracer is tp's tracer for the project's instrumentation (tp nil: the
// no-op one).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer("github.com/sessionguard/revoke")
}

// Shutdown flushes the spans still buffered and stops the provider (stop,
// from Setup), for at most five seconds; a failure is logged.
func Shutdown(stop func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("traces not flushed", "error", err.Error())
	}
}

// NATSHeader carries trace context in a NATS message's headers under the
// W3C names as written (traceparent, tracestate): NATS headers are
// case-sensitive, and a consumer in another language looks for those.
// Reading also accepts the canonical HTTP form (Traceparent).
type NATSHeader nats.Header

// Get implements propagation.TextMapCarrier.
func (h NATSHeader) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	if v := h[textproto.CanonicalMIMEHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set implements propagation.TextMapCarrier.
func (h NATSHeader) Set(key, value string) { h[key] = []string{value} }

// Keys implements propagation.TextMapCarrier.
func (h NATSHeader) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
