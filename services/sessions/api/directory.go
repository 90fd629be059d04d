package api

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/services/sessions"
)

// The directory: GET /v1/users, /v1/users/{id}, /v1/orgs, /v1/me, and
// DELETE /v1/users/{id}/login-failures.

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) {
	q, limit, err := listParams(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	f := sessions.UserQuery{OrgID: q.Get("org_id"), Email: q.Get("email"), Cursor: q.Get("cursor"), Limit: limit}
	if d := q.Get("disabled"); d != "" {
		v, err := strconv.ParseBool(d)
		if err != nil {
			h.writeError(w, r, sessions.Invalid("disabled must be true or false"))
			return
		}
		f.Disabled = &v
	}
	page, err := h.svc.ListUsers(r.Context(), principal(r), f)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := struct {
		Users      []sessions.User `json:"users"`
		NextCursor *string         `json:"next_cursor"`
	}{Users: page.Users}
	if out.Users == nil {
		out.Users = []sessions.User{}
	}
	if page.NextCursor != "" {
		out.NextCursor = &page.NextCursor
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := h.svc.UserInScope(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, u.User)
}

func (h *Handler) listOrgs(w http.ResponseWriter, r *http.Request) {
	orgs, err := h.svc.OrgDirectory(r.Context(), principal(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if orgs == nil {
		orgs = []sessions.OrgSummary{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"orgs": orgs})
}

func (h *Handler) me(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	u, err := h.svc.Me(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		sessions.User
		SessionID string `json:"session_id"`
	}{u, p.SessionID})
}

func (h *Handler) clearLoginFailures(w http.ResponseWriter, r *http.Request) {
	if _, err := h.svc.ClearLoginFailures(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) renameOwn(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DeviceName *string `json:"device_name"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if req.DeviceName == nil {
		h.writeError(w, r, sessions.Invalid("device_name is required (\"\" clears it)"))
		return
	}
	s, err := h.svc.RenameOwnSession(r.Context(), principal(r), chi.URLParam(r, "id"), *req.DeviceName)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s)
}

func (h *Handler) ownActivity(w http.ResponseWriter, r *http.Request) {
	q, limit, err := listParams(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	page, err := h.svc.ListOwnActivity(r.Context(), principal(r), limit, q.Get("cursor"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, page)
}
