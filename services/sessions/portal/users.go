package portal

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
)

// usersPage is the admin's user directory: every user in scope, whatever
// their sessions, so that a disabled user is found again.
type usersPage struct {
	Users    []sessions.User
	OrgNames map[string]string
	Orgs     []sessions.Org
	ShowOrgs bool
	Filter   usersFilter
	Filtered bool
	Statuses []option
	Next     string
	First    string
	Back     string
	CSRF     string
	Self     string
}

// usersFilter is the directory's filter as the page's query holds it.
type usersFilter struct{ Email, OrgID, Status string }

var statusOptions = []option{{"enabled", "Active"}, {"disabled", "Disabled"}}

// adminUsers is the user directory: search by email, filter by org and
// status, keyset pages, and the actions on each user.
func (h *Portal) adminUsers(w http.ResponseWriter, r *http.Request, v *viewer) {
	q := r.URL.Query()
	f := usersFilter{Email: q.Get("email"), OrgID: q.Get("org"), Status: q.Get("status")}
	uq := sessions.UserQuery{OrgID: f.OrgID, Email: f.Email, Cursor: q.Get("cursor")}
	switch f.Status {
	case "":
	case "enabled", "disabled":
		d := f.Status == "disabled"
		uq.Disabled = &d
	default:
		h.portalFail(w, r, areaAdmin, v, sessions.Invalid("status must be enabled or disabled"))
		return
	}
	if f.OrgID != "" && !events.IsUUID(f.OrgID) {
		h.portalFail(w, r, areaAdmin, v, sessions.Invalid("organisation must be a UUID"))
		return
	}
	res, err := h.svc.ListUsers(r.Context(), v.Principal, uq)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	orgs, err := h.svc.OrgsInScope(r.Context(), v.Principal)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	names := make(map[string]string, len(orgs))
	for _, o := range orgs {
		names[o.ID] = o.Name
	}
	page := usersPage{Users: res.Users, OrgNames: names, Orgs: orgs, ShowOrgs: v.Role == tokens.RoleGlobalAdmin, Filter: f,
		Filtered: f != usersFilter{}, Statuses: statusOptions, Back: r.URL.RequestURI(), CSRF: v.CSRF, Self: v.UserID}
	page.Next, page.First = pager("/admin/users", q, res.NextCursor)
	h.render(w, r, http.StatusOK, "admin_users", pageData{Title: "Users", Area: areaAdmin, Nav: "users", Viewer: v, Page: page})
}

// adminUnlock clears a user's failed sign-ins ("Clear sign-in lockout").
func (h *Portal) adminUnlock(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := chi.URLParam(r, "id")
	u, err := h.svc.UserInScope(r.Context(), v.Principal, id)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	n, err := h.svc.ClearLoginFailures(r.Context(), v.Principal, id, h.meta(r))
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	msg := u.Email + " had no failed sign-ins to clear."
	if n > 0 {
		msg = "The sign-in lockout of " + u.Email + " is cleared: they can sign in again now."
	}
	h.redirectWith(w, r, backTo(r, "/admin/", "/admin/users/"+id), "ok", msg)
}
