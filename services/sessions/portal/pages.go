package portal

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sessionguard/revoke/events"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/receipts"
)

// signinForm is the body of signin.html.
type signinForm struct {
	CSRF  string
	Email string
	Error string
}

// refill is the email to show again in a form that failed: as typed, unless
// it is longer than any email can be.
func refill(email string) string {
	if len(email) > 254 {
		return ""
	}
	return email
}

// signinPage shows the sign-in form, or goes on to the area's home page when
// the browser is signed in already.
func (h *Portal) signinPage(a area) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, err := h.portalPrincipal(w, r)
		switch {
		case err == nil:
			http.Redirect(w, r, a.home(), http.StatusSeeOther)
			return
		case !isSignedOut(err):
			h.portalFail(w, r, a, nil, err)
			return
		}
		if h.cookie(r, cookieAccess) != "" || h.cookie(r, cookieRefresh) != "" {
			h.clearTokens(w)
		}
		h.renderSignin(w, r, a, http.StatusOK, signinForm{})
	}
}

// renderSignin renders the sign-in form with the double-submit token of the
// browser's sign-in nonce, setting a new nonce when it has none.
func (h *Portal) renderSignin(w http.ResponseWriter, r *http.Request, a area, status int, f signinForm) {
	nonce := h.cookie(r, cookieSignin)
	if len(nonce) != 43 {
		var b [32]byte
		_, _ = rand.Read(b[:])
		nonce = base64.RawURLEncoding.EncodeToString(b[:])
		h.setCookie(w, cookieSignin, nonce, 12*time.Hour)
	}
	f.CSRF = h.signinCSRF(nonce)
	h.render(w, r, status, "signin", pageData{Title: "Sign in", Area: a, Page: f})
}

// signin is the password login of POST /v1/auth/login for a browser (device
// type web, named "Portal sign-in"). On success it sets the token
// cookies and goes to the area's home page; on failure it shows the form
// again with the reason (the same one message for every bad credential).
func (h *Portal) signin(a area) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil {
			h.portalFail(w, r, a, nil, sessions.Invalid("the form could not be read (at most %d KiB, URL-encoded)", maxFormBody>>10))
			return
		}
		nonce := h.cookie(r, cookieSignin)
		if nonce == "" || !csrfOK(r.PostForm.Get("csrf"), h.signinCSRF(nonce)) {
			h.portalFail(w, r, a, nil, errCSRF)
			return
		}
		email := r.PostForm.Get("email")
		pair, err := h.svc.Login(r.Context(), sessions.LoginInput{
			Email: email, Password: r.PostForm.Get("password"),
			DeviceType: "web", DeviceName: "Portal sign-in", Meta: h.meta(r),
		})
		if err != nil {
			f := h.explain(w, r, err)
			h.renderSignin(w, r, a, f.Status, signinForm{Email: refill(email), Error: f.Message})
			return
		}
		h.setTokens(w, pair, h.svc.RefreshTTL())
		h.clearCookie(w, cookieSignin)
		http.Redirect(w, r, a.home(), http.StatusSeeOther)
	}
}

// signout revokes the browser's own session (reason logout) and forgets its
// tokens.
func (h *Portal) signout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if _, err := h.svc.Logout(r.Context(), v.Principal, h.meta(r)); err != nil {
		h.portalFail(w, r, portalArea(r), v, err)
		return
	}
	h.clearTokens(w)
	h.redirectWith(w, r, portalArea(r).signin(), "ok", "You are signed out.")
}

// sessionTable is the data of the sessions-table partial.
type sessionTable struct {
	Rows     []sessions.SessionRow
	ShowUser bool
	ShowOrg  bool
	CSRF     string
	Back     string
	Now      time.Time
	Caption  string
	// Sort, and the links that sort by each column ("" for a table that
	// does not sort, such as a user's).
	Sort                         string
	SortLastActive, SortSignedIn string
}

// adminSessionsPage is the body of admin_sessions.html.
type adminSessionsPage struct {
	Heading  string
	Filter   sessions.SessionQuery
	Filtered bool
	Orgs     []sessions.Org
	ShowOrgs bool
	Table    sessionTable
	Next     string
	First    string
	Devices  []option
	Activity []option
	// Total matches the filters (MaxTotal+1: more than MaxTotal).
	Total int
	More  bool
}

type option struct{ Value, Label string }

