package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/receipts"
)

// Handler serves the session API: the JSON endpoints of the contract and
// the operator's /healthz, /readyz, /metrics and /openapi.json.
type Handler struct {
	svc      *sessions.Service
	receipts *receipts.Store
	log      *slog.Logger
	gatherer prometheus.Gatherer
	trusted  []netip.Prefix
	ready    func(context.Context) error
}

// NewHandler wires the API. rc answers revocation receipts; trusted lists
// the reverse proxies whose X-Forwarded-For is believed; ready backs
// /readyz; gatherer serves /metrics.
func NewHandler(svc *sessions.Service, rc *receipts.Store, log *slog.Logger, gatherer prometheus.Gatherer, trusted []netip.Prefix, ready func(context.Context) error) *Handler {
	return &Handler{svc: svc, receipts: rc, log: log, gatherer: gatherer, trusted: trusted, ready: ready}
}

type ctxKey int

const principalKey ctxKey = iota

func principal(r *http.Request) sessions.Principal {
	p, _ := r.Context().Value(principalKey).(sessions.Principal)
	return p
}

func (h *Handler) meta(r *http.Request) sessions.ClientMeta {
	return sessions.ClientMeta{IP: httpx.ClientIP(r, h.trusted), UserAgent: r.UserAgent()}
}

// writeError answers err as a problem document, as Explain tells. Internal
// detail is logged, never sent.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, httpx.ErrBadRequest) { // the request body could not be read as JSON
		err = fmt.Errorf("%w: %s", sessions.ErrInvalid, strings.TrimPrefix(err.Error(), httpx.ErrBadRequest.Error()+": "))
	}
	f := sessions.Explain(err)
	if f.Log {
		h.log.Log(r.Context(), f.LogLevel(), "request failed", "error", err.Error(), "request_id", httpx.RequestID(r.Context()), "path", r.URL.Path)
	}
	if f.RetryAfter > 0 {
		httpx.SetRetryAfter(w, f.RetryAfter)
	}
	if f.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	httpx.WriteProblem(w, f.Status, f.Slug, f.Detail)
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
		httpx.Identify(r.Context(), p.UserID, p.SessionID)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
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
	doc, ok := h.svc.JWKS()
	if !ok {
		h.writeError(w, r, sessions.ErrUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(doc)
}

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Device   *struct {
		Type string `json:"type"`
		Name string `json:"name"`
		ID   string `json:"id"`
	} `json:"device"`
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	in := sessions.LoginInput{Email: req.Email, Password: req.Password, Meta: h.meta(r)}
	if req.Device != nil {
		in.DeviceType, in.DeviceName, in.DeviceID = req.Device.Type, req.Device.Name, req.Device.ID
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

func (h *Handler) listOwn(w http.ResponseWriter, r *http.Request) {
	list, err := h.svc.ListOwn(r.Context(), principal(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request) {
	q, limit, err := listParams(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	lq := sessions.SessionQuery{OrgID: q.Get("org_id"), UserID: q.Get("user_id"), Cursor: q.Get("cursor"), Limit: limit, Sort: q.Get("sort")}
	page, err := h.svc.ListSessions(r.Context(), principal(r), lq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sessionPage{Sessions: make([]sessions.Session, len(page.Sessions))}
	for i, row := range page.Sessions {
		out.Sessions[i] = row.Session
	}
	if page.NextCursor != "" {
		out.NextCursor = &page.NextCursor
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// sessionPage is the JSON of GET /v1/sessions.
type sessionPage struct {
	Sessions   []sessions.Session `json:"sessions"`
	NextCursor *string            `json:"next_cursor"`
}

func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) {
	s, err := h.svc.GetSession(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s)
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
	u, err := h.svc.CreateUser(r.Context(), principal(r), sessions.NewUser(req), h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, u)
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) {
	q, limit, err := listParams(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	aq := sessions.AuditQuery{UserID: q.Get("user_id"), OrgID: q.Get("org_id"), Action: q.Get("action"), Cursor: q.Get("cursor"), Limit: limit}
	page, err := h.svc.ListAudit(r.Context(), principal(r), aq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, page)
}

// listParams reads a listing's query string and its limit (0 when absent:
// the domain applies the default and the bounds).
func listParams(r *http.Request) (url.Values, int, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, 0, sessions.Invalid("malformed query string")
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 {
			return nil, 0, sessions.Invalid("limit must be an integer between 1 and %d", sessions.MaxListLimit)
		}
	}
	return q, limit, nil
}
