package sessions

import (
	"context"
	"testing"
	"time"
)

func TestAuditAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	orgA, orgB := e.org("A"), e.org("B")
	adminAID, adminA := e.newUser(orgA, "org_admin")
	uid, u := e.newUser(orgA, "user")
	_, ub := e.newUser(orgB, "user")
	if code := e.call("DELETE", "/v1/sessions/"+u.SessionID, adminA.AccessToken, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	e.call("DELETE", "/v1/sessions/"+ub.SessionID, e.admin.AccessToken, nil, nil)

	// who did what to whom, when, from where, why
	var page AuditPage
	if code := e.call("GET", "/v1/audit?user_id="+uid+"&action=session_revoked", adminA.AccessToken, nil, &page); code != 200 || len(page.Entries) != 1 {
		t.Fatalf("audit: %d %+v", code, page)
	}
	en := page.Entries[0]
	if deref(en.ActorID) != adminAID || deref(en.UserID) != uid || deref(en.SessionID) != u.SessionID || deref(en.Reason) != "admin_revoke" ||
		deref(en.IP) != "127.0.0.1" || deref(en.OrgID) != orgA || time.Since(en.At) > time.Minute {
		t.Fatalf("entry %+v", en)
	}
	// an org admin sees only its own org
	if code := e.call("GET", "/v1/audit", adminA.AccessToken, nil, &page); code != 200 {
		t.Fatalf("audit: %d", code)
	}
	for _, en := range page.Entries {
		if deref(en.OrgID) != orgA {
			t.Fatalf("org admin sees an entry of org %s", deref(en.OrgID))
		}
	}
	for path, want := range map[string]int{
		"/v1/audit?org_id=" + orgB: 403,
		"/v1/audit?action=nope":    400,
		"/v1/audit?user_id=x":      400,
		"/v1/audit?limit=0":        400,
		"/v1/audit?cursor=zzz":     400,
	} {
		if code := e.call("GET", path, adminA.AccessToken, nil, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
	if code := e.call("GET", "/v1/audit", u.AccessToken, nil, nil); code != 401 { // u's session was revoked
		t.Fatalf("revoked user: %d", code)
	}
	_, plain := e.newUser(orgA, "user")
	if code := e.call("GET", "/v1/audit", plain.AccessToken, nil, nil); code != 403 {
		t.Fatalf("plain user: %d", code)
	}
	// global admin, paginated, newest first, every entry once
	total := e.count("audit_log")
	seen := map[int64]bool{}
	cursor := ""
	var last *AuditEntry
	for i := 0; i < 100; i++ {
		var p AuditPage
		if code := e.call("GET", "/v1/audit?limit=3&cursor="+cursor, e.admin.AccessToken, nil, &p); code != 200 {
			t.Fatalf("page: %d", code)
		}
		for j := range p.Entries {
			x := p.Entries[j]
			if seen[x.ID] || (last != nil && x.At.After(last.At)) {
				t.Fatal("duplicate or out of order")
			}
			seen[x.ID] = true
			last = &x
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if len(seen) != total {
		t.Fatalf("paged through %d of %d entries", len(seen), total)
	}
}

func TestRetentionPurgesOnlyWhatIsDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("A")
	_, email := e.user(org, "user")
	live := e.login(email, "password-1")
	old := e.login(email, "password-1")
	rotated := e.login(email, "password-1")
	var next TokenPair
	e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": rotated.RefreshToken}, &next)
	e.call("POST", "/v1/auth/logout", old.AccessToken, nil, nil)
	ctx := context.Background()
	mustExec := func(sql string, args ...any) {
		if _, err := e.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	mustExec("UPDATE sessions SET revoked_at = now() - interval '8 days' WHERE id = $1", old.SessionID)
	mustExec("UPDATE refresh_tokens SET rotated_at = now() - interval '25 hours' WHERE rotated_at IS NOT NULL")
	mustExec("UPDATE revocations SET expires_at = now() - interval '2 hours'")
	mustExec("INSERT INTO login_failures (account, at) VALUES ('x@example.com', now() - interval '2 days'), ('y@example.com', now())")
	r := NewRetention(e.pool, RetentionConfig{Sessions: 7 * 24 * time.Hour, UsedRefreshTokens: 24 * time.Hour, Revocations: time.Hour,
		LoginFailures: 24 * time.Hour, Every: time.Hour, Batch: 1}, nilRegistry(), e.svc.log)
	got, err := r.PurgeOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got["sessions"] != 1 || got["refresh_tokens"] != 1 || got["revocations"] < 1 || got["login_failures"] != 1 {
		t.Fatalf("purged %v", got)
	}
	if !e.alive(live.AccessToken) || !e.alive(next.AccessToken) {
		t.Fatal("a live session was purged")
	}
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": next.RefreshToken}, nil); code != 200 {
		t.Fatalf("live refresh token purged: %d", code)
	}
	if n := e.count("login_failures"); n != 1 {
		t.Fatalf("%d login failures left, want the recent one", n)
	}
	var audit int
	_ = e.pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE session_id = $1", old.SessionID).Scan(&audit)
	if audit == 0 {
		t.Fatal("the audit trail of a purged session is gone")
	}
}
