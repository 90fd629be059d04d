package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

type policyBody struct {
	MaxSessionsPerUser int    `json:"max_sessions_per_user"`
	OnLimit            string `json:"on_limit"`
	IdleTimeout        string `json:"idle_timeout"`
	MaxSessionLifetime string `json:"max_session_lifetime"`
}

// TestPolicyEndpoints: an org admin reads and sets its org's policy, not
// another's; a plain user may not; bad fields are refused, named, and
// nothing is written.
func TestPolicyEndpoints(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("Policy"), e.Org("Other")
	_, admin := e.NewUser(org, "org_admin")
	_, user := e.NewUser(org, "user")
	var got policyBody
	if code := e.Call("GET", "/v1/orgs/"+org+"/policy", admin.AccessToken, nil, &got); code != 200 ||
		got != (policyBody{0, "revoke_oldest", "0s", "0s"}) {
		t.Fatalf("default policy: %d %+v", code, got)
	}
	want := policyBody{3, "deny", "15m0s", "720h0m0s"}
	if code := e.Call("PUT", "/v1/orgs/"+org+"/policy", admin.AccessToken, map[string]any{"max_sessions_per_user": 3, "on_limit": "deny", "idle_timeout": "15m", "max_session_lifetime": "720h"}, &got); code != 200 || got != want {
		t.Fatalf("set: %d %+v", code, got)
	}
	if code := e.Call("GET", "/v1/orgs/"+org+"/policy", e.Admin.AccessToken, nil, &got); code != 200 || got != want {
		t.Fatalf("read back by a global admin: %d %+v", code, got)
	}
	for _, c := range []struct {
		token, org string
		want       int
	}{{admin.AccessToken, other, 404}, {user.AccessToken, org, 403}, {e.Admin.AccessToken, other, 200}} {
		if code := e.Call("PUT", "/v1/orgs/"+c.org+"/policy", c.token, map[string]any{}, nil); code != c.want {
			t.Errorf("PUT %s: %d, want %d", c.org, code, c.want)
		}
	}
	audit := e.Count("audit_log WHERE action = 'policy_changed'")
	for field, body := range map[string]string{
		"idle_timeout":          `{"idle_timeout":"30s"}`,
		"max_session_lifetime":  `{"max_session_lifetime":"9000h"}`,
		"on_limit":              `{"on_limit":"kick"}`,
		"max_sessions_per_user": `{"max_sessions_per_user":-1}`,
		"idle_timeout ":         `{"idle_timeout":"soon"}`,
		"maximum":               `{"maximum":2}`,
	} {
		r := e.Raw("PUT", "/v1/orgs/"+org+"/policy", admin.AccessToken, "application/json", []byte(body))
		sessionstest.AssertProblem(t, r, 400)
		if !strings.Contains(string(r.Body), strings.TrimSpace(field)) {
			t.Errorf("%s: the problem does not name %s: %s", body, field, r.Body)
		}
	}
	if e.Count("audit_log WHERE action = 'policy_changed'") != audit {
		t.Fatal("a refused policy was recorded")
	}
	if code := e.Call("GET", "/v1/orgs/"+org+"/policy", admin.AccessToken, nil, &got); code != 200 || got != want {
		t.Fatalf("a refused policy changed it: %+v", got)
	}
}

// TestSessionCap: under revoke_oldest, a login past the cap ends the
// user's oldest sessions (reason session_limit) and its tokens die; under
// deny, it is refused with problem session_limit and nothing is written.
func TestSessionCap(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Capped")
	_, email := e.User(org, "user")
	if _, err := e.Svc.SetPolicy(context.Background(), sessions.SystemPrincipal, org, sessions.Policy{MaxSessionsPerUser: 2, OnLimit: "revoke_oldest"}, sessions.ClientMeta{}); err != nil {
		t.Fatal(err)
	}
	first := e.Login(email, "password-1")
	e.Clock.Advance(time.Millisecond)
	second := e.Login(email, "password-1")
	e.Clock.Advance(time.Millisecond)
	third := e.Login(email, "password-1")
	if e.Alive(first.AccessToken) || !e.Alive(second.AccessToken) || !e.Alive(third.AccessToken) {
		t.Fatal("revoke_oldest did not end exactly the oldest session")
	}
	if n := e.Count("sessions WHERE id = '" + first.SessionID + "' AND revoked_reason = 'session_limit'"); n != 1 {
		t.Fatal("the oldest session is not revoked with reason session_limit")
	}
	if _, err := e.Svc.SetPolicy(context.Background(), sessions.SystemPrincipal, org, sessions.Policy{MaxSessionsPerUser: 2, OnLimit: "deny"}, sessions.ClientMeta{}); err != nil {
		t.Fatal(err)
	}
	before := e.Snapshot()
	for range 3 { // a refusal for the cap is no failed sign-in: no lockout follows
		r := e.Raw("POST", "/v1/auth/login", "", "application/json", []byte(`{"email":"`+email+`","password":"password-1"}`))
		sessionstest.AssertProblem(t, r, 409)
	}
	if n := e.Count("login_failures"); n != before["login_failures"] {
		t.Fatalf("refusals for the cap counted as %d failed sign-ins", n-before["login_failures"])
	}
	r := e.Raw("POST", "/v1/auth/login", "", "application/json", []byte(`{"email":"`+email+`","password":"password-1"}`))
	sessionstest.AssertProblem(t, r, 409)
	if !strings.Contains(string(r.Body), "urn:sessionguard:problem:session_limit") {
		t.Fatalf("the refusal is not problem session_limit: %s", r.Body)
	}
	if after := e.Snapshot(); after["sessions"] != before["sessions"] || after["outbox"] != before["outbox"] {
		t.Fatalf("a denied login wrote: %v → %v", before, after)
	}
	if !e.Alive(second.AccessToken) || !e.Alive(third.AccessToken) {
		t.Fatal("a denied login ended a session")
	}
}

