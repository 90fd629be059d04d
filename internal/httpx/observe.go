package httpx

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/telemetry"
)

// requestInfo is what a request's log line tells beyond its HTTP: who made
// it, set by the handler that authenticates it (Identify).
type requestInfo struct {
	user, session string
}

const requestInfoKey ctxKey = requestIDKey + 1

// Identify names the user and session a request was made by, for its log
// line; handlers call it once they have authenticated the request. Outside
// an AccessLog it does nothing.
func Identify(ctx context.Context, user, session string) {
	if ri, ok := ctx.Value(requestInfoKey).(*requestInfo); ok {
		ri.user, ri.session = user, session
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("enduser.id", user), attribute.String("session.id", session))
}

// route is the chi route pattern the request matched ("unmatched" when
// none did).
func route(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		return rc.RoutePattern()
	}
	return "unmatched"
}

// AccessLog logs one line per request: its route pattern (and path), status,
// duration, client IP (through trusted proxies), the user and session that
// made it (Identify), its request id and its trace id. Requests that answer
// 5xx log at Error, 4xx at Info, the rest at Info as well but for the
// health probes, which log at Debug.
func AccessLog(log *slog.Logger, trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := recorder(w)
			ri := &requestInfo{}
			r = r.WithContext(context.WithValue(r.Context(), requestInfoKey, ri))
			next.ServeHTTP(rec, r)
			status, level, rt := rec.Code(), slog.LevelInfo, route(r)
			switch {
			case status >= 500:
				level = slog.LevelError
			case rt == "/healthz" || rt == "/readyz" || rt == "/metrics":
				level = slog.LevelDebug
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			attrs := []slog.Attr{
				slog.String("request_id", RequestID(r.Context())),
				slog.String("method", r.Method),
				slog.String("route", rt),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			}
			if ip := ClientIP(r, trusted); ip.IsValid() {
				attrs = append(attrs, slog.String("client_ip", ip.String()))
			}
			if ri.user != "" {
				attrs = append(attrs, slog.String("user_id", ri.user), slog.String("session_id", ri.session))
			}
			if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
				attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
			}
			log.LogAttrs(r.Context(), level, "request", attrs...)
		})
	}
}

// Trace makes every request a server span of tp (named by its method and
// route pattern once routed), the child of the W3C traceparent it came
// with. Untraced (tp nil or the no-op provider) it makes no span and only
// carries an incoming traceparent on (the access log's trace_id).
func Trace(tp trace.TracerProvider) func(http.Handler) http.Handler {
	if !telemetry.Records(tp) {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, ok := r.Header["Traceparent"]; !ok {
					next.ServeHTTP(w, r)
					return
				}
				next.ServeHTTP(w, r.WithContext(telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))))
			})
		}
	}
	tracer := telemetry.Tracer(tp)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path)))
			defer span.End()
			rec := recorder(w)
			next.ServeHTTP(rec, r.WithContext(ctx))
			status, rt := rec.Code(), route(r) // chi's route context is in r's context, filled in by the routing
			span.SetName(r.Method + " " + rt)
			span.SetAttributes(semconv.HTTPRoute(rt), semconv.HTTPResponseStatusCode(status),
				attribute.String("request.id", RequestID(ctx)))
			if status >= 500 {
				span.SetStatus(codes.Error, strconv.Itoa(status))
			}
		})
	}
}
