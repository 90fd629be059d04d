package sessions_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

func TestEraseRemovesEverySessionAndConfirms(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	id, email := e.User(org, "user")
	p1 := e.Login(email, "password-1")
	p2 := e.Login(email, "password-1")
	_, other := e.NewUser(org, "user")
	req := events.UserDeleted{EventID: uuid.NewString(), UserID: id, OrgID: org, RequestedAt: time.Now().UTC()}

	res, err := e.Svc.Erase(t.Context(), req)
	if err != nil || res != "erased" {
		t.Fatalf("erase: %q %v", res, err)
	}
	if e.Alive(p1.AccessToken) || e.Alive(p2.AccessToken) {
		t.Fatal("a session of the erased user still works")
	}
	if !e.Alive(other.AccessToken) {
		t.Fatal("another user's session died")
	}
	if code := e.Call("POST", "/v1/auth/login", "", map[string]string{"email": email, "password": "password-1"}, nil); code != 401 {
		t.Fatalf("login after erasure: %d", code)
	}
	if code := e.Refresh(p1.RefreshToken, nil); code != 401 {
		t.Fatalf("refresh after erasure: %d", code)
	}
	if n := e.Count("refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE s.user_id = '" + id + "'"); n != 0 {
		t.Fatalf("%d refresh tokens left", n)
	}
	if n := e.Count("sessions WHERE user_id = '" + id + "' AND (revoked_at IS NULL OR ip IS NOT NULL OR user_agent IS NOT NULL OR device_name IS NOT NULL OR device_id IS NOT NULL OR client IS NOT NULL)"); n != 0 {
		t.Fatalf("%d sessions still live or with metadata", n)
	}
	if n := e.Count("outbox WHERE subject = 'sessions.v1.session.created' AND convert_from(payload, 'UTF8') LIKE '%" + id + "%'"); n != 0 {
		t.Fatalf("%d sign-in announcements of the erased user are left in the outbox", n)
	}
	var mail string
	_ = e.Pool.QueryRow(t.Context(), "SELECT email FROM users WHERE id = $1", id).Scan(&mail)
	if strings.Contains(mail, email) {
		t.Fatal("the erased user's email is kept")
	}
	// the audit record names only the user id
	var actor, ip, detail *string
	if err := e.Pool.QueryRow(t.Context(), `SELECT actor_id::text, host(ip), detail::text FROM audit_log WHERE action = 'user_erased' AND target_user_id = $1`, id).Scan(&actor, &ip, &detail); err != nil {
		t.Fatal(err)
	}
	if actor != nil || ip != nil || strings.Contains(*detail, "@") {
		t.Fatalf("erasure audit record carries more than the user id: actor %v ip %v detail %v", actor, ip, *detail)
	}
	// outbox: a user-level revocation, and the confirmation
	var confirmations []events.UserErased
	var userRevoked int
	for _, r := range e.Outbox() {
		switch ev := r.Event.(type) {
		case events.UserErased:
			confirmations = append(confirmations, ev)
		case events.UserRevoked:
			if ev.Sub == id && ev.Reason == events.ReasonErasure {
				userRevoked++
			}
		}
	}
	if userRevoked != 1 || len(confirmations) != 1 || confirmations[0].SessionsRevoked != 2 || confirmations[0].RequestEventID != req.EventID || confirmations[0].UserID != id {
		t.Fatalf("outbox: %d user revocations, confirmations %+v", userRevoked, confirmations)
	}

	// The same request again is harmless and confirmed again.
	if res, err := e.Svc.Erase(t.Context(), req); err != nil || res != "repeated" {
		t.Fatalf("repeat: %q %v", res, err)
	}
	confirmations = nil
	for _, r := range e.Outbox() {
		if ev, ok := r.Event.(events.UserErased); ok {
			confirmations = append(confirmations, ev)
		}
	}
	if len(confirmations) != 2 || confirmations[1].SessionsRevoked != 0 || confirmations[1].EventID == confirmations[0].EventID {
		t.Fatalf("repeat confirmations %+v", confirmations)
	}
}

