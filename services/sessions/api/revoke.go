package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/receipts"
)

// The revoking endpoints. Each answers with the action's receipt:
// Revocation-Id names it, and with Prefer: wait=N (RFC 7240) the answer
// waits up to N seconds for the revocation to be enforced at every gateway,
// and says how far it got in Revocation-Status.

// preferWait reads Prefer: wait=N from r: N seconds, at most
// receipts.MaxWait; false without such a preference.
func preferWait(r *http.Request) (time.Duration, bool) {
	for _, h := range r.Header.Values("Prefer") {
		for _, pref := range strings.Split(h, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(strings.SplitN(pref, ";", 2)[0]), "=")
			if !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(value), `"`))
			if err != nil || n < 0 {
				return 0, false
			}
			return min(time.Duration(n)*time.Second, receipts.MaxWait), true
		}
	}
	return 0, false
}

// awaitable marks the context of a call with Prefer: wait=N: its
// revocation asks the gateways to report at once when they have applied it.
func awaitable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, ok := preferWait(r); ok && d > 0 {
			r = r.WithContext(sessions.WithWaiter(r.Context()))
		}
		next.ServeHTTP(w, r)
	})
}

// receipt sets the headers of a revoking call's answer, waiting first when
// the caller asked to.
func (h *Handler) receipt(w http.ResponseWriter, r *http.Request, id string) {
	h.receiptFor(w, r, id, principal(r))
}

// receiptFor is receipt for a receipt p may read (a call whose caller is
// not the signed-in user, as RFC 7009's).
func (h *Handler) receiptFor(w http.ResponseWriter, r *http.Request, id string, p sessions.Principal) {
	w.Header().Set("Revocation-Id", id)
	d, ok := preferWait(r)
	if !ok {
		return
	}
	if p.UserID == "" { // nothing was revoked: enforced at once
		w.Header().Set("Revocation-Status", receipts.Enforced)
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(d/time.Second)))
		return
	}
	rc, err := h.receipts.Wait(r.Context(), p, id, d)
	if err != nil {
		h.log.WarnContext(r.Context(), "receipt wait failed", "error", err.Error(), "revocation_id", id)
		rc.Status = receipts.Committed
	}
	w.Header().Set("Revocation-Status", rc.Status)
	w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(d/time.Second)))
}

// revoked is the body of the calls that say how many sessions they revoked.
type revoked struct {
	Revoked      int    `json:"revoked"`
	RevocationID string `json:"revocation_id"`
}

// answer writes a revoking call's answer: err as a problem, or the
// receipt's headers (none when id is "") and body as JSON (204 when nil).
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, id string, body any, err error) {
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if id != "" {
		h.receipt(w, r, id)
	}
	if body == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, body)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	id, err := h.svc.Logout(r.Context(), principal(r), h.meta(r))
	h.answer(w, r, id, nil, err)
}

func (h *Handler) revokeOwn(w http.ResponseWriter, r *http.Request) {
	id, err := h.svc.RevokeOwnSession(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r))
	h.answer(w, r, id, nil, err)
}

func (h *Handler) revokeOthers(w http.ResponseWriter, r *http.Request) {
	n, id, err := h.svc.RevokeOtherSessions(r.Context(), principal(r), h.meta(r))
	h.answer(w, r, id, revoked{Revoked: n, RevocationID: id}, err)
}

func (h *Handler) revokeSession(w http.ResponseWriter, r *http.Request) {
	id, err := h.svc.RevokeSession(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r))
	h.answer(w, r, id, nil, err)
}

func (h *Handler) revokeUserSessions(w http.ResponseWriter, r *http.Request) {
	n, id, err := h.svc.RevokeUserSessions(r.Context(), principal(r), chi.URLParam(r, "id"), h.meta(r))
	h.answer(w, r, id, revoked{Revoked: n, RevocationID: id}, err)
}

// userChange is PATCH /v1/users/{id}'s body: the user, and the receipt of
// the revocation when the call disabled it.
type userChange struct {
	sessions.User
	RevocationID string `json:"revocation_id,omitempty"`
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
		h.writeError(w, r, sessions.Invalid("disabled (true or false) is required"))
		return
	}
	u, id, err := h.svc.SetUserDisabled(r.Context(), principal(r), chi.URLParam(r, "id"), *req.Disabled, h.meta(r))
	h.answer(w, r, id, userChange{User: u, RevocationID: id}, err)
}

func (h *Handler) getRevocation(w http.ResponseWriter, r *http.Request) {
	rc, err := h.receipts.Get(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, rc)
}

func (h *Handler) listGateways(w http.ResponseWriter, r *http.Request) {
	if principal(r).Role != tokens.RoleGlobalAdmin {
		h.writeError(w, r, sessions.Forbidden("only a global_admin sees the gateways"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"gateways": h.receipts.Fleet().List()})
}

// bulkRevoke is POST /v1/revocations: a dry run's count, or the revocation
// of every session of one org that the filter selects.
func (h *Handler) bulkRevoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OrgID            *string `json:"org_id"`
		UserID           *string `json:"user_id"`
		Role             *string `json:"role"`
		DeviceType       *string `json:"device_type"`
		SignedInBefore   *string `json:"signed_in_before"`
		LastActiveBefore *string `json:"last_active_before"`
		ReasonText       *string `json:"reason_text"`
		DryRun           bool    `json:"dry_run"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	f := sessions.BulkFilter{DryRun: req.DryRun}
	for _, fld := range []struct {
		name string
		in   *string
		out  *string
	}{{"org_id", req.OrgID, &f.OrgID}, {"user_id", req.UserID, &f.UserID}, {"role", req.Role, &f.Role},
		{"device_type", req.DeviceType, &f.DeviceType}, {"reason_text", req.ReasonText, &f.ReasonText}} {
		if fld.in == nil {
			continue
		}
		if *fld.in == "" {
			h.writeError(w, r, sessions.Invalid("%s is empty: leave it out to match every value", fld.name))
			return
		}
		*fld.out = *fld.in
	}
	for _, fld := range []struct {
		name string
		in   *string
		out  **time.Time
	}{{"signed_in_before", req.SignedInBefore, &f.SignedInBefore}, {"last_active_before", req.LastActiveBefore, &f.LastActiveBefore}} {
		if fld.in == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, *fld.in)
		if err != nil {
			h.writeError(w, r, sessions.Invalid("%s must be an RFC 3339 time such as 2026-12-01T09:00:00Z", fld.name))
			return
		}
		*fld.out = &t
	}
	res, err := h.svc.RevokeByFilter(r.Context(), principal(r), f, h.meta(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if f.DryRun {
		httpx.WriteJSON(w, http.StatusOK, map[string]int{"matched_sessions": res.MatchedSessions, "matched_users": res.MatchedUsers})
		return
	}
	h.receipt(w, r, res.RevocationID)
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{"revocation_id": res.RevocationID,
		"revoked_sessions": res.RevokedSessions, "revoked_users": res.RevokedUsers})
}
