package api_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestEachRevocationWritesTheContractsEvent: every way of revoking puts the
// contract's event in the outbox, with its revocation row and audit row, in
// the same transaction.
func TestEachRevocationWritesTheContractsEvent(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, orgAdmin := e.NewUser(org, "org_admin")

	type result struct {
		subject string
		reason  events.Reason
		n       int // outbox rows
	}
	cases := []struct {
		name string
		do   func(userID string, p sessions.TokenPair) int
		want result
	}{
		{"logout", func(_ string, p sessions.TokenPair) int {
			return e.Call("POST", "/v1/auth/logout", p.AccessToken, nil, nil)
		},
			result{events.SubjectSessionRevoked, events.ReasonLogout, 1}},
		{"self revoke", func(_ string, p sessions.TokenPair) int {
			return e.Call("DELETE", "/v1/me/sessions/"+p.SessionID, p.AccessToken, nil, nil)
		}, result{events.SubjectSessionRevoked, events.ReasonSelfRevoke, 1}},
		{"admin revoke", func(_ string, p sessions.TokenPair) int {
			return e.Call("DELETE", "/v1/sessions/"+p.SessionID, orgAdmin.AccessToken, nil, nil)
		}, result{events.SubjectSessionRevoked, events.ReasonAdminRevoke, 1}},
		{"revoke all of a user", func(id string, _ sessions.TokenPair) int {
			return e.Call("DELETE", "/v1/users/"+id+"/sessions", orgAdmin.AccessToken, nil, nil)
		}, result{events.SubjectUserRevoked, events.ReasonAdminRevoke, 1}},
		{"disable", func(id string, _ sessions.TokenPair) int {
			return e.Call("PATCH", "/v1/users/"+id, orgAdmin.AccessToken, map[string]bool{"disabled": true}, nil)
		}, result{events.SubjectUserRevoked, events.ReasonUserDisabled, 1}},
		{"sign out other devices", func(id string, p sessions.TokenPair) int {
			e.Login(e.EmailOf(id), "password-1")
			e.Login(e.EmailOf(id), "password-1")
			return e.Call("DELETE", "/v1/me/sessions", p.AccessToken, nil, nil)
		}, result{events.SubjectSessionRevoked, events.ReasonUserRevokeAll, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, p := e.NewUser(org, "user")
			before := len(e.Outbox())
			start := time.Now()
			if code := tc.do(id, p); code/100 != 2 {
				t.Fatalf("status %d", code)
			}
			var rows []sessionstest.OutboxRow
			for _, r := range e.Outbox()[before:] {
				if r.Subject != events.SubjectSessionCreated { // the sign-ins of the case
					rows = append(rows, r)
				}
			}
			if len(rows) != tc.want.n {
				t.Fatalf("%d outbox rows, want %d", len(rows), tc.want.n)
			}
			for _, r := range rows {
				if r.Subject != tc.want.subject {
					t.Fatalf("subject %s, want %s", r.Subject, tc.want.subject)
				}
				switch ev := r.Event.(type) {
				case events.SessionRevoked:
					if ev.Sub != id || ev.Org != org || ev.Reason != tc.want.reason || ev.RevokedAt.Before(start.Add(-time.Second)) ||
						ev.ExpiresAt.Sub(ev.RevokedAt) != 5*time.Minute+events.RevocationLeeway {
						t.Fatalf("event %+v", ev)
					}
					if tc.want.reason != events.ReasonUserRevokeAll && ev.SID != p.SessionID {
						t.Fatalf("event names session %s, want %s", ev.SID, p.SessionID)
					}
					if tc.want.reason == events.ReasonUserRevokeAll && ev.SID == p.SessionID {
						t.Fatal("sign out other devices revoked the current session")
					}
				case events.UserRevoked:
					if ev.Sub != id || ev.Org != org || ev.Reason != tc.want.reason || ev.NotBefore.Nanosecond()%1000 != 0 || ev.NotBefore.Before(ev.RevokedAt.Truncate(time.Microsecond)) {
						t.Fatalf("event %+v", ev)
					}
				}
				var n int
				if err := e.Pool.QueryRow(t.Context(), "SELECT count(*) FROM revocations WHERE event_id = $1", r.Event.ID()).Scan(&n); err != nil || n != 1 {
					t.Fatalf("revocation row for %s: %d %v", r.Event.ID(), n, err)
				}
			}
			var audited int
			_ = e.Pool.QueryRow(t.Context(), "SELECT count(*) FROM audit_log WHERE target_user_id = $1 AND reason = $2", id, string(tc.want.reason)).Scan(&audited)
			if audited == 0 {
				t.Fatal("no audit row")
			}
		})
	}
}