func TestEraseUnknownUserIsConfirmed(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	req := events.UserDeleted{EventID: uuid.NewString(), UserID: uuid.NewString(), OrgID: uuid.NewString(), RequestedAt: time.Now().UTC()}
	if res, err := e.Svc.Erase(t.Context(), req); err != nil || res != "unknown_user" {
		t.Fatalf("erase unknown: %q %v", res, err)
	}
	var found bool
	for _, r := range e.Outbox() {
		if ev, ok := r.Event.(events.UserErased); ok && ev.UserID == req.UserID && ev.SessionsRevoked == 0 {
			found = true
		}
	}
	if !found {
		t.Fatal("no confirmation for an unknown user")
	}
}

// TestOffboardingLeavesTheSameEvidence: disabling a user and revoking all
// of a user's sessions go through the same path and leave the same audit
// trail (one session_revoked per session, plus the action itself).
func TestOffboardingLeavesTheSameEvidence(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	trail := func(do func(id string) int) []string {
		id, email := e.User(org, "user")
		e.Login(email, "password-1")
		e.Login(email, "password-1")
		if code := do(id); code != 200 {
			t.Fatalf("status %d", code)
		}
		var page sessions.AuditPage
		e.Call("GET", "/v1/audit?user_id="+id, e.Admin.AccessToken, nil, &page)
		var actions []string
		for _, en := range page.Entries {
			if en.Action != "login" && en.Action != "user_created" {
				actions = append(actions, en.Action+"/"+deref(en.Reason)+"/"+deref(en.ActorID))
			}
		}
		return actions
	}
	disable := trail(func(id string) int {
		return e.Call("PATCH", "/v1/users/"+id, e.Admin.AccessToken, map[string]bool{"disabled": true}, nil)
	})
	revokeAll := trail(func(id string) int {
		return e.Call("DELETE", "/v1/users/"+id+"/sessions", e.Admin.AccessToken, nil, nil)
	})
	want := func(action, reason string) []string {
		return []string{action + "/" + reason + "/" + e.AdminID, "session_revoked/" + reason + "/" + e.AdminID, "session_revoked/" + reason + "/" + e.AdminID}
	}
	if strings.Join(disable, ",") != strings.Join(want("user_disabled", "user_disabled"), ",") {
		t.Fatalf("disable trail %v", disable)
	}
	if strings.Join(revokeAll, ",") != strings.Join(want("user_sessions_revoked", "admin_revoke"), ",") {
		t.Fatalf("revoke-all trail %v", revokeAll)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// BenchmarkEraseUserWith10kSessions measures one erasure of a user with
// 10,000 live sessions (the goal is 2 s or less):
//
//	REVOKE_TEST_PG_FSYNC=on go test -run '^$' -bench Erase -benchtime 5x ./services/sessions/
func BenchmarkEraseUserWith10kSessions(b *testing.B) {
	e := sessionstest.New(b)
	org := e.Org("A")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id, _ := e.User(org, "user")
		if _, err := e.Pool.Exec(b.Context(), `
			WITH s AS (
				INSERT INTO sessions (id, user_id, org_id, device_type, device_name, user_agent, ip, expires_at)
				SELECT gen_random_uuid(), $1, $2, 'web', 'laptop', 'Mozilla/5.0', '10.0.0.1', now() + interval '30 days'
				FROM generate_series(1, 10000) RETURNING id)
			INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at)
			SELECT gen_random_uuid(), id, sha256(id::text::bytea), now() + interval '30 days' FROM s`, id, org); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := e.Svc.Erase(b.Context(), events.UserDeleted{EventID: uuid.NewString(), UserID: id, OrgID: org, RequestedAt: time.Now().UTC()})
		if err != nil || res != "erased" {
			b.Fatalf("%q %v", res, err)
		}
	}
}
