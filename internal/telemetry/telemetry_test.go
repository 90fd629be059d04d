package telemetry

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TestTracingIsOffUnlessConfigured: no OTEL_* variable, or one that turns
// it off, gives the no-op provider; an endpoint or OTEL_TRACES_EXPORTER=otlp
// turns it on; what is not supported is said at start.
func TestTracingIsOffUnlessConfigured(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		on   bool
		fail string
	}{
		{env: nil},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, fail: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, fail: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "notaurl"}, fail: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, fail: "OTEL_EXPORTER_OTLP_PROTOCOL"},
	} {
		tp, stop, err := Setup(context.Background(), func(k string) string { return tc.env[k] }, "test", "v0")
		switch {
		case tc.fail != "":
			if err == nil || !strings.Contains(err.Error(), tc.fail) {
				t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.fail)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case Records(tp) != tc.on:
			t.Errorf("%v: tracing on %v, want %v", tc.env, Records(tp), tc.on)
		}
		if tc.on {
			if _, ok := tp.(*sdktrace.TracerProvider); !ok {
				t.Errorf("%v: provider %T", tc.env, tp)
			}
		}
		_ = stop(context.Background())
	}
	if Records(nil) || Records(noop.NewTracerProvider()) {
		t.Fatal("nil or the no-op provider records")
	}
}

// TestTraceContextThroughARowAndAMessage: a span's context survives the
// outbox's traceparent column and a NATS message's headers, under the W3C
// name as written.
func TestTraceContextThroughARowAndAMessage(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "request")
	defer span.End()
	tpHeader := Traceparent(ctx)
	if !strings.HasPrefix(tpHeader, "00-"+span.SpanContext().TraceID().String()+"-"+span.SpanContext().SpanID().String()) {
		t.Fatalf("traceparent %q", tpHeader)
	}
	back := trace.SpanContextFromContext(WithTraceparent(context.Background(), tpHeader))
	if back.TraceID() != span.SpanContext().TraceID() || back.SpanID() != span.SpanContext().SpanID() || !back.IsRemote() {
		t.Fatalf("from the row: %v", back)
	}
	h := nats.Header{}
	Propagator.Inject(ctx, NATSHeader(h))
	if h.Get("traceparent") != tpHeader {
		t.Fatalf("headers %v", h)
	}
	canon := nats.Header{"Traceparent": []string{tpHeader}}
	if got := trace.SpanContextFromContext(Propagator.Extract(context.Background(), NATSHeader(canon))); got.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("canonical header not read: %v", got)
	}
	if Traceparent(context.Background()) != "" || WithTraceparent(context.Background(), "garbage") == nil {
		t.Fatal("no span should give no traceparent")
	}
	if trace.SpanContextFromContext(WithTraceparent(context.Background(), "garbage")).IsValid() {
		t.Fatal("a garbage traceparent parsed")
	}
}
