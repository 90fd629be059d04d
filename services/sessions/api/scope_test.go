package api_test

import (
	"fmt"
	"testing"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestScopeMatrix checks every role against every endpoint with targets in
// the caller's own user, another user of its org, and another org. Each case
// gets a fresh caller and a fresh target, so destructive cases stay apart.
func TestScopeMatrix(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	orgA, orgB := e.Org("A"), e.Org("B")

	type caller struct {
		role string
		org  string // own org
		peer string // the org that is not its own
	}
	callers := []caller{
		{"user", orgA, orgB},
		{"org_admin", orgA, orgB},
		{"global_admin", e.OrgP, orgA},
	}
	const (
		self     = "self"
		sameOrg  = "same_org"
		otherOrg = "other_org"
	)
	targets := []string{self, sameOrg, otherOrg}

	type setup struct {
		callerID  string
		caller    sessions.TokenPair
		targetID  string
		target    sessions.TokenPair // a live session of the target user
		targetOrg string
	}
	prepare := func(c caller, target string) setup {
		id, tok := e.NewUser(c.org, c.role)
		s := setup{callerID: id, caller: tok}
		switch target {
		case self:
			// a second session of the caller, so revoking it leaves the caller's token alive
			s.targetID, s.targetOrg = id, c.org
			s.target = e.Login(e.EmailOf(id), "password-1")
		case sameOrg:
			s.targetOrg = c.org
			s.targetID, s.target = e.NewUser(c.org, "user")
		case otherOrg:
			s.targetOrg = c.peer
			s.targetID, s.target = e.NewUser(c.peer, "user")
		}
		return s
	}

	// want[role][target] per endpoint.
	type expect map[string]map[string]int
	all := func(code int) map[string]int { return map[string]int{self: code, sameOrg: code, otherOrg: code} }
	cases := []struct {
		name  string
		do    func(s setup) int
		want  expect
		check func(t *testing.T, s setup, code int) // effect, when it succeeded
	}{
		{
			name: "GET /v1/sessions/{id}",
			do: func(s setup) int {
				return e.Call("GET", "/v1/sessions/"+s.target.SessionID, s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 200, sameOrg: 200, otherOrg: 404},
				"global_admin": all(200),
			},
		},
		{
			name: "DELETE /v1/sessions/{id}",
			do: func(s setup) int {
				return e.Call("DELETE", "/v1/sessions/"+s.target.SessionID, s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 204, sameOrg: 204, otherOrg: 404},
				"global_admin": all(204),
			},
			check: func(t *testing.T, s setup, code int) {
				if got := e.Alive(s.target.AccessToken); got != (code != 204) {
					t.Fatalf("target token alive = %v after status %d", got, code)
				}
				if !e.Alive(s.caller.AccessToken) {
					t.Fatal("caller's own token died")
				}
			},
		},
		{
			name: "DELETE /v1/users/{id}/sessions",
			do: func(s setup) int {
				return e.Call("DELETE", "/v1/users/"+s.targetID+"/sessions", s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 200, sameOrg: 200, otherOrg: 404},
				"global_admin": all(200),
			},
			check: func(t *testing.T, s setup, code int) {
				if got := e.Alive(s.target.AccessToken); got != (code != 200) {
					t.Fatalf("target token alive = %v after status %d", got, code)
				}
			},
		},
		{
			name: "PATCH /v1/users/{id} disable",
			do: func(s setup) int {
				return e.Call("PATCH", "/v1/users/"+s.targetID, s.caller.AccessToken, map[string]bool{"disabled": true}, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 400, sameOrg: 200, otherOrg: 404},
				"global_admin": {self: 400, sameOrg: 200, otherOrg: 200},
			},
			check: func(t *testing.T, s setup, code int) {
				if got := e.Alive(s.target.AccessToken); got != (code != 200) {
					t.Fatalf("target token alive = %v after status %d", got, code)
				}
			},
		},
		{
			name: "GET /v1/users/{id}",
			do: func(s setup) int {
				return e.Call("GET", "/v1/users/"+s.targetID, s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 200, sameOrg: 200, otherOrg: 404},
				"global_admin": all(200),
			},
		},
		{
			name: "GET /v1/users?org_id=target org",
			do: func(s setup) int {
				return e.Call("GET", "/v1/users?org_id="+s.targetOrg, s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 200, sameOrg: 200, otherOrg: 404},
				"global_admin": all(200),
			},
		},
		{
			name: "DELETE /v1/users/{id}/login-failures",
			do: func(s setup) int {
				return e.Call("DELETE", "/v1/users/"+s.targetID+"/login-failures", s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 204, sameOrg: 204, otherOrg: 404},
				"global_admin": all(204),
			},
		},
		{
			name: "GET /v1/orgs",
			do: func(s setup) int {
				return e.Call("GET", "/v1/orgs", s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    all(200),
				"global_admin": all(200),
			},
		},
		{
			name: "GET /v1/orgs/{target org}/policy",
			do: func(s setup) int {
				return e.Call("GET", "/v1/orgs/"+s.targetOrg+"/policy", s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 200, sameOrg: 200, otherOrg: 404},
				"global_admin": all(200),
			},
		},
		{
			name: "PATCH /v1/me/sessions/{id}",
			do: func(s setup) int {
				return e.Call("PATCH", "/v1/me/sessions/"+s.target.SessionID, s.caller.AccessToken, map[string]string{"device_name": "renamed"}, nil)
			},
			want: expect{
				"user":         {self: 200, sameOrg: 404, otherOrg: 404},
				"org_admin":    {self: 200, sameOrg: 404, otherOrg: 404},
				"global_admin": {self: 200, sameOrg: 404, otherOrg: 404},
			},
		},
		{
			name: "GET /v1/me",
			do: func(s setup) int {
				return e.Call("GET", "/v1/me", s.caller.AccessToken, nil, nil)
			},
			want: expect{"user": all(200), "org_admin": all(200), "global_admin": all(200)},
		},
		{
			name: "GET /v1/sessions?org_id=target org",
			do: func(s setup) int {
				return e.Call("GET", "/v1/sessions?org_id="+s.targetOrg, s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 200, sameOrg: 200, otherOrg: 403},
				"global_admin": all(200),
			},
		},
		{
			name: "GET /v1/sessions?user_id=target",
			do: func(s setup) int {
				var page sessionPage
				code := e.Call("GET", "/v1/sessions?user_id="+s.targetID, s.caller.AccessToken, nil, &page)
				if code == 200 && len(page.Sessions) == 0 {
					return 299 // in scope yet invisible, or out of scope and filtered: see want
				}
				return code
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 200, sameOrg: 200, otherOrg: 299},
				"global_admin": all(200),
			},
		},
		{
			name: "POST /v1/users role user in target org",
			do: func(s setup) int {
				return e.Call("POST", "/v1/users", s.caller.AccessToken, map[string]string{"org_id": s.targetOrg, "email": sessionstest.UniqueEmail("new"), "password": "password-1", "role": "user"}, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    {self: 201, sameOrg: 201, otherOrg: 403},
				"global_admin": all(201),
			},
		},
		{
			name: "POST /v1/users role global_admin in target org",
			do: func(s setup) int {
				return e.Call("POST", "/v1/users", s.caller.AccessToken, map[string]string{"org_id": s.targetOrg, "email": sessionstest.UniqueEmail("new"), "password": "password-1", "role": "global_admin"}, nil)
			},
			want: expect{
				"user":         all(403),
				"org_admin":    all(403),
				"global_admin": all(201),
			},
		},
		{
			name: "POST /v1/orgs",
			do: func(s setup) int {
				return e.Call("POST", "/v1/orgs", s.caller.AccessToken, map[string]string{"name": "new org " + s.callerID}, nil) // names are unique
			},
			want: expect{"user": all(403), "org_admin": all(403), "global_admin": all(201)},
		},
		{
			name: "DELETE /v1/me/sessions/{id}",
			do: func(s setup) int {
				return e.Call("DELETE", "/v1/me/sessions/"+s.target.SessionID, s.caller.AccessToken, nil, nil)
			},
			want: expect{
				"user":         {self: 204, sameOrg: 404, otherOrg: 404},
				"org_admin":    {self: 204, sameOrg: 404, otherOrg: 404},
				"global_admin": {self: 204, sameOrg: 404, otherOrg: 404},
			},
			check: func(t *testing.T, s setup, code int) {
				if got := e.Alive(s.target.AccessToken); got != (code != 204) {
					t.Fatalf("target token alive = %v after status %d", got, code)
				}
			},
		},
		{
			name: "GET /v1/me/sessions",
			do: func(s setup) int {
				var list struct{ Sessions []sessions.Session }
				code := e.Call("GET", "/v1/me/sessions", s.caller.AccessToken, nil, &list)
				for _, x := range list.Sessions {
					if x.UserID != s.callerID {
						return 999 // someone else's session leaked
					}
				}
				return code
			},
			want: expect{"user": all(200), "org_admin": all(200), "global_admin": all(200)},
		},
	}
	for _, tc := range cases {
		for _, c := range callers {
			for _, target := range targets {
				t.Run(fmt.Sprintf("%s/%s/%s", tc.name, c.role, target), func(t *testing.T) {
					s := prepare(c, target)
					want := tc.want[c.role][target]
					got := tc.do(s)
					if got != want {
						t.Fatalf("status %d, want %d", got, want)
					}
					if tc.check != nil {
						tc.check(t, s, got)
					}
				})
			}
		}
	}
}

// TestOrgAdminListingSeesOnlyItsOrg checks the content, not only the status.
func TestOrgAdminListingSeesOnlyItsOrg(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	orgA, orgB := e.Org("A"), e.Org("B")
	_, adminA := e.NewUser(orgA, "org_admin")
	for i := 0; i < 3; i++ {
		e.NewUser(orgA, "user")
		e.NewUser(orgB, "user")
	}
	var page sessionPage
	if code := e.Call("GET", "/v1/sessions", adminA.AccessToken, nil, &page); code != 200 {
		t.Fatalf("status %d", code)
	}
	if len(page.Sessions) != 4 {
		t.Fatalf("org admin sees %d sessions, want 4 (3 users and itself)", len(page.Sessions))
	}
	for _, s := range page.Sessions {
		if s.OrgID != orgA {
			t.Fatalf("org admin sees a session of org %s", s.OrgID)
		}
	}
	var all sessionPage
	e.Call("GET", "/v1/sessions", e.Admin.AccessToken, nil, &all)
	if len(all.Sessions) != 8 {
		t.Fatalf("global admin sees %d sessions, want 8", len(all.Sessions))
	}
}
