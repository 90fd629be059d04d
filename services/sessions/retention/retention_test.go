package retention_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/retention"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

func TestRetentionPurgesOnlyWhatIsDue(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, email := e.User(org, "user")
	live := e.Login(email, "password-1")
	old := e.Login(email, "password-1")
	rotated := e.Login(email, "password-1")
	var next sessions.TokenPair
	e.Refresh(rotated.RefreshToken, &next)
	e.Call("POST", "/v1/auth/logout", old.AccessToken, nil, nil)
	ctx := context.Background()
	mustExec := func(sql string, args ...any) {
		if _, err := e.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	mustExec("UPDATE sessions SET revoked_at = now() - interval '8 days' WHERE id = $1", old.SessionID)
	mustExec("UPDATE refresh_tokens SET rotated_at = now() - interval '25 hours' WHERE rotated_at IS NOT NULL")
	mustExec("UPDATE revocations SET expires_at = now() - interval '2 hours'")
	mustExec("INSERT INTO login_failures (account, at) VALUES ('x@example.com', now() - interval '2 days'), ('y@example.com', now())")
	c, _, err := e.Svc.CreateClient(ctx, sessions.SystemPrincipal, sessions.NewClient{Name: "rs", Scopes: []string{"introspect"}}, sessions.ClientMeta{})
	if err != nil {
		t.Fatal(err)
	}
	current, err := e.Svc.IssueClientToken(ctx, c, "")
	if err != nil {
		t.Fatal(err)
	}
	mustExec("INSERT INTO client_tokens (token_hash, client_id, scopes, expires_at) VALUES ('\\x00', $1, '{introspect}', now() - interval '1 second')", c.ID)
	r := retention.New(e.Pool, retention.Config{Sessions: 7 * 24 * time.Hour, UsedRefreshTokens: 24 * time.Hour, Revocations: time.Hour,
		LoginFailures: 24 * time.Hour, Every: time.Hour, Batch: 1}, prometheus.NewRegistry(), e.Log)
	got, err := r.PurgeOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got["sessions"] != 1 || got["refresh_tokens"] != 1 || got["revocations"] < 1 || got["login_failures"] != 1 || got["client_tokens"] != 1 {
		t.Fatalf("purged %v", got)
	}
	if !e.Alive(live.AccessToken) || !e.Alive(next.AccessToken) {
		t.Fatal("a live session was purged")
	}
	if code := e.Refresh(next.RefreshToken, nil); code != 200 {
		t.Fatalf("live refresh token purged: %d", code)
	}
	if _, err := e.Svc.ClientByToken(ctx, current.AccessToken); err != nil {
		t.Fatalf("a current client token was purged: %v", err)
	}
	if n := e.Count("login_failures"); n != 1 {
		t.Fatalf("%d login failures left, want the recent one", n)
	}
	var audit int
	_ = e.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE session_id = $1", old.SessionID).Scan(&audit)
	if audit == 0 {
		t.Fatal("the audit trail of a purged session is gone")
	}
}
