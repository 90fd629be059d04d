package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/telemetry"
	"github.com/sessionguard/revoke/internal/testenv"
)

// router is NewRouter with a route that identifies its caller and one that
// fails, logging JSON into buf.
func router(t *testing.T, buf *bytes.Buffer, tp trace.TracerProvider) http.Handler {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	trusted, _ := ParsePrefixes("10.0.0.0/8")
	r := NewRouter(log, NewMetrics(prometheus.NewRegistry(), "test"), RouterOptions{Tracer: tp, TrustedProxies: trusted})
	r.Get("/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		Identify(r.Context(), "user-1", "session-1")
		w.WriteHeader(http.StatusNoContent)
	})
	r.Get("/v1/broken", func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, http.StatusInternalServerError, "internal", "internal error")
	})
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	return r
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

// TestTheRequestLogLine: one line per request with its route pattern,
// status, duration, client IP (through a trusted proxy), the user and
// session that made it, its request id and its trace id; a 5xx logs at
// ERROR, a health probe at DEBUG.
func TestTheRequestLogLine(t *testing.T) {
	var buf bytes.Buffer
	h := router(t, &buf, nil)
	req := httptest.NewRequest("GET", "/v1/things/42", nil)
	req.RemoteAddr = "10.1.2.3:5555"
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 10.9.9.9")
	req.Header.Set("X-Request-Id", "req-1")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	lines := logLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("%d lines: %v", len(lines), lines)
	}
	l := lines[0]
	want := map[string]any{"msg": "request", "level": "INFO", "route": "/v1/things/{id}", "path": "/v1/things/42", "status": float64(204),
		"client_ip": "203.0.113.9", "user_id": "user-1", "session_id": "session-1", "request_id": "req-1",
		"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "method": "GET"}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, l[k], v, l)
		}
	}
	if _, ok := l["duration_ms"].(float64); !ok {
		t.Errorf("no duration_ms: %v", l)
	}

	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/broken", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	lines = logLines(t, &buf)
	if len(lines) != 2 || lines[0]["level"] != "ERROR" || lines[0]["status"] != float64(500) || lines[1]["level"] != "DEBUG" {
		t.Fatalf("lines %v", lines)
	}
	if _, ok := lines[0]["user_id"]; ok {
		t.Errorf("an unauthenticated request names a user: %v", lines[0])
	}
}

// TestEveryRequestIsASpan: the span is the child of the traceparent the
// request came with, named by the route pattern, with its status, and an
// error for a 5xx.
func TestEveryRequestIsASpan(t *testing.T) {
	tp, exp := testenv.Tracing(t)
	var buf bytes.Buffer
	h := router(t, &buf, tp)
	parent, caller := tp.Tracer("test").Start(context.Background(), "caller")
	req := httptest.NewRequest("GET", "/v1/things/42", nil)
	telemetry.Propagator.Inject(parent, propagation.HeaderCarrier(req.Header))
	h.ServeHTTP(httptest.NewRecorder(), req)
	caller.End()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/broken", nil))

	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	get, broken := spans[0], spans[2]
	if get.Name != "GET /v1/things/{id}" || get.SpanKind != trace.SpanKindServer || get.Parent.SpanID() != caller.SpanContext().SpanID() ||
		get.SpanContext.TraceID() != caller.SpanContext().TraceID() {
		t.Fatalf("span %s (%s), parent %s", get.Name, get.SpanKind, get.Parent.SpanID())
	}
	attrs := map[string]string{}
	for _, a := range get.Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["http.route"] != "/v1/things/{id}" || attrs["http.response.status_code"] != "204" || attrs["enduser.id"] != "user-1" {
		t.Fatalf("attributes %v", attrs)
	}
	if broken.Name != "GET /v1/broken" || broken.Status.Code != codes.Error || broken.Parent.IsValid() {
		t.Fatalf("the 5xx span: %s %v, parent %v", broken.Name, broken.Status, broken.Parent.IsValid())
	}
}

// TestLocalURL: the healthcheck asks a listen address from the same host.
func TestLocalURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080": "http://127.0.0.1:8080/readyz", "0.0.0.0:9091": "http://127.0.0.1:9091/readyz",
		"[::]:9091": "http://127.0.0.1:9091/readyz", "10.0.0.5:8080": "http://10.0.0.5:8080/readyz",
	} {
		if got := LocalURL(addr, "/readyz"); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

func TestProbe(t *testing.T) {
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
	defer srv.Close()
	if err := Probe(t.Context(), srv.URL); err != nil {
		t.Fatal(err)
	}
	code = http.StatusServiceUnavailable
	if err := Probe(t.Context(), srv.URL); err == nil {
		t.Fatal("a 503 passes the healthcheck")
	}
	srv.Close()
	if err := Probe(t.Context(), srv.URL); err == nil {
		t.Fatal("nothing listening passes the healthcheck")
	}
}
