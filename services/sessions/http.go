package sessions

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionguard/revoke/internal/httpx"
)

// Handler serves the session API.
type Handler struct {
	svc      *Service
	log      *slog.Logger
	metrics  *Metrics
	gatherer prometheus.Gatherer
	trusted  []netip.Prefix
	ready    func(context.Context) error
	openapi  []byte
	portal   *portal
}

// NewHandler wires the HTTP layer. trusted lists the reverse proxies whose
// X-Forwarded-For is believed; ready backs /readyz; opts configure the
// portal (WithPortal).
func NewHandler(svc *Service, log *slog.Logger, metrics *Metrics, gatherer prometheus.Gatherer, trusted []netip.Prefix, ready func(context.Context) error, opts ...HandlerOption) *Handler {
	return &Handler{svc: svc, log: log, metrics: metrics, gatherer: gatherer, trusted: trusted, ready: ready, openapi: OpenAPI, portal: newPortal(opts)}
}

type ctxKey int

const principalKey ctxKey = iota

func principal(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey).(Principal)
	return p
}

func (h *Handler) meta(r *http.Request) ClientMeta {
	return ClientMeta{IP: httpx.ClientIP(r, h.trusted), UserAgent: r.UserAgent()}
}

// writeError is the one place where errors become HTTP responses. Internal
// detail is logged, never sent.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var rl *RateLimitedError
	detail := func(sentinel error) string {
		return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
	}
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int((rl.RetryAfter+time.Second-1)/time.Second)))
		httpx.WriteProblem(w, http.StatusTooManyRequests, "rate-limited", "too many failed login attempts; try again later")
	case errors.Is(err, httpx.ErrBadRequest):
		httpx.WriteProblem(w, http.StatusBadRequest, "invalid-request", detail(httpx.ErrBadRequest))
	case errors.Is(err, ErrInvalid):
		httpx.WriteProblem(w, http.StatusBadRequest, "invalid-request", detail(ErrInvalid))
	case errors.Is(err, ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		httpx.WriteProblem(w, http.StatusUnauthorized, "unauthorized", detail(ErrUnauthorized))
	case errors.Is(err, ErrForbidden):
		httpx.WriteProblem(w, http.StatusForbidden, "forbidden", detail(ErrForbidden))
	case errors.Is(err, ErrNotFound):
		httpx.WriteProblem(w, http.StatusNotFound, "not-found", detail(ErrNotFound))
	case errors.Is(err, ErrConflict):
		httpx.WriteProblem(w, http.StatusConflict, "conflict", detail(ErrConflict))
	case errors.Is(err, ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		httpx.WriteProblem(w, http.StatusServiceUnavailable, "overloaded", "too many sign-ins at once; retry in a second")
	case isDataException(err):
		h.log.WarnContext(r.Context(), "input refused by the database", "error", err.Error(), "request_id", httpx.RequestID(r.Context()), "path", r.URL.Path)
		httpx.WriteProblem(w, http.StatusBadRequest, "invalid-request", "the request holds text or a value that cannot be stored (invalid UTF-8, or a NUL character)")
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		h.log.ErrorContext(r.Context(), "request failed", "error", err.Error(), "request_id", httpx.RequestID(r.Context()), "path", r.URL.Path)
		w.Header().Set("Retry-After", "1")
		httpx.WriteProblem(w, http.StatusServiceUnavailable, "unavailable", "the service is temporarily unavailable; retry shortly")
	default:
		h.log.ErrorContext(r.Context(), "request failed", "error", err.Error(), "request_id", httpx.RequestID(r.Context()), "path", r.URL.Path)
		httpx.WriteProblem(w, http.StatusInternalServerError, "internal", "internal error")
	}
}

// authenticate requires a valid, unrevoked bearer token.
func (h *Handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := httpx.BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer`)
			httpx.WriteProblem(w, http.StatusUnauthorized, "unauthorized", "an Authorization: Bearer access token is required")
			return
		}
		p, err := h.svc.Authenticate(r.Context(), raw)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
	})
}

// instrument records requests and latency by route pattern.
func (h *Handler) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &httpx.StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
		h.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.Status)).Inc()
		h.metrics.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		h.log.WarnContext(r.Context(), "not ready", "error", err.Error())
		httpx.WriteProblem(w, http.StatusServiceUnavailable, "not-ready", "not ready")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (h *Handler) jwks(w http.ResponseWriter, r *http.Request) {
	ks := h.svc.keys.Current()
	if ks == nil {
		h.writeError(w, r, ErrUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(ks.JWKS())
}

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(h.openapi)
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Device   *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"device"`
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	in := LoginInput{Email: req.Email, Password: req.Password, Meta: h.meta(r)}
	if req.Device != nil {
		in.DeviceType, in.DeviceName = req.Device.Type, req.Device.Name
	}
	pair, err := h.svc.Login(r.Context(), in)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, pair)
}

func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	pair, err := h.svc.Refresh(r.Context(), req.RefreshToken, h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, pair)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.Logout(r.Context(), principal(r), h.meta(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) listOwn(w http.ResponseWriter, r *http.Request) {
	list, err := h.svc.ListOwn(r.Context(), principal(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (h *Handler) revokeOwn(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.RevokeOwnSession(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) revokeOthers(w http.ResponseWriter, r *http.Request) {
	n, err := h.svc.RevokeOtherSessions(r.Context(), principal(r), h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.writeError(w, r, invalid("malformed query string"))
		return
	}
	lq := ListQuery{OrgID: q.Get("org_id"), UserID: q.Get("user_id"), Cursor: q.Get("cursor")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			h.writeError(w, r, invalid("limit must be an integer between 1 and %d", MaxListLimit))
			return
		}
		lq.Limit = n
	}
	page, err := h.svc.ListSessions(r.Context(), principal(r), lq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, page)
}

func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) {
	s, err := h.svc.GetSession(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s)
}

func (h *Handler) revokeSession(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.RevokeSession(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) revokeUserSessions(w http.ResponseWriter, r *http.Request) {
	n, err := h.svc.RevokeUserSessions(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (h *Handler) createOrg(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	o, err := h.svc.CreateOrg(r.Context(), principal(r), req.Name, h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, o)
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OrgID    string `json:"org_id"`
		Email    string `json:"email"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	u, err := h.svc.CreateUser(r.Context(), principal(r), NewUser(req), h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, u)
}

func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Disabled *bool `json:"disabled"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if req.Disabled == nil {
		h.writeError(w, r, invalid("disabled (true or false) is required"))
		return
	}
	u, err := h.svc.SetUserDisabled(r.Context(), principal(r), chi.URLParam(r, "id"), *req.Disabled, h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, u)
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.writeError(w, r, invalid("malformed query string"))
		return
	}
	aq := AuditQuery{UserID: q.Get("user_id"), OrgID: q.Get("org_id"), Action: q.Get("action"), Cursor: q.Get("cursor")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			h.writeError(w, r, invalid("limit must be an integer between 1 and %d", MaxListLimit))
			return
		}
		aq.Limit = n
	}
	page, err := h.svc.ListAudit(r.Context(), principal(r), aq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, page)
}

func (h *Handler) metricsHandler() http.Handler {
	return promhttp.HandlerFor(h.gatherer, promhttp.HandlerOpts{})
}
