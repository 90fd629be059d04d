package sessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestAccessTokensCarryTheirSessionsSignIn: a token's auth_time is its
// session's created_at to the microsecond, at login and after every
// refresh, while iat moves on; a rule revoking an org's sessions signed in
// before an instant compares the two exactly.
func TestAccessTokensCarryTheirSessionsSignIn(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	_, email := e.User(e.Org("A"), "user")
	e.Clock.Set(time.Date(2026, 12, 1, 9, 0, 0, 123456789, time.UTC))
	p := e.Login(email, "password-1")
	var created time.Time
	if err := e.Pool.QueryRow(context.Background(), `SELECT created_at FROM sessions WHERE id = $1`, p.SessionID).Scan(&created); err != nil {
		t.Fatal(err)
	}
	first := e.Claims(p.AccessToken)
	if !first.AuthTime.Equal(created) || !created.Equal(time.Date(2026, 12, 1, 9, 0, 0, 123456000, time.UTC)) {
		t.Fatalf("auth_time %v, session created %v", first.AuthTime, created)
	}
	e.Clock.Advance(2 * time.Hour)
	var next sessions.TokenPair
	if code := e.Refresh(p.RefreshToken, &next); code != 200 {
		t.Fatalf("refresh: %d", code)
	}
	c := e.Claims(next.AccessToken)
	if !c.AuthTime.Equal(created) || !c.IssuedAt.After(first.IssuedAt.Add(time.Hour)) {
		t.Fatalf("after a refresh: auth_time %v (want %v), iat %v", c.AuthTime, created, c.IssuedAt)
	}
}