// TestRevocationRolledBackLeavesNothing makes the last write of a
// revocation fail (a trigger on the audit log) and checks that nothing of it
// remains: the session lives, its refresh token works, no revocation or
// outbox row exists.
func TestRevocationRolledBackLeavesNothing(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	id, p := e.NewUser(org, "user")
	_, err := e.Pool.Exec(t.Context(), `
		CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected failure'; END $$;
		CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log FOR EACH ROW
		WHEN (NEW.action IN ('session_revoked', 'user_disabled')) EXECUTE FUNCTION fail_audit();`)
	if err != nil {
		t.Fatal(err)
	}
	before := e.Snapshot()
	for name, do := range map[string]func() sessionstest.Response{
		"admin revoke": func() sessionstest.Response {
			return e.Raw("DELETE", "/v1/sessions/"+p.SessionID, e.Admin.AccessToken, "", nil)
		},
		"revoke user": func() sessionstest.Response {
			return e.Raw("DELETE", "/v1/users/"+id+"/sessions", e.Admin.AccessToken, "", nil)
		},
		"disable": func() sessionstest.Response {
			return e.Raw("PATCH", "/v1/users/"+id, e.Admin.AccessToken, "application/json", []byte(`{"disabled":true}`))
		},
		"logout": func() sessionstest.Response { return e.Raw("POST", "/v1/auth/logout", p.AccessToken, "", nil) },
	} {
		r := do()
		sessionstest.AssertProblem(t, r, 503)
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", name)
		}
		if after := e.Snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("%s: rolled back revocation changed the database: %v -> %v", name, before, after)
		}
	}
	if !e.Alive(p.AccessToken) {
		t.Fatal("session died although its revocation rolled back")
	}
	var tokensNotBefore *time.Time
	_ = e.Pool.QueryRow(t.Context(), "SELECT tokens_not_before FROM users WHERE id = $1", id).Scan(&tokensNotBefore)
	if tokensNotBefore != nil {
		t.Fatal("user-level not_before set by a rolled back revocation")
	}
	if code := e.Refresh(p.RefreshToken, nil); code != 200 {
		t.Fatalf("refresh after rolled back revocation: %d", code)
	}
}

func TestDisableAndEnable(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	id, email := e.User(org, "user")
	p1 := e.Login(email, "password-1")
	p2 := e.Login(email, "password-1")
	var u sessions.User
	if code := e.Call("PATCH", "/v1/users/"+id, e.Admin.AccessToken, map[string]bool{"disabled": true}, &u); code != 200 || !u.Disabled || u.ID != id {
		t.Fatalf("disable: %d %+v", code, u)
	}
	if e.Alive(p1.AccessToken) || e.Alive(p2.AccessToken) {
		t.Fatal("a disabled user's token works")
	}
	if code := e.Call("POST", "/v1/auth/login", "", map[string]string{"email": email, "password": "password-1"}, nil); code != 401 {
		t.Fatalf("disabled login: %d", code)
	}
	// disabling twice is harmless and writes no second revocation
	outbox := e.Count("outbox")
	e.Call("PATCH", "/v1/users/"+id, e.Admin.AccessToken, map[string]bool{"disabled": true}, nil)
	if e.Count("outbox") != outbox {
		t.Fatal("a second disable wrote another revocation")
	}
	if code := e.Call("PATCH", "/v1/users/"+id, e.Admin.AccessToken, map[string]bool{"disabled": false}, &u); code != 200 || u.Disabled {
		t.Fatalf("enable: %d %+v", code, u)
	}
	if e.Alive(p1.AccessToken) {
		t.Fatal("re-enabling brought an old session back")
	}
	p3 := e.Login(email, "password-1")
	if !e.Alive(p3.AccessToken) {
		t.Fatal("re-enabled user cannot work")
	}
	if n := e.Count("audit_log WHERE target_user_id = '" + id + "' AND action IN ('user_disabled', 'user_enabled')"); n != 2 {
		t.Fatalf("%d disable/enable audit rows, want 2", n)
	}
}

