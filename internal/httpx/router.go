package httpx

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/go-chi/chi/v5"
)

// RouterOptions are what NewRouter needs beyond the log and the metrics.
type RouterOptions struct {
	// Tracer makes each request a span (nil: the no-op provider).
	Tracer trace.TracerProvider
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client in the access log.
	TrustedProxies []netip.Prefix
}

// NewRouter is a service's router: request ids, a trace span, panic
// recovery, access logs and metrics on every request, Cache-Control: no-store unless a
// handler says otherwise, and problem+json answers for unknown paths (404)
// and methods (405, with Allow). Faces mount their routes on it; a sub-
// router with pages of its own sets its own NotFound and MethodNotAllowed,
// and may use Allow.
func NewRouter(log *slog.Logger, metrics *Metrics, o RouterOptions) *chi.Mux {
	r := chi.NewRouter()
	r.Use(RequestIDMiddleware, Trace(o.Tracer), Recover(log), AccessLog(log, o.TrustedProxies), metrics.Middleware, noStore)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, http.StatusNotFound, "not-found", "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		Allow(w, r)
		WriteProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "method not allowed on this endpoint")
	})
	return r
}

// noStore marks every response uncacheable unless its handler sets
// Cache-Control itself: answers carry tokens and personal data.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// Allow sets the Allow header of a 405 (RFC 9110 section 15.5.6): the
// methods the router has a route for at the request's path.
func Allow(w http.ResponseWriter, r *http.Request) {
	rctx := chi.RouteContext(r.Context())
	if rctx == nil || rctx.Routes == nil {
		return
	}
	var allowed []string
	for _, m := range methods {
		if rctx.Routes.Match(chi.NewRouteContext(), m, r.URL.Path) {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
	}
}
