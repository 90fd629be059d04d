package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/telemetry"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestTracedDecisionsAndApplies: traced, an applied revocation is a
// consumer span, the child of the publish its message's headers name, and
// a decision is a server span, the child of the request's traceparent, with
// its outcome and reason; the refusal is logged with its reason, request id,
// session and trace id, and the answer carries the request id.
func TestTracedDecisionsAndApplies(t *testing.T) {
	tp, exp := testenv.Tracing(t)
	w := newWorld(t, 5*time.Second)
	w.start()
	var logs bytes.Buffer
	w.gw.log = slog.New(slog.NewJSONHandler(&logs, nil))
	w.gw.tracer, w.gw.traced = telemetry.Tracer(tp), true
	w.feed.tracer, w.feed.traced, w.feed.name = w.gw.tracer, true, "gw-test"
	w.waitReady()

	g := newGrant()
	tok := w.is.sign(t, g)
	pctx, publish := tp.Tracer("test").Start(t.Context(), "publish", trace.WithSpanKind(trace.SpanKindProducer))
	h := nats.Header{}
	telemetry.Propagator.Inject(pctx, telemetry.NATSHeader(h))
	w.publishWith(revokeSession(g), h)
	publish.End()
	w.waitDenied(tok)

	var apply tracetest.SpanStub
	testenv.Eventually(t, 5*time.Second, func() bool {
		for _, sp := range exp.GetSpans() {
			if sp.Name == "apply revocations.v1.session" {
				apply = sp
				return true
			}
		}
		return false
	}, "no apply span")
	if apply.Parent.SpanID() != publish.SpanContext().SpanID() || apply.SpanKind != trace.SpanKindConsumer {
		t.Fatalf("apply span: parent %s, kind %s; want the publish %s", apply.Parent.SpanID(), apply.SpanKind, publish.SpanContext().SpanID())
	}

	exp.Reset()
	cctx, caller := tp.Tracer("test").Start(t.Context(), "client")
	req := httptest.NewRequestWithContext(cctx, "GET", "/v1/check", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	telemetry.Propagator.Inject(cctx, propagation.HeaderCarrier(req.Header))
	rec := httptest.NewRecorder()
	w.gw.Check(rec, req)
	caller.End()
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("X-Request-Id") == "" {
		t.Fatalf("check: %d, request id %q", rec.Code, rec.Header().Get("X-Request-Id"))
	}
	var decision tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.Name == "gateway check" {
			decision = sp
		}
	}
	attrs := map[string]string{}
	for _, a := range decision.Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	if decision.Parent.SpanID() != caller.SpanContext().SpanID() || attrs["gateway.outcome"] != "deny" || attrs["gateway.reason"] != reasonRevokedSession || attrs["session.id"] != g.sid {
		t.Fatalf("decision span %q: parent %s, attributes %v", decision.Name, decision.Parent.SpanID(), attrs)
	}
	var line map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && m["msg"] == "request refused" {
			line = m
		}
	}
	if line["reason"] != reasonRevokedSession || line["request_id"] != rec.Header().Get("X-Request-Id") || line["session_id"] != g.sid ||
		line["trace_id"] != caller.SpanContext().TraceID().String() {
		t.Fatalf("refusal log line %v", line)
	}
}

// TestRefusalLogsAreSampled: at most refusalsPerSecond lines a second; the
// first line after a full second tells how many went unlogged.
func TestRefusalLogsAreSampled(t *testing.T) {
	var s sampler
	t0 := time.Unix(1_800_000_000, 0)
	logged := 0
	for i := range 25 {
		if ok, skipped := s.allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			logged++
			if skipped != 0 {
				t.Fatalf("skipped %d within the first second", skipped)
			}
		}
	}
	if logged != refusalsPerSecond {
		t.Fatalf("%d of 25 logged in one second, want %d", logged, refusalsPerSecond)
	}
	if ok, skipped := s.allow(t0.Add(time.Second)); !ok || skipped != 25-refusalsPerSecond {
		t.Fatalf("next second: %v, skipped %d, want %d", ok, skipped, 25-refusalsPerSecond)
	}
}

// TestTheProxyForwardsTheRequestID: the upstream receives the request id
// the answer carries (the caller's when sane, else a new one).
func TestTheProxyForwardsTheRequestID(t *testing.T) {
	w := newWorld(t, 5*time.Second)
	w.start()
	w.waitReady()
	seen := make(chan string, 2)
	up := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { seen <- r.Header.Get("X-Request-Id") }))
	defer up.Close()
	u, _ := urlParse(up.URL)
	proxy := w.gw.Proxy(u, http.DefaultTransport, testLog())
	tok := w.is.sign(t, newGrant())
	for _, sent := range []string{"caller-7", ""} {
		req := httptest.NewRequest("GET", "/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if sent != "" {
			req.Header.Set("X-Request-Id", sent)
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, req)
		got, answered := <-seen, rec.Header().Get("X-Request-Id")
		if rec.Code != 200 || got == "" || got != answered || sent != "" && got != sent {
			t.Fatalf("sent %q: %d, upstream saw %q, answer says %q", sent, rec.Code, got, answered)
		}
	}
}
