package portal

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
)

// revokePage is the "Revoke by rule" page: the filter, and after a count
// the confirmation.
type revokePage struct {
	Orgs        []sessions.Org
	Roles       []string
	DeviceTypes []sessions.DeviceType
	Form        revokeForm
	Counted     bool
	Sessions    int
	Users       int
}

// revokeForm is the filter as the form holds it.
type revokeForm struct {
	OrgID, Role, DeviceType, SignedInBefore, LastActiveBefore, Reason string
}

// formTimeLayouts are what <input type="datetime-local"> sends (UTC here),
// and RFC 3339.
var formTimeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339Nano}

func parseFormTime(name, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	for _, l := range formTimeLayouts {
		if t, err := time.ParseInLocation(l, v, time.UTC); err == nil {
			return &t, nil
		}
	}
	return nil, sessions.Invalid("%s must be a date and time such as 2026-12-01T09:00 (UTC)", name)
}

// filter is the form's bulk filter.
func (f revokeForm) filter(dryRun bool) (sessions.BulkFilter, error) {
	bf := sessions.BulkFilter{OrgID: f.OrgID, Role: f.Role, DeviceType: f.DeviceType, ReasonText: f.Reason, DryRun: dryRun}
	var err error
	if bf.SignedInBefore, err = parseFormTime("Signed in before", f.SignedInBefore); err != nil {
		return bf, err
	}
	bf.LastActiveBefore, err = parseFormTime("Last active before", f.LastActiveBefore)
	return bf, err
}

// adminRevokeByRule shows the filter (GET), counts what it matches
// (POST step=count) and, confirmed with a typed reason (POST
// step=revoke), revokes it and reports how far the revocation got.
func (h *Portal) adminRevokeByRule(w http.ResponseWriter, r *http.Request, v *viewer) {
	orgs, err := h.svc.OrgsInScope(r.Context(), v.Principal)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	page := revokePage{Orgs: orgs, Roles: []string{tokens.RoleUser, tokens.RoleOrgAdmin, tokens.RoleGlobalAdmin}, DeviceTypes: sessions.DeviceTypes}
	if r.Method == http.MethodPost {
		page.Form = revokeForm{OrgID: r.PostForm.Get("org_id"), Role: r.PostForm.Get("role"), DeviceType: r.PostForm.Get("device_type"),
			SignedInBefore: r.PostForm.Get("signed_in_before"), LastActiveBefore: r.PostForm.Get("last_active_before"), Reason: r.PostForm.Get("reason")}
		step := r.PostForm.Get("step")
		f, err := page.Form.filter(step != "revoke")
		if err == nil && step == "revoke" && f.ReasonText == "" {
			err = sessions.Invalid("type the reason for this revocation: it goes to the audit log")
		}
		if err != nil {
			h.portalFail(w, r, areaAdmin, v, err)
			return
		}
		ctx := r.Context()
		if step == "revoke" {
			ctx = sessions.WithWaiter(ctx)
		}
		res, err := h.svc.RevokeByFilter(ctx, v.Principal, f, h.meta(r))
		if err != nil {
			h.portalFail(w, r, areaAdmin, v, err)
			return
		}
		if step == "revoke" {
			h.redirectWith(w, r, "/admin/", "ok", fmt.Sprintf("Revoked %s of %s. %s",
				plural(res.RevokedSessions, "session"), plural(res.RevokedUsers, "user"), h.outcome(r, v, res.RevocationID)))
			return
		}
		page.Counted, page.Sessions, page.Users = true, res.MatchedSessions, res.MatchedUsers
	} else if len(orgs) == 1 {
		page.Form.OrgID = orgs[0].ID
	}
	h.render(w, r, http.StatusOK, "admin_revoke", pageData{Title: "Revoke by rule", Area: areaAdmin, Nav: "revoke", Viewer: v, Page: page})
}
