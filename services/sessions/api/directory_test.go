package api_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

type userPage struct {
	Users      []sessions.User `json:"users"`
	NextCursor *string         `json:"next_cursor"`
}

// TestUserDirectory: the directory lists every user in scope whatever
// their sessions (a disabled user, one who never signed in), by email, with
// the last sign-in and the live sessions; it searches any part of an email
// in any case, literally, filters by status, pages without gaps or
// repeats, keeps org admins to their org (never a global admin), and
// refuses bad filters naming them.
func TestUserDirectory(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("Directory"), e.Org("Elsewhere")
	adminID, admin := e.NewUser(org, "org_admin")
	anaID, ana := e.User(org, "user")
	e.Login(ana, "password-1")
	e.Login(ana, "password-1")
	boID, _ := e.NewUser(org, "user")
	carlID, _ := e.User(org, "user") // never signs in
	e.User(other, "user")
	if code := e.Call("PATCH", "/v1/users/"+boID, admin.AccessToken, map[string]bool{"disabled": true}, nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}

	list := func(token, query string) (userPage, int) {
		t.Helper()
		var p userPage
		code := e.Call("GET", "/v1/users?"+query, token, nil, &p)
		return p, code
	}
	byID := func(p userPage) map[string]sessions.User {
		m := map[string]sessions.User{}
		for _, u := range p.Users {
			m[u.ID] = u
		}
		return m
	}
	page, code := list(e.Admin.AccessToken, "org_id="+org)
	if code != 200 || len(page.Users) != 4 || page.NextCursor != nil {
		t.Fatalf("the org's users: %d %+v", code, page)
	}
	for i := 1; i < len(page.Users); i++ {
		if strings.ToLower(page.Users[i-1].Email) >= strings.ToLower(page.Users[i].Email) {
			t.Fatalf("not by email: %s before %s", page.Users[i-1].Email, page.Users[i].Email)
		}
	}
	users := byID(page)
	switch {
	case users[anaID].ActiveSessions != 2 || users[anaID].LastLoginAt == nil:
		t.Errorf("ana: %+v, want 2 live sessions and a last sign-in", users[anaID])
	case !users[boID].Disabled || users[boID].ActiveSessions != 0 || users[boID].LastLoginAt == nil:
		t.Errorf("bo: %+v, want disabled with no live session and a last sign-in", users[boID])
	case users[carlID].LastLoginAt != nil || users[carlID].ActiveSessions != 0:
		t.Errorf("carl: %+v, want never signed in", users[carlID])
	case users[adminID].Role != "org_admin":
		t.Errorf("the admin: %+v", users[adminID])
	}

	// Search: any part, any case, literally.
	part := strings.ToUpper(ana[2:9])
	if p, code := list(admin.AccessToken, "email="+url.QueryEscape(part)); code != 200 || len(p.Users) != 1 || p.Users[0].ID != anaID {
		t.Errorf("search %q: %d %+v", part, code, p)
	}
	if p, code := list(admin.AccessToken, "email=%25"); code != 200 || len(p.Users) != 0 {
		t.Errorf(`search "%%" matched %d users: it must be literal`, len(p.Users))
	}
	if p, code := list(admin.AccessToken, "disabled=true"); code != 200 || len(p.Users) != 1 || p.Users[0].ID != boID {
		t.Errorf("disabled=true: %d %+v", code, p)
	}
	if p, code := list(admin.AccessToken, "disabled=false"); code != 200 || len(p.Users) != 3 || byID(p)[boID].ID != "" {
		t.Errorf("disabled=false: %d %+v", code, p)
	}

	// An org admin sees its org, never the global admin of the platform.
	if p, code := list(admin.AccessToken, ""); code != 200 || len(p.Users) != 4 {
		t.Errorf("the org admin's directory: %d, %d users", code, len(p.Users))
	}
	if p, _ := list(e.Admin.AccessToken, "org_id="+e.OrgP); byID(p)[e.AdminID].ID == "" {
		t.Error("the global admin does not see itself")
	}
	if _, code := list(admin.AccessToken, "org_id="+other); code != 404 {
		t.Errorf("an org admin naming another org: %d, want 404", code)
	}

	// Pages of one: every user once, in order.
	seen, cursor := map[string]bool{}, ""
	for range 10 {
		q := "org_id=" + org + "&limit=1"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		p, code := list(e.Admin.AccessToken, q)
		if code != 200 || len(p.Users) != 1 || seen[p.Users[0].ID] {
			t.Fatalf("page %d: %d %+v", len(seen), code, p)
		}
		seen[p.Users[0].ID] = true
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if len(seen) != 4 {
		t.Fatalf("paging saw %d users, want 4", len(seen))
	}

	// Searches of one or two characters: few matches (read through the
	// index of characters and pairs) and many (the walk in email order).
	for _, term := range []string{ana[5:7], "q"} {
		p, code := list(e.Admin.AccessToken, "email="+url.QueryEscape(term))
		if code != 200 {
			t.Fatalf("search %q: %d", term, code)
		}
		for _, u := range p.Users {
			if !strings.Contains(strings.ToLower(u.Email), strings.ToLower(term)) {
				t.Errorf("search %q found %s", term, u.Email)
			}
		}
		if term != "q" && byID(p)[anaID].ID == "" {
			t.Errorf("search %q misses %s", term, ana)
		}
	}
	if _, err := e.Pool.Exec(context.Background(), `INSERT INTO users (id, org_id, email, role)
		SELECT gen_random_uuid(), $1, 'many-' || n || '@qq.example', 'user' FROM generate_series(1, 2100) n`, other); err != nil {
		t.Fatal(err)
	}
	p, code := list(e.Admin.AccessToken, "email=QQ&limit=60")
	if code != 200 || len(p.Users) != 60 || p.NextCursor == nil {
		t.Fatalf("a common pair: %d, %d users", code, len(p.Users))
	}
	for i, u := range p.Users {
		if !strings.Contains(u.Email, "qq") || (i > 0 && p.Users[i-1].Email >= u.Email) {
			t.Fatalf("a common pair's page: %s at %d", u.Email, i)
		}
	}

	// One user, disabled or not.
	var u sessions.User
	if code := e.Call("GET", "/v1/users/"+boID, admin.AccessToken, nil, &u); code != 200 || !u.Disabled || u.Email == "" {
		t.Errorf("a disabled user's page: %d %+v", code, u)
	}

	for _, bad := range []struct{ query, field string }{
		{"org_id=nope", "org_id"}, {"disabled=maybe", "disabled"}, {"limit=0", "limit"},
		{"cursor=" + url.QueryEscape("not a cursor!"), "cursor"}, {"email=" + strings.Repeat("a", 255), "email"},
	} {
		r := e.Raw("GET", "/v1/users?"+bad.query, admin.AccessToken, "", nil)
		sessionstest.AssertProblem(t, r, 400)
		if !strings.Contains(string(r.Body), bad.field) {
			t.Errorf("%s: the problem does not name %s: %s", bad.query, bad.field, r.Body)
		}
	}
}

// TestOrgDirectoryAndUniqueNames: a global admin sees every org with its
// counts, an org admin its own; a name that exists in another case is 409.
func TestOrgDirectoryAndUniqueNames(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Counted")
	_, admin := e.NewUser(org, "org_admin")
	e.NewUser(org, "user")
	e.Org("Another")
	type orgList struct {
		Orgs []sessions.OrgSummary `json:"orgs"`
	}
	var all, own orgList
	if code := e.Call("GET", "/v1/orgs", e.Admin.AccessToken, nil, &all); code != 200 || len(all.Orgs) != 3 {
		t.Fatalf("every org: %d %+v", code, all)
	}
	if code := e.Call("GET", "/v1/orgs", admin.AccessToken, nil, &own); code != 200 || len(own.Orgs) != 1 ||
		own.Orgs[0].ID != org || own.Orgs[0].Users != 2 || own.Orgs[0].ActiveSessions != 2 {
		t.Fatalf("the org admin's org: %d %+v", code, own)
	}
	var created sessions.Org
	if code := e.Call("POST", "/v1/orgs", e.Admin.AccessToken, map[string]string{"name": "Acme"}, &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	for _, name := range []string{"acme", " ACME "} {
		r := e.Raw("POST", "/v1/orgs", e.Admin.AccessToken, "application/json", []byte(`{"name":"`+name+`"}`))
		sessionstest.AssertProblem(t, r, 409)
	}
}

// TestMe: the caller's own user, with the session of its token.
func TestMe(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Me")
	id, tok := e.NewUser(org, "user")
	var me struct {
		sessions.User
		SessionID string `json:"session_id"`
	}
	if code := e.Call("GET", "/v1/me", tok.AccessToken, nil, &me); code != 200 || me.ID != id || me.OrgID != org ||
		me.SessionID != tok.SessionID || me.ActiveSessions != 1 || me.LastLoginAt == nil {
		t.Fatalf("me: %d %+v", code, me)
	}
}

// TestClearingALockout: an account locked by failed sign-ins gets 429 even
// with the right password, until an admin in scope clears its failures;
// then it signs in at once, and the audit log says who cleared it.
func TestClearingALockout(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t, func(c *sessions.Config) { c.LoginLimit = sessions.RateLimit{N: 3, Window: time.Hour} })
	org := e.Org("Locked")
	_, admin := e.NewUser(org, "org_admin")
	id, email := e.User(org, "user")
	for range 3 {
		e.Call("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": "wrong-password"}, nil)
	}
	login := func() int {
		return e.Call("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": "password-1"}, nil)
	}
	if code := login(); code != 429 {
		t.Fatalf("a locked account signs in: %d", code)
	}
	if code := e.Call("DELETE", "/v1/users/"+id+"/login-failures", admin.AccessToken, nil, nil); code != 204 {
		t.Fatalf("clear: %d", code)
	}
	if code := login(); code != 200 {
		t.Fatalf("after clearing, sign-in: %d", code)
	}
	if n := e.Count("audit_log WHERE action = 'lockout_cleared' AND target_user_id = '" + id + "' AND detail->>'failures_cleared' = '3'"); n != 1 {
		t.Fatalf("%d audit entries for the clearing, want 1 naming 3 failures", n)
	}
}