// deviceOptions are the device filter's choices: DeviceTypes.
func deviceOptions() []option {
	out := make([]option, len(sessions.DeviceTypes))
	for i, d := range sessions.DeviceTypes {
		out[i] = option{d.Name, d.Label}
	}
	return out
}

var activityOptions = []option{{"1h", "Within the last hour"}, {"24h", "Within the last 24 hours"}, {"7d", "Within the last 7 days"}, {"older", "More than 7 days ago"}}

// adminSessions is the admin's sessions table: search, filters, keyset
// pages.
func (h *Portal) adminSessions(w http.ResponseWriter, r *http.Request, v *viewer) {
	q := r.URL.Query()
	search := sessions.SessionQuery{OrgID: q.Get("org"), Email: q.Get("email"), DeviceType: q.Get("device"), Active: q.Get("active"), Cursor: q.Get("cursor"),
		Names: true, Sort: q.Get("sort"), Total: true}
	if search.OrgID != "" && !events.IsUUID(search.OrgID) { // the page's own parameter name
		h.portalFail(w, r, areaAdmin, v, sessions.Invalid("organisation must be a UUID"))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > sessions.MaxListLimit {
			h.portalFail(w, r, areaAdmin, v, sessions.Invalid("limit must be an integer between 1 and %d", sessions.MaxListLimit))
			return
		}
		search.Limit = n
	}
	res, err := h.svc.ListSessions(r.Context(), v.Principal, search)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	orgs, err := h.svc.OrgsInScope(r.Context(), v.Principal)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	global := v.Role == tokens.RoleGlobalAdmin
	page := adminSessionsPage{
		Heading:  "All sessions",
		Filter:   search,
		Filtered: search.OrgID != "" || search.Email != "" || search.DeviceType != "" || search.Active != "",
		Orgs:     orgs,
		ShowOrgs: global,
		Table: sessionTable{Rows: res.Sessions, ShowUser: true, ShowOrg: global, CSRF: v.CSRF, Back: r.URL.RequestURI(),
			Now: h.svc.Now(), Caption: "Active sessions, most recent activity first"},
		Devices:  deviceOptions(),
		Activity: activityOptions,
	}
	if !global && len(orgs) == 1 {
		page.Heading = "Sessions in " + orgs[0].Name
	}
	page.Total, page.More = res.Total, res.Total > sessions.MaxTotal
	page.Table.Sort = search.Sort
	for _, col := range []struct {
		sort string
		href *string
	}{{sessions.SortLastActive, &page.Table.SortLastActive}, {sessions.SortSignedIn, &page.Table.SortSignedIn}} {
		v := cloneValues(q)
		v.Del("cursor")
		v.Set("sort", col.sort)
		*col.href = "/admin/?" + v.Encode()
	}
	page.Next, page.First = pager("/admin/", q, res.NextCursor)
	h.render(w, r, http.StatusOK, "admin_sessions", pageData{Title: page.Heading, Area: areaAdmin, Nav: "admin", Viewer: v, Page: page})
}

