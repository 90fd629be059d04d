package portal_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestPortalRevokeByRule: an org admin picks a filter, sees how many
// sessions of how many users will end, must type a reason, and then sees
// the result; the other org's sessions live on, and a plain user is not
// offered the page.
func TestPortalRevokeByRule(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("A"), e.Org("B")
	_, adminEmail := e.User(org, "org_admin")
	_, ana := e.User(org, "user")
	_, stranger := e.User(other, "user")
	victims := []string{e.Login(ana, "password-1").AccessToken, e.Login(ana, "password-1").AccessToken}
	bystander := e.Login(stranger, "password-1").AccessToken

	c := newPortalClient(t, e.Srv.URL)
	c.mustSignIn("admin", adminEmail)
	page := c.get("/admin/revoke")
	assertStatus(t, page, 200, "Revoke by rule", `name="org_id"`, `value="`+org+`"`)
	if strings.Contains(page.Body, other) {
		t.Fatal("an org admin is offered another org")
	}
	token := csrf(t, page)
	form := url.Values{"csrf": {token}, "step": {"count"}, "org_id": {org}, "role": {"user"}}
	assertStatus(t, c.post("/admin/revoke", form), 200, "2 sessions of 1 user will end", `name="reason"`)
	for _, tok := range victims {
		if !e.Alive(tok) {
			t.Fatal("counting revoked something")
		}
	}
	form.Set("step", "revoke")
	assertStatus(t, c.post("/admin/revoke", form), 400, "Type the reason")
	form.Set("reason", "SSO compromised")
	assertRedirect(t, c.post("/admin/revoke", form), "/admin/")
	assertStatus(t, c.get("/admin/"), 200, "Revoked 2 sessions of 1 user.")
	for _, tok := range victims {
		if e.Alive(tok) {
			t.Fatal("a matched session survived")
		}
	}
	if !e.Alive(bystander) {
		t.Fatal("another org's session was revoked")
	}
	form.Set("org_id", other)
	form.Set("step", "count")
	assertStatus(t, c.post("/admin/revoke", form), 404)

	_, userEmail := e.User(org, "user")
	u := newPortalClient(t, e.Srv.URL)
	u.mustSignIn("account", userEmail)
	if r := u.get("/admin/revoke"); r.Status == 200 {
		t.Fatal("a plain user reached the page")
	}
}
