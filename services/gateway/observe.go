package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/telemetry"
)

// decideRequest decides on r. Its request id (a sane X-Request-Id it came
// with, or a new one) goes on the answer and, through the proxy, to the
// upstream. Traced, the decision is a server span, the child of the
// request's traceparent, whose context the upstream receives. A refusal is
// logged (sampled: see sampler).
func (g *Gateway) decideRequest(w http.ResponseWriter, r *http.Request, name string) (Decision, *http.Request) {
	start := time.Now()
	id := httpx.EnsureRequestID(w, r)
	ctx := r.Context()
	var span trace.Span
	if g.traced {
		ctx = telemetry.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = g.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("request.id", id)))
		r = r.WithContext(ctx)
		telemetry.Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	}
	d := g.Decide(ctx, r.Header.Get("Authorization"), g.now())
	g.metrics.latency.Observe(time.Since(start).Seconds())
	if span != nil {
		span.SetAttributes(attribute.String("gateway.outcome", d.outcome()))
		if d.Code != "" {
			span.SetAttributes(attribute.String("gateway.reason", d.Code))
		}
		if d.Identity != nil {
			span.SetAttributes(attribute.String("session.id", d.Identity.Session), attribute.String("enduser.id", d.Identity.Subject))
		}
		span.End()
	}
	if d.Outcome != Allow {
		g.logRefusal(ctx, r, d, id)
	}
	return d, r
}

func (d Decision) outcome() string {
	switch d.Outcome {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "unavailable"
}

// logRefusal logs a refused request with its reason, unless more than
// refusalsPerSecond were logged this second; the first line after such a
// second says how many went unlogged. 503s (failing closed) log at Warn.
func (g *Gateway) logRefusal(ctx context.Context, r *http.Request, d Decision, requestID string) {
	ok, skipped := g.refusals.allow(time.Now())
	if !ok {
		return
	}
	level := slog.LevelInfo
	if d.Outcome == Unavailable {
		level = slog.LevelWarn
	}
	if !g.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("reason", d.Code), slog.String("detail", d.Reason), slog.String("request_id", requestID),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("peer", r.RemoteAddr)}
	if d.Identity != nil {
		attrs = append(attrs, slog.String("user_id", d.Identity.Subject), slog.String("session_id", d.Identity.Session))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	if skipped > 0 {
		attrs = append(attrs, slog.Int("unlogged_before", skipped))
	}
	g.log.LogAttrs(ctx, level, "request refused", attrs...)
}

// refusalsPerSecond bounds the refusal log: a client replaying a revoked
// token in a loop must not flood it (gateway_decisions_total counts them
// all).
const refusalsPerSecond = 10

// sampler lets at most refusalsPerSecond events through each second and
// counts the others, to tell with the next one let through.
type sampler struct {
	mu      sync.Mutex
	second  int64
	n       int
	skipped int
}

func (s *sampler) allow(now time.Time) (ok bool, skipped int) {
	sec := now.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec != s.second {
		s.second, s.n = sec, 0
	}
	if s.n >= refusalsPerSecond {
		s.skipped++
		return false, 0
	}
	s.n++
	skipped, s.skipped = s.skipped, 0
	return true, skipped
}
