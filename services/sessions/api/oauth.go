package api

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/services/sessions"
)

// API clients (POST/GET /v1/clients, DELETE /v1/clients/{id}) and the OAuth
// endpoints (RFC 6749 client credentials, RFC 7009 revocation, RFC 7662
// introspection). The OAuth endpoints take form bodies and answer errors
// as RFC 6749 section 5.2 says: {"error", "error_description"}.

func (h *Handler) createClient(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name   string   `json:"name"`
		OrgID  string   `json:"org_id"`
		Scopes []string `json:"scopes"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	c, secret, err := h.svc.CreateClient(r.Context(), principal(r), sessions.NewClient{Name: req.Name, OrgID: req.OrgID, Scopes: req.Scopes}, h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, struct {
		sessions.Client
		Secret string `json:"client_secret"`
	}{c, secret})
}

func (h *Handler) listClients(w http.ResponseWriter, r *http.Request) {
	cs, err := h.svc.ListClients(r.Context(), principal(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if cs == nil {
		cs = []sessions.Client{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"clients": cs})
}

func (h *Handler) deleteClient(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.DeleteClient(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// maxForm bounds an OAuth request body.
const maxForm = 16 << 10

// oauthError answers an OAuth error (RFC 6749 section 5.2).
func oauthError(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="sessiond"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// oauthForm reads a form-encoded OAuth request; false when it answered an
// error.
func oauthForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form of at most 16 KiB")
		return nil, false
	}
	return r.PostForm, true
}

// client authenticates the request's HTTP Basic client credentials (RFC
// 6749 section 2.3.1: each part form-encoded); false when it answered 401.
func (h *Handler) client(w http.ResponseWriter, r *http.Request) (sessions.Client, bool) {
	id, secret, _ := basicClient(r)
	c, err := h.svc.AuthenticateClient(r.Context(), id, secret)
	if errors.Is(err, sessions.ErrUnauthorized) { // no credentials included
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed: HTTP Basic with the client's id and secret")
		return sessions.Client{}, false
	}
	if err != nil {
		h.writeError(w, r, err)
		return sessions.Client{}, false
	}
	return c, true
}

// basicClient is the request's HTTP Basic client id and secret, each
// form-decoded (RFC 6749 section 2.3.1); "" when absent.
func basicClient(r *http.Request) (id, secret string, ok bool) {
	id, secret, ok = r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	return id, secret, ok
}

// token is POST /oauth2/token: the client credentials grant.
func (h *Handler) token(w http.ResponseWriter, r *http.Request) {
	form, ok := oauthForm(w, r)
	if !ok {
		return
	}
	if g := form.Get("grant_type"); g != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	c, ok := h.client(w, r)
	if !ok {
		return
	}
	t, err := h.svc.IssueClientToken(r.Context(), c, form.Get("scope"))
	if errors.Is(err, sessions.ErrInvalidScope) {
		oauthError(w, http.StatusBadRequest, "invalid_scope", strings.TrimPrefix(err.Error(), sessions.ErrInvalidScope.Error()+": "))
		return
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	httpx.WriteJSON(w, http.StatusOK, t)
}

// revokeToken is POST /oauth2/revoke (RFC 7009). A user's token needs no
// client authentication; credentials that are sent must be right.
func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	form, ok := oauthForm(w, r)
	if !ok {
		return
	}
	if _, _, sent := r.BasicAuth(); sent {
		if _, ok := h.client(w, r); !ok {
			return
		}
	}
	tok := form.Get("token")
	if tok == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	id, p, err := h.svc.RevokeToken(r.Context(), tok, form.Get("token_type_hint"), h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.receiptFor(w, r, id, p)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// introspect is POST /oauth2/introspect (RFC 7662), for clients with the
// introspect scope.
func (h *Handler) introspect(w http.ResponseWriter, r *http.Request) {
	form, ok := oauthForm(w, r)
	if !ok {
		return
	}
	id, secret, _ := basicClient(r)
	tok := form.Get("token")
	if tok == "" {
		// The client is authenticated first: a stranger learns nothing,
		// not even that the request was malformed.
		if _, ok := h.client(w, r); !ok {
			return
		}
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	c, out, err := h.svc.IntrospectAs(r.Context(), id, secret, tok, form.Get("token_type_hint"))
	if errors.Is(err, sessions.ErrUnauthorized) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed: HTTP Basic with the client's id and secret")
		return
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !c.Has(sessions.ScopeIntrospect) {
		oauthError(w, http.StatusForbidden, "insufficient_scope", "the client does not hold the introspect scope")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, out)
}