func TestOwnSessions(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	id, email := e.User(e.Org("A"), "user")
	a := e.Login(email, "password-1")
	b := e.Login(email, "password-1")
	c := e.Login(email, "password-1")
	var list struct{ Sessions []sessions.Session }
	if code := e.Call("GET", "/v1/me/sessions", b.AccessToken, nil, &list); code != 200 || len(list.Sessions) != 3 {
		t.Fatalf("list: %d %d", code, len(list.Sessions))
	}
	current := 0
	for _, s := range list.Sessions {
		if s.Current {
			current++
			if s.ID != b.SessionID {
				t.Fatal("wrong session marked current")
			}
		}
		if s.UserID != id {
			t.Fatal("foreign session listed")
		}
	}
	if current != 1 {
		t.Fatalf("%d sessions marked current", current)
	}
	var n struct{ Revoked int }
	if code := e.Call("DELETE", "/v1/me/sessions", b.AccessToken, nil, &n); code != 200 || n.Revoked != 2 {
		t.Fatalf("sign out others: %d %+v", code, n)
	}
	if e.Alive(a.AccessToken) || e.Alive(c.AccessToken) || !e.Alive(b.AccessToken) {
		t.Fatal("sign out others did not keep exactly the current session")
	}
	if code := e.Call("DELETE", "/v1/me/sessions/"+a.SessionID, b.AccessToken, nil, nil); code != 404 {
		t.Fatalf("revoking an already revoked session: %d, want 404", code)
	}
	if code := e.Call("POST", "/v1/auth/logout", b.AccessToken, nil, nil); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	if e.Alive(b.AccessToken) {
		t.Fatal("token alive after logout")
	}
	if code := e.Refresh(b.RefreshToken, nil); code != 401 {
		t.Fatalf("refresh after logout: %d", code)
	}
}

func TestAdminListingPaginates(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, email := e.User(org, "user")
	want := map[string]bool{}
	for i := 0; i < 7; i++ {
		e.Clock.Advance(time.Millisecond) // distinct last_active_at, and some ties below
		want[e.Login(email, "password-1").SessionID] = true
	}
	if _, err := e.Pool.Exec(t.Context(), "UPDATE sessions SET last_active_at = date_trunc('hour', now()) - interval '1 day' WHERE org_id = $1 AND id IN (SELECT id FROM sessions WHERE org_id = $1 LIMIT 3)", org); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	cursor := ""
	var last *sessions.Session
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		var page sessionPage
		if code := e.Call("GET", "/v1/sessions?org_id="+org+"&limit=2&cursor="+cursor, e.Admin.AccessToken, nil, &page); code != 200 {
			t.Fatalf("page: %d", code)
		}
		for i := range page.Sessions {
			s := page.Sessions[i]
			if seen[s.ID] {
				t.Fatalf("session %s on two pages", s.ID)
			}
			seen[s.ID] = true
			if last != nil && (s.LastActiveAt.After(last.LastActiveAt) || s.LastActiveAt.Equal(last.LastActiveAt) && s.ID > last.ID) {
				t.Fatal("not ordered by newest activity first")
			}
			last = &s
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if len(seen) != len(want) {
		t.Fatalf("saw %d sessions, want %d", len(seen), len(want))
	}
}
