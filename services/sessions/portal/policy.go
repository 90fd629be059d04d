package portal

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
)

// policyPage is the Policy page: one org's session policy, as a form.
type policyPage struct {
	Orgs                     []sessions.Org
	OrgID                    string
	MaxSessions              int
	OnLimit                  string
	IdleTimeout, MaxLifetime string
}

// durationText shows a policy duration as the form takes it back ("" for
// none): whole hours as "720h", else Go's form.
func durationText(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

// parseFormDuration reads a duration field ("" or "0" for none).
func parseFormDuration(field, v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" || v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, sessions.Invalid("%s must be a duration such as 30m, 12h or 720h (empty for none)", field)
	}
	return d, nil
}

// adminPolicy shows an org's session policy (GET ?org=) and saves it (POST).
func (h *Portal) adminPolicy(w http.ResponseWriter, r *http.Request, v *viewer) {
	orgs, err := h.svc.OrgsInScope(r.Context(), v.Principal)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	org := r.URL.Query().Get("org")
	if r.Method == http.MethodPost {
		org = r.PostForm.Get("org_id")
	}
	if org == "" && len(orgs) > 0 {
		org = orgs[0].ID
	}
	if r.Method == http.MethodPost {
		pol := sessions.Policy{OnLimit: r.PostForm.Get("on_limit")}
		if s := strings.TrimSpace(r.PostForm.Get("max_sessions_per_user")); s != "" {
			if pol.MaxSessionsPerUser, err = strconv.Atoi(s); err != nil {
				err = sessions.Invalid("Sessions per user must be a whole number (0 or empty for no limit)")
			}
		}
		if err == nil {
			pol.IdleTimeout, err = parseFormDuration("Idle timeout", r.PostForm.Get("idle_timeout"))
		}
		if err == nil {
			pol.MaxSessionLifetime, err = parseFormDuration("Maximum session lifetime", r.PostForm.Get("max_session_lifetime"))
		}
		if err == nil {
			_, err = h.svc.SetPolicy(r.Context(), v.Principal, org, pol, h.meta(r))
		}
		if err != nil {
			h.portalFail(w, r, areaAdmin, v, err)
			return
		}
		h.redirectWith(w, r, "/admin/policy?org="+url.QueryEscape(org), "ok", "The session policy is saved. It applies from the next sign-in and refresh; idle and old sessions end within a minute.")
		return
	}
	pol, err := h.svc.GetPolicy(r.Context(), v.Principal, org)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	h.render(w, r, http.StatusOK, "admin_policy", pageData{Title: "Session policy", Area: areaAdmin, Nav: "policy", Viewer: v,
		Page: policyPage{Orgs: orgs, OrgID: org, MaxSessions: pol.MaxSessionsPerUser, OnLimit: pol.OnLimit,
			IdleTimeout: durationText(pol.IdleTimeout), MaxLifetime: durationText(pol.MaxSessionLifetime)}})
}