// TestIdleAndLifetime: a session idle past the org's timeout, or older
// than its lifetime bound, is refused at refresh at once and revoked
// (published, with its reason); the sweep revokes the others such a policy
// ends, and leaves the rest.
func TestIdleAndLifetime(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	ctx := context.Background()
	org := e.Org("Idle")
	_, email := e.User(org, "user")
	base := time.Now().UTC().Truncate(time.Second)
	e.Clock.Set(base)
	idle := e.Login(email, "password-1")
	sweptIdle := e.Login(email, "password-1")
	if _, err := e.Svc.SetPolicy(ctx, sessions.SystemPrincipal, org, sessions.Policy{OnLimit: "revoke_oldest", IdleTimeout: 10 * time.Minute, MaxSessionLifetime: time.Hour}, sessions.ClientMeta{}); err != nil {
		t.Fatal(err)
	}
	e.Clock.Set(base.Add(9 * time.Minute))
	active := e.Login(email, "password-1")
	e.Clock.Set(base.Add(10 * time.Minute)) // idle, sweptIdle: idle for exactly the timeout
	outbox := e.Count("outbox WHERE subject = 'revocations.v1.session'")
	if code := e.Refresh(idle.RefreshToken, nil); code != 401 {
		t.Fatalf("refresh of an idle session: %d, want 401", code)
	}
	if n := e.Count("sessions WHERE id = '" + idle.SessionID + "' AND revoked_reason = 'idle_timeout'"); n != 1 {
		t.Fatal("the idle session is not revoked at its refresh")
	}
	if n := e.Count("outbox WHERE subject = 'revocations.v1.session'") - outbox; n != 1 {
		t.Fatalf("%d revocation events at the refresh, want 1", n)
	}
	if n, err := e.Svc.SweepPolicies(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v, want the other idle session", n, err)
	}
	if n := e.Count("sessions WHERE id = '" + sweptIdle.SessionID + "' AND revoked_reason = 'idle_timeout'"); n != 1 {
		t.Fatal("the sweep did not revoke the idle session")
	}
	var p sessions.TokenPair
	if code := e.Refresh(active.RefreshToken, &p); code != 200 {
		t.Fatalf("a session active a minute ago: refresh %d", code)
	}
	// An hour after its sign-in (at 9 min), the lifetime ends it, however
	// active it is.
	if _, err := e.Svc.SetPolicy(ctx, sessions.SystemPrincipal, org, sessions.Policy{OnLimit: "revoke_oldest", MaxSessionLifetime: time.Hour}, sessions.ClientMeta{}); err != nil {
		t.Fatal(err)
	}
	e.Clock.Set(base.Add(68*time.Minute + 59*time.Second))
	if code := e.Refresh(p.RefreshToken, &p); code != 200 {
		t.Fatalf("before its lifetime's end: refresh %d", code)
	}
	if n, err := e.Svc.SweepPolicies(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before the lifetime's end: %d %v", n, err)
	}
	e.Clock.Set(base.Add(69 * time.Minute))
	if n, err := e.Svc.SweepPolicies(ctx); err != nil || n != 1 {
		t.Fatalf("sweep at the lifetime's end: %d %v", n, err)
	}
	if n := e.Count("sessions WHERE id = '" + active.SessionID + "' AND revoked_reason = 'max_lifetime'"); n != 1 {
		t.Fatal("the sweep did not end the session at its lifetime")
	}
}
