// Package gateway is the edge auth gateway: it verifies access tokens
// against the issuer's JWKS, refuses revoked ones from an exact in-memory
// blocklist fed by the REVOCATIONS stream, and fails closed when it cannot
// confirm that the blocklist is current. It serves as a reverse proxy, as a
// forward-auth endpoint, and as Go middleware.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/tokens"
)

// Gateway decides on requests.
type Gateway struct {
	verifier *Verifier
	bl       *Blocklist
	feed     *Feed
	activity *Activity // nil: no activity reports
	reporter *Reporter // nil: no applied reports (a gateway built with New)
	metrics  *Metrics
	log      *slog.Logger
	close    func()
	now      func() time.Time
	// tracer makes each decision a span when traced (Config.Tracer).
	tracer   trace.Tracer
	traced   bool
	refusals sampler // refusal log lines, at most refusalsPerSecond
}

// ID is the gateway's id in its applied reports ("" without reports).
func (g *Gateway) ID() string {
	if g.reporter == nil {
		return ""
	}
	return g.reporter.ID()
}

// Close stops the background work that Start began.
func (g *Gateway) Close() {
	if g.close != nil {
		g.close()
	}
}

// New wires a gateway. activity may be nil.
func New(verifier *Verifier, bl *Blocklist, feed *Feed, activity *Activity, metrics *Metrics, log *slog.Logger) *Gateway {
	return &Gateway{verifier: verifier, bl: bl, feed: feed, activity: activity, metrics: metrics, log: log, now: time.Now}
}

// Outcome of a decision.
type Outcome int

// Outcomes.
const (
	Allow       Outcome = iota
	Deny                // 401
	Unavailable         // 503: the blocklist is not known to be current
)

// Decision is the answer for one request.
type Decision struct {
	Outcome  Outcome
	Identity *Identity
	// Reason is the error_description of a denial.
	Reason string
	// Code is the denial's reason as gateway_decisions_total names it
	// (expired, revoked_session, ...), or reasonStale for a 503.
	Code string
}

// Headers set on requests that reach the upstream.
const (
	HeaderUser    = "X-Auth-User"
	HeaderOrg     = "X-Auth-Org"
	HeaderSession = "X-Auth-Session"
	HeaderRole    = "X-Auth-Role"
)

// staleAfter is how long past its last confirmation a gateway that still
// decides reports itself stale: confirmations normally come every 200 ms.
const staleAfter = 2 * time.Second

// failingClosed reports whether the gateway refuses every request (503):
// its blocklist is not known to be current, or it has no signing keys.
func (g *Gateway) failingClosed() bool {
	return !g.feed.Current() || g.verifier.keys.Current() == nil
}

// State is what the gateway reports of itself: failing_closed while it
// answers 503, stale while its last confirmation is overdue, else current.
func (g *Gateway) State() string {
	switch {
	case g.failingClosed():
		return events.GatewayFailingClosed
	case g.feed.Staleness() > staleAfter:
		return events.GatewayStale
	}
	return events.GatewayCurrent
}

// Decide checks the bearer token of an Authorization header value.
func (g *Gateway) Decide(ctx context.Context, authorization string, now time.Time) Decision {
	if g.failingClosed() {
		g.metrics.stale.Inc()
		return Decision{Outcome: Unavailable, Reason: "revocation list not current", Code: reasonStale}
	}
	raw, ok := bearer(authorization)
	if !ok {
		g.metrics.denied[reasonMissing].Inc()
		return Decision{Outcome: Deny, Reason: "missing bearer token", Code: reasonMissing}
	}
	id, err := g.verifier.Verify(ctx, raw, now)
	if err != nil {
		code := invalidReason(err)
		g.metrics.denied[code].Inc()
		return Decision{Outcome: Deny, Reason: describe(err), Code: code}
	}
	ns := now.UnixNano()
	if revoked, code := g.bl.Revoked(id.jti, id.sid, id.sub, id.iat, ns); revoked {
		g.metrics.denied[code].Inc()
		return Decision{Outcome: Deny, Reason: revokedDetail[code], Identity: id, Code: code}
	}
	if g.bl.RuleRevoked(id.org, id.Role, id.authTime, ns) {
		g.metrics.denied[reasonRevokedRule].Inc()
		return Decision{Outcome: Deny, Reason: revokedDetail[reasonRevokedRule], Identity: id, Code: reasonRevokedRule}
	}
	if g.activity != nil {
		g.activity.Seen(id, ns)
	}
	g.metrics.allowed.Inc()
	return Decision{Outcome: Allow, Identity: id}
}

func bearer(h string) (string, bool) {
	if len(h) < 8 || (h[:7] != "Bearer " && h[:7] != "bearer " && h[:7] != "BEARER ") {
		return "", false
	}
	return h[7:], true
}

