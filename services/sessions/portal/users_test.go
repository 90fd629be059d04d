package portal_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestPortalUsers: the Users page finds every user of the admin's org,
// disabled ones and those who never signed in too, by any part of the
// email and by status; a disabled user is enabled again from there; a
// locked-out user is unlocked from the user's page; another org's users
// are not shown.
func TestPortalUsers(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t, func(c *sessions.Config) { c.LoginLimit = sessions.RateLimit{N: 2, Window: time.Hour} })
	org, other := e.Org("A"), e.Org("B")
	_, adminEmail := e.User(org, "org_admin")
	anaID, ana := e.User(org, "user")
	e.Login(ana, "password-1")
	boID, bo := e.User(org, "user")
	_, stranger := e.User(other, "user")
	if _, _, err := e.Svc.SetUserDisabled(t.Context(), sessions.SystemPrincipal, boID, true, sessions.ClientMeta{}); err != nil {
		t.Fatal(err)
	}

	c := newPortalClient(t, e.Srv.URL)
	c.mustSignIn("admin", adminEmail)
	page := c.get("/admin/users")
	assertStatus(t, page, 200, "Users", ana, bo, "Disabled", "Never", `href="/admin/users/`+anaID+`"`)
	if strings.Contains(page.Body, stranger) {
		t.Fatal("an org admin sees another org's user")
	}
	found := c.get("/admin/users?email=" + url.QueryEscape(strings.ToUpper(bo[:10])) + "&status=disabled")
	assertStatus(t, found, 200, bo, "1 user on this page matching the filters")
	if strings.Contains(found.Body, ana) {
		t.Fatal("the search found a user it does not match")
	}
	assertStatus(t, c.get("/admin/users?status=maybe"), 400)

	// Enable bo from the directory, back to it.
	back := "/admin/users?status=disabled"
	assertRedirect(t, c.post("/admin/users/"+boID+"/enable", url.Values{"csrf": {csrf(t, page)}, "back": {back}, "reason_text": {" back from leave "}}), back)
	got := c.get("/admin/users?status=disabled")
	assertStatus(t, got, 200, bo+" is enabled again")
	if strings.Contains(got.Body, `href="/admin/users/`+boID+`"`) {
		t.Fatal("bo is still listed as disabled")
	}
	if n := e.Count("audit_log WHERE action = 'user_enabled' AND target_user_id = '" + boID + "' AND detail->>'reason_text' = 'back from leave'"); n != 1 {
		t.Fatal("the typed reason is not in the audit log")
	}
	long := url.Values{"csrf": {csrf(t, page)}, "reason_text": {strings.Repeat("x", 501)}}
	assertStatus(t, c.post("/admin/users/"+boID+"/disable", long), 400, "at most 500 bytes")
	if n := e.Count("users WHERE id = '" + boID + "' AND disabled_at IS NOT NULL"); n != 0 {
		t.Fatal("a refused reason disabled the user")
	}

	// Lock ana out, then clear it from her page.
	for range 2 {
		e.Call("POST", "/v1/auth/login", "", map[string]any{"email": ana, "password": "wrong-password"}, nil)
	}
	if code := e.Call("POST", "/v1/auth/login", "", map[string]any{"email": ana, "password": "password-1"}, nil); code != 429 {
		t.Fatalf("a locked account signs in: %d", code)
	}
	user := c.get("/admin/users/" + anaID)
	assertStatus(t, user, 200, "Clear sign-in lockout", "Last sign-in")
	assertRedirect(t, c.post("/admin/users/"+anaID+"/unlock", url.Values{"csrf": {csrf(t, user)}}), "/admin/users/"+anaID)
	assertStatus(t, c.get("/admin/users/"+anaID), 200, "sign-in lockout of "+ana+" is cleared")
	if code := e.Call("POST", "/v1/auth/login", "", map[string]any{"email": ana, "password": "password-1"}, nil); code != 200 {
		t.Fatalf("after clearing, sign-in: %d", code)
	}
}

// TestPortalPolicy: an org admin sees and saves its org's session policy;
// a bad duration is refused naming the field and saves nothing; another
// org's policy is out of reach.
func TestPortalPolicy(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("A"), e.Org("B")
	_, adminEmail := e.User(org, "org_admin")
	c := newPortalClient(t, e.Srv.URL)
	c.mustSignIn("admin", adminEmail)
	page := c.get("/admin/policy")
	assertStatus(t, page, 200, "Session policy", `name="max_sessions_per_user"`, `value="`+org+`"`)
	form := url.Values{"csrf": {csrf(t, page)}, "org_id": {org}, "max_sessions_per_user": {"3"}, "on_limit": {"deny"}, "idle_timeout": {"720h"}, "max_session_lifetime": {""}}
	assertRedirect(t, c.post("/admin/policy", form), "/admin/policy?org="+org)
	assertStatus(t, c.get("/admin/policy"), 200, "The session policy is saved", `value="3"`, `value="720h"`, `value="deny" selected`)
	pol, err := e.Svc.GetPolicy(t.Context(), sessions.SystemPrincipal, org)
	if err != nil || pol.MaxSessionsPerUser != 3 || pol.OnLimit != "deny" || pol.IdleTimeout != 720*time.Hour || pol.MaxSessionLifetime != 0 {
		t.Fatalf("saved %+v %v", pol, err)
	}
	form.Set("idle_timeout", "30s")
	assertStatus(t, c.post("/admin/policy", form), 400, "at least 1m")
	form.Set("idle_timeout", "soon")
	assertStatus(t, c.post("/admin/policy", form), 400, "Idle timeout")
	if pol, _ := e.Svc.GetPolicy(t.Context(), sessions.SystemPrincipal, org); pol.IdleTimeout != 720*time.Hour {
		t.Fatal("a refused policy was saved")
	}
	assertStatus(t, c.get("/admin/policy?org="+other), 404)
	form.Set("org_id", other)
	form.Set("idle_timeout", "1h")
	assertStatus(t, c.post("/admin/policy", form), 404)
}

// TestPortalSessionsTotalAndSort: the sessions table says how many match
// in all, not only on the page, and sorts by sign-in or by last activity.
func TestPortalSessionsTotalAndSort(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, adminEmail := e.User(org, "org_admin")
	_, ana := e.User(org, "user")
	e.Login(ana, "password-1")
	e.Login(ana, "password-1")
	c := newPortalClient(t, e.Srv.URL)
	c.mustSignIn("admin", adminEmail)
	assertStatus(t, c.get("/admin/?limit=2"), 200, "3 active sessions; 2 on this page.", `sort=signed_in`, `aria-sort="descending"><a href="/admin/?limit=2&amp;sort=last_active">Last active`)
	assertStatus(t, c.get("/admin/?sort=signed_in"), 200, `aria-sort="descending"><a href="/admin/?sort=signed_in">Signed in ↓`)
	assertStatus(t, c.get("/admin/?sort=email"), 400, "Sort must be last_active or signed_in")
}