// TestListingBySignIn: the admin listing orders by sign-in time on asking,
// pages in that order, and refuses an unknown order.
func TestListingBySignIn(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Sorted")
	_, admin := e.NewUser(org, "org_admin")
	_, email := e.User(org, "user")
	base := e.Clock.Now()
	var ids []string
	for i := range 3 {
		e.Clock.Set(base.Add(time.Duration(i) * time.Minute))
		ids = append(ids, e.Login(email, "password-1").SessionID)
	}
	// The oldest sign-in is the most recently active.
	e.Clock.Set(base.Add(5 * time.Minute))
	if _, err := e.Pool.Exec(context.Background(), `UPDATE sessions SET last_active_at = $2 WHERE id = $1`, ids[0], base.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	for range 5 {
		var p struct {
			Sessions []sessions.Session `json:"sessions"`
			Next     *string            `json:"next_cursor"`
		}
		q := "/v1/sessions?sort=signed_in&limit=2&org_id=" + org
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		if code := e.Call("GET", q, admin.AccessToken, nil, &p); code != 200 {
			t.Fatalf("list: %d", code)
		}
		for _, s := range p.Sessions {
			got = append(got, s.ID)
		}
		if p.Next == nil {
			break
		}
		cursor = *p.Next
	}
	pos := map[string]int{}
	for i, id := range got {
		pos[id] = i
	}
	if !(pos[ids[2]] < pos[ids[1]] && pos[ids[1]] < pos[ids[0]]) {
		t.Fatalf("not newest sign-in first: %v (signed in in the order %v)", got, ids)
	}
	sessionstest.AssertProblem(t, e.Raw("GET", "/v1/sessions?sort=email", admin.AccessToken, "", nil), 400)
}