// pager is a keyset listing's links at path with query q: to the next page
// (after cursor next; "" on the last page) and back to the first ("" on
// the first).
func pager(path string, q url.Values, next string) (nextURL, firstURL string) {
	if next != "" {
		v := cloneValues(q)
		v.Set("cursor", next)
		nextURL = path + "?" + v.Encode()
	}
	if q.Get("cursor") != "" {
		v := cloneValues(q)
		v.Del("cursor")
		firstURL = path + "?" + v.Encode()
	}
	return nextURL, firstURL
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// auditRow is one audit entry as the user page shows it.
type auditRow struct {
	At         time.Time
	Action     string
	Actor      string
	SessionID  string
	DeviceType string // of the session, while it is kept
	Client     string
	IP         string
	Reason     string
	Detail     string
}

// adminUserPage is the body of admin_user.html.
type adminUserPage struct {
	User  sessions.UserWithOrg
	Self  bool
	Table sessionTable
	Audit []auditRow
	Back  string
}

// adminUser is one user's page: the user, its live sessions, the actions on
// it, and its recent audit entries.
func (h *Portal) adminUser(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx := r.Context()
	u, err := h.svc.UserInScope(ctx, v.Principal, chi.URLParam(r, "id"))
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	res, err := h.svc.ListSessions(ctx, v.Principal, sessions.SessionQuery{UserID: u.ID, Limit: sessions.MaxListLimit, Names: true})
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	audit, err := h.svc.ListAudit(ctx, v.Principal, sessions.AuditQuery{UserID: u.ID, Limit: 50})
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	var actorIDs []string
	for _, e := range audit.Entries {
		if e.ActorID != nil {
			actorIDs = append(actorIDs, *e.ActorID)
		}
	}
	emails, err := h.svc.UserEmails(ctx, actorIDs)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	rows := make([]auditRow, len(audit.Entries))
	for i, e := range audit.Entries {
		row := auditRow{At: e.At, Action: e.Action, Actor: "system", Detail: auditDetail(e.Detail)}
		if e.ActorID != nil {
			row.Actor = emails[*e.ActorID]
			if row.Actor == "" {
				row.Actor = "user " + *e.ActorID
			}
		}
		if e.SessionID != nil {
			row.SessionID = *e.SessionID
		}
		if e.DeviceType != nil {
			row.DeviceType = *e.DeviceType
		}
		if e.Client != nil {
			row.Client = *e.Client
		}
		if e.IP != nil {
			row.IP = *e.IP
		}
		if e.Reason != nil {
			row.Reason = *e.Reason
		}
		rows[i] = row
	}
	back := r.URL.RequestURI()
	page := adminUserPage{
		User:  u,
		Self:  u.ID == v.UserID,
		Table: sessionTable{Rows: res.Sessions, CSRF: v.CSRF, Back: back, Now: h.svc.Now(), Caption: "Active sessions of " + u.Email},
		Audit: rows,
		Back:  back,
	}
	h.render(w, r, http.StatusOK, "admin_user", pageData{Title: u.Email, Area: areaAdmin, Nav: "admin", Viewer: v, Page: page})
}

// auditDetail renders an audit entry's detail object as "key: value" pairs.
func auditDetail(d map[string]any) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, strings.ReplaceAll(k, "_", " ")+": "+fmt.Sprint(d[k]))
	}
	return strings.Join(parts, ", ")
}

// adminRevokeSession revokes one session in scope (404 out of scope).
func (h *Portal) adminRevokeSession(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := chi.URLParam(r, "id")
	rid, err := h.svc.RevokeSession(sessions.WithWaiter(r.Context()), v.Principal, id, h.meta(r))
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	if id == v.SessionID {
		h.clearTokens(w)
		h.redirectWith(w, r, areaAdmin.signin(), "ok", "You revoked your own session and are signed out.")
		return
	}
	h.redirectWith(w, r, backTo(r, "/admin/", "/admin/"), "ok", "Session revoked. "+h.outcome(r, v, rid))
}

// adminRevokeUser revokes every session of a user in scope.
func (h *Portal) adminRevokeUser(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := chi.URLParam(r, "id")
	u, err := h.svc.UserInScope(r.Context(), v.Principal, id)
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	n, rid, err := h.svc.RevokeUserSessions(sessions.WithWaiter(r.Context()), v.Principal, id, h.meta(r))
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	if id == v.UserID {
		h.clearTokens(w)
		h.redirectWith(w, r, areaAdmin.signin(), "ok", "You revoked all your own sessions and are signed out.")
		return
	}
	h.redirectWith(w, r, backTo(r, "/admin/", "/admin/users/"+id), "ok", fmt.Sprintf("Revoked %s of %s. %s", plural(n, "session"), u.Email, h.outcome(r, v, rid)))
}

// adminSetDisabled disables a user in scope (revoking everything of it) or
// enables it again.
func (h *Portal) adminSetDisabled(disabled bool) portalPage {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		id := chi.URLParam(r, "id")
		u, rid, err := h.svc.SetUserDisabled(sessions.WithWaiter(r.Context()), v.Principal, id, disabled, h.meta(r))
		if err != nil {
			h.portalFail(w, r, areaAdmin, v, err)
			return
		}
		msg := u.Email + " is disabled and every session of it is revoked. " + h.outcome(r, v, rid)
		if !disabled {
			msg = u.Email + " is enabled again and can sign in."
		}
		h.redirectWith(w, r, backTo(r, "/admin/", "/admin/users/"+id), "ok", msg)
	}
}

