package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/services/sessions"
)

// policyJSON is a session policy on the wire: durations as Go durations
// ("15m", "720h"), "0s" for none.
type policyJSON struct {
	MaxSessionsPerUser *int    `json:"max_sessions_per_user"`
	OnLimit            *string `json:"on_limit"`
	IdleTimeout        *string `json:"idle_timeout"`
	MaxSessionLifetime *string `json:"max_session_lifetime"`
}

func policyOut(p sessions.Policy) policyJSON {
	idle, life := p.IdleTimeout.String(), p.MaxSessionLifetime.String()
	return policyJSON{MaxSessionsPerUser: &p.MaxSessionsPerUser, OnLimit: &p.OnLimit, IdleTimeout: &idle, MaxSessionLifetime: &life}
}

// policyIn reads a PUT body: a field left out is "none" (the policy is
// replaced whole).
func policyIn(in policyJSON) (sessions.Policy, error) {
	p := sessions.Policy{OnLimit: sessions.OnLimitRevokeOldest}
	if in.MaxSessionsPerUser != nil {
		p.MaxSessionsPerUser = *in.MaxSessionsPerUser
	}
	if in.OnLimit != nil {
		p.OnLimit = *in.OnLimit
	}
	for _, d := range []struct {
		name string
		in   *string
		out  *time.Duration
	}{{"idle_timeout", in.IdleTimeout, &p.IdleTimeout}, {"max_session_lifetime", in.MaxSessionLifetime, &p.MaxSessionLifetime}} {
		if d.in == nil {
			continue
		}
		v, err := time.ParseDuration(*d.in)
		if err != nil {
			return p, sessions.Invalid("%s must be a duration such as 15m or 720h (0s for none)", d.name)
		}
		*d.out = v
	}
	return p, nil
}

func (h *Handler) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := h.svc.GetPolicy(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, policyOut(p))
}

func (h *Handler) putPolicy(w http.ResponseWriter, r *http.Request) {
	var req policyJSON
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	pol, err := policyIn(req)
	if err == nil {
		pol, err = h.svc.SetPolicy(r.Context(), principal(r), chi.URLParam(r, "id"), pol, h.meta(r))
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, policyOut(pol))
}