// invalidReason is the metrics' reason for a token the verifier refused.
func invalidReason(err error) string {
	switch {
	case errors.Is(err, errNoToken):
		return reasonMissing
	case errors.Is(err, tokens.ErrExpired):
		return reasonExpired
	case errors.Is(err, tokens.ErrNotYetValid):
		return reasonNotYetValid
	case errors.Is(err, tokens.ErrBadSignature):
		return reasonBadSignature
	case errors.Is(err, tokens.ErrUnknownKey):
		return reasonUnknownKey
	case errors.Is(err, tokens.ErrWrongIssuer):
		return reasonWrongIssuer
	case errors.Is(err, tokens.ErrWrongAudience):
		return reasonWrongAudience
	}
	return reasonMalformed
}

// revokedDetail is the error_description of a revoked token, by the
// metrics' reason the blocklist names.
var revokedDetail = map[string]string{reasonRevokedToken: "token revoked", reasonRevokedSession: "session revoked",
	reasonRevokedUser: "user revoked", reasonRevokedRule: "org rule"}

// describe turns a verification error into a short, quotable description.
func describe(err error) string {
	s := err.Error()
	const prefix = "invalid token: "
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		s = s[len(prefix):]
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < 120; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b = append(b, c)
		}
	}
	return string(b)
}

// deny writes the 401 or 503 of a decision.
func deny(w http.ResponseWriter, d Decision) {
	if d.Outcome == Unavailable {
		w.Header().Set("Retry-After", "1")
		httpx.WriteProblem(w, http.StatusServiceUnavailable, "unavailable", "the gateway cannot confirm that its revocation list is current")
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+d.Reason+`"`)
	httpx.WriteProblem(w, http.StatusUnauthorized, "unauthorized", d.Reason)
}

// setIdentity replaces any X-Auth-* headers with the identity's.
func setIdentity(h http.Header, id *Identity) {
	h[HeaderUser] = []string{id.Subject}
	h[HeaderOrg] = []string{id.Org}
	h[HeaderSession] = []string{id.Session}
	h[HeaderRole] = []string{id.Role}
}

// stripIdentity removes every header that an upstream could read as one of
// the X-Auth-* headers: any case, and with "_" for "-" (WSGI, Rack and CGI
// servers map both to the same HTTP_X_AUTH_* variable).
func stripIdentity(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
}

var identityHeaders = [...]string{HeaderUser, HeaderOrg, HeaderSession, HeaderRole}

// isIdentityHeader compares k with the identity headers ignoring case and
// reading "_" as "-".
func isIdentityHeader(k string) bool {
	k = strings.ReplaceAll(k, "_", "-") // k itself when it has no "_"
	for _, id := range identityHeaders {
		if strings.EqualFold(k, id) {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// IdentityFrom returns the identity the middleware put in ctx.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(*Identity)
	return id, ok
}

// Middleware lets only requests with a valid, unrevoked token through, with
// the X-Auth-* headers set (client-sent ones removed) and the identity in
// the request context.
func (g *Gateway) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, r := g.decideRequest(w, r, "gateway proxy")
		if d.Outcome != Allow {
			deny(w, d)
			return
		}
		stripIdentity(r.Header)
		setIdentity(r.Header, d.Identity)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, d.Identity)))
	})
}

// Check is the forward-auth endpoint (NGINX auth_request, Traefik
// ForwardAuth, Envoy ext_authz over HTTP): 200 with the X-Auth-* headers, or
// 401, or 503 while failing closed.
func (g *Gateway) Check(w http.ResponseWriter, r *http.Request) {
	d, _ := g.decideRequest(w, r, "gateway check")
	if d.Outcome != Allow {
		deny(w, d)
		return
	}
	setIdentity(w.Header(), d.Identity)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// Healthz answers 200 while the process runs.
func (g *Gateway) Healthz(w http.ResponseWriter, _ *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readyz answers 200 once the replay is done and while the blocklist is
// confirmed current; 503 otherwise.
func (g *Gateway) Readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case !g.feed.Replayed():
		httpx.WriteProblem(w, http.StatusServiceUnavailable, "not-ready", "replaying the revocation stream")
	case g.verifier.keys.Current() == nil:
		httpx.WriteProblem(w, http.StatusServiceUnavailable, "not-ready", "signing keys (JWKS) not loaded yet")
	case !g.feed.Current():
		httpx.WriteProblem(w, http.StatusServiceUnavailable, "not-ready", "revocation list stale for "+strconv.FormatFloat(g.feed.Staleness().Seconds(), 'f', 1, 64)+"s")
	default:
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "blocklist_entries": g.bl.Len()})
	}
}
