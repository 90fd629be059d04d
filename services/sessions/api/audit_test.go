package api_test

import (
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

func TestAuditAPI(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	orgA, orgB := e.Org("A"), e.Org("B")
	adminAID, adminA := e.NewUser(orgA, "org_admin")
	uid, u := e.NewUser(orgA, "user")
	_, ub := e.NewUser(orgB, "user")
	if code := e.Call("DELETE", "/v1/sessions/"+u.SessionID, adminA.AccessToken, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	e.Call("DELETE", "/v1/sessions/"+ub.SessionID, e.Admin.AccessToken, nil, nil)

	// who did what to whom, when, from where, why
	var page sessions.AuditPage
	if code := e.Call("GET", "/v1/audit?user_id="+uid+"&action=session_revoked", adminA.AccessToken, nil, &page); code != 200 || len(page.Entries) != 1 {
		t.Fatalf("audit: %d %+v", code, page)
	}
	en := page.Entries[0]
	if deref(en.ActorID) != adminAID || deref(en.UserID) != uid || deref(en.SessionID) != u.SessionID || deref(en.Reason) != "admin_revoke" ||
		deref(en.IP) != "127.0.0.1" || deref(en.OrgID) != orgA || time.Since(en.At) > time.Minute {
		t.Fatalf("entry %+v", en)
	}
	// an org admin sees only its own org
	if code := e.Call("GET", "/v1/audit", adminA.AccessToken, nil, &page); code != 200 {
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
		if code := e.Call("GET", path, adminA.AccessToken, nil, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
	if code := e.Call("GET", "/v1/audit", u.AccessToken, nil, nil); code != 401 { // u's session was revoked
		t.Fatalf("revoked user: %d", code)
	}
	_, plain := e.NewUser(orgA, "user")
	if code := e.Call("GET", "/v1/audit", plain.AccessToken, nil, nil); code != 403 {
		t.Fatalf("plain user: %d", code)
	}
	// global admin, paginated, newest first, every entry once
	total := e.Count("audit_log")
	seen := map[int64]bool{}
	cursor := ""
	var last *sessions.AuditEntry
	for i := 0; i < 100; i++ {
		var p sessions.AuditPage
		if code := e.Call("GET", "/v1/audit?limit=3&cursor="+cursor, e.Admin.AccessToken, nil, &p); code != 200 {
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