// adminGateways is the fleet page, for global admins.
func (h *Portal) adminGateways(w http.ResponseWriter, r *http.Request, v *viewer) {
	if v.Role != tokens.RoleGlobalAdmin {
		h.portalFail(w, r, areaAdmin, v, sessions.Forbidden("only a global admin sees the gateways"))
		return
	}
	fleet := h.receipts.Fleet()
	h.render(w, r, http.StatusOK, "admin_gateways", pageData{Title: "Gateways", Area: areaAdmin, Nav: "gateways", Viewer: v,
		Page: struct {
			Gateways []receipts.Gateway
			Silence  time.Duration
		}{fleet.List(), fleet.Silence()}})
}

// outcomeWait is how long an action's page waits for its revocation to be
// enforced before it reports how far it got.
const outcomeWait = 2 * time.Second

// outcome says where revocation rid stands at the gateways, as a sentence:
// "Refused at 8 of 8 gateways in 2.4 ms." once enforced, else which are
// still pending.
func (h *Portal) outcome(r *http.Request, v *viewer, rid string) string {
	rc, err := h.receipts.Wait(r.Context(), v.Principal, rid, outcomeWait)
	if err != nil {
		h.log.WarnContext(r.Context(), "portal: receipt", "error", err.Error(), "revocation_id", rid)
		return ""
	}
	switch rc.Status {
	case receipts.Enforced:
		if rc.Gateways.Expected == 0 {
			return "No gateway is running to refuse its tokens."
		}
		return fmt.Sprintf("Refused at %d of %s in %s.", rc.Gateways.Enforced, plural(rc.Gateways.Expected, "gateway"), elapsed(rc.EnforcedAt.Sub(rc.CreatedAt)))
	case receipts.Published:
		names := map[string]string{}
		for _, g := range h.receipts.Fleet().List() {
			names[g.ID] = g.Name
		}
		pending := make([]string, len(rc.Gateways.Pending))
		for i, id := range rc.Gateways.Pending {
			if pending[i] = names[id]; pending[i] == "" {
				pending[i] = id
			}
		}
		return fmt.Sprintf("Refused at %d of %s so far; still pending at %s.", rc.Gateways.Enforced, plural(rc.Gateways.Expected, "gateway"), strings.Join(pending, ", "))
	}
	return "Recorded; not yet published to the gateways."
}

// elapsed is a short duration as a person reads it: "2.4 ms", "1.2 s".
func elapsed(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// accountPage is the body of account_sessions.html.
type accountPage struct {
	Sessions []sessions.Session
	Others   int
}

// accountSessions is the signed-in user's own sessions page.
func (h *Portal) accountSessions(w http.ResponseWriter, r *http.Request, v *viewer) {
	list, err := h.svc.ListOwn(r.Context(), v.Principal)
	if err != nil {
		h.portalFail(w, r, areaAccount, v, err)
		return
	}
	page := accountPage{Sessions: list}
	for _, s := range list {
		if !s.Current {
			page.Others++
		}
	}
	h.render(w, r, http.StatusOK, "account_sessions", pageData{Title: "My sessions", Area: areaAccount, Nav: "account", Viewer: v, Page: page})
}

// accountRevoke ends one of the user's own sessions; ending the current one
// signs the browser out.
func (h *Portal) accountRevoke(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := chi.URLParam(r, "id")
	rid, err := h.svc.RevokeOwnSession(sessions.WithWaiter(r.Context()), v.Principal, id, h.meta(r))
	if err != nil {
		h.portalFail(w, r, areaAccount, v, err)
		return
	}
	if id == v.SessionID {
		h.clearTokens(w)
		h.redirectWith(w, r, areaAccount.signin(), "ok", "You are signed out.")
		return
	}
	h.redirectWith(w, r, areaAccount.home(), "ok", "That device is signed out. "+h.outcome(r, v, rid))
}

// accountRevokeOthers signs out every other device of the user.
func (h *Portal) accountRevokeOthers(w http.ResponseWriter, r *http.Request, v *viewer) {
	n, rid, err := h.svc.RevokeOtherSessions(sessions.WithWaiter(r.Context()), v.Principal, h.meta(r))
	if err != nil {
		h.portalFail(w, r, areaAccount, v, err)
		return
	}
	msg := "No other device was signed in."
	if n > 0 {
		msg = "Signed out " + plural(n, "other device") + ". " + h.outcome(r, v, rid)
	}
	h.redirectWith(w, r, areaAccount.home(), "ok", msg)
}
