package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestBulkRevocationByFilter: a dry run counts what the filter matches and
// writes nothing; the revocation ends exactly those sessions (and no
// other: another org's, another device type's, a later sign-in's), says how
// many sessions and users, names its receipt, and leaves one audit entry
// for the rule beside one per session.
func TestBulkRevocationByFilter(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("A"), e.Org("B")
	_, admin := e.NewUser(org, "org_admin")
	login := func(email, device string) string {
		t.Helper()
		var p struct {
			SessionID string `json:"session_id"`
		}
		if code := e.Call("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": "password-1", "device": map[string]string{"type": device}}, &p); code != 200 {
			t.Fatalf("login: %d", code)
		}
		return p.SessionID
	}
	_, ana := e.User(org, "user")
	_, bo := e.User(org, "user")
	_, stranger := e.User(other, "user")
	phones := []string{login(ana, "android"), login(ana, "android"), login(bo, "android")}
	laptop := login(bo, "web")
	elsewhere := login(stranger, "android")
	cutoff := e.Clock.Now().Add(time.Millisecond)
	e.Clock.Advance(time.Second)
	later := login(ana, "android") // signed in after the cut-off
	filter := map[string]any{"org_id": org, "device_type": "android", "signed_in_before": cutoff.Format(time.RFC3339Nano)}

	sessionsBefore, auditBefore := e.Count("sessions WHERE revoked_at IS NULL"), e.Count("audit_log")
	var dry struct {
		MatchedSessions int `json:"matched_sessions"`
		MatchedUsers    int `json:"matched_users"`
	}
	withDry := map[string]any{"dry_run": true}
	for k, v := range filter {
		withDry[k] = v
	}
	if code := e.Call("POST", "/v1/revocations", admin.AccessToken, withDry, &dry); code != 200 || dry.MatchedSessions != 3 || dry.MatchedUsers != 2 {
		t.Fatalf("dry run: %d %+v, want 3 sessions of 2 users", code, dry)
	}
	if e.Count("sessions WHERE revoked_at IS NULL") != sessionsBefore || e.Count("audit_log") != auditBefore {
		t.Fatal("the dry run wrote something")
	}

	filter["reason_text"] = "Android fleet compromised"
	b, _ := json.Marshal(filter)
	r := e.Raw("POST", "/v1/revocations", admin.AccessToken, "application/json", b)
	var got struct {
		RevocationID    string `json:"revocation_id"`
		RevokedSessions int    `json:"revoked_sessions"`
		RevokedUsers    int    `json:"revoked_users"`
	}
	if err := json.Unmarshal(r.Body, &got); err != nil || r.Status != 201 || got.RevokedSessions != 3 || got.RevokedUsers != 2 || r.Header.Get("Revocation-Id") != got.RevocationID {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	revoked := func(sid string) bool {
		var at *time.Time
		if err := e.Pool.QueryRow(context.Background(), `SELECT revoked_at FROM sessions WHERE id = $1`, sid).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at != nil
	}
	for _, sid := range phones {
		if !revoked(sid) {
			t.Errorf("matched session %s not revoked", sid)
		}
	}
	for name, sid := range map[string]string{"the laptop": laptop, "another org's phone": elsewhere, "a later sign-in": later} {
		if revoked(sid) {
			t.Errorf("%s was revoked", name)
		}
	}
	var rule struct {
		Entries []struct {
			Action string
			Detail map[string]any
		}
	}
	if code := e.Call("GET", "/v1/audit?action=bulk_revoke", admin.AccessToken, nil, &rule); code != 200 || len(rule.Entries) != 1 ||
		rule.Entries[0].Detail["reason_text"] != "Android fleet compromised" || rule.Entries[0].Detail["revoked_sessions"] != float64(3) {
		t.Fatalf("the rule's audit entry: %d %+v", code, rule)
	}
	if n := e.Count("audit_log WHERE action = 'session_revoked' AND reason = 'admin_bulk_revoke'"); n != 3 {
		t.Fatalf("%d per-session audit entries, want 3", n)
	}
	var rc receiptBody
	if code := e.Call("GET", "/v1/revocations/"+got.RevocationID, admin.AccessToken, nil, &rc); code != 200 || rc.Reason != "admin_bulk_revoke" {
		t.Fatalf("receipt: %d %+v", code, rc)
	}
}

// TestBulkRevocationScopeAndBadInput: who may revoke which org, and input
// refused with a problem that names the field, writing nothing.
func TestBulkRevocationScopeAndBadInput(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("A"), e.Org("B")
	_, orgAdmin := e.NewUser(org, "org_admin")
	_, user := e.NewUser(org, "user")
	dry := func(org string) map[string]any { return map[string]any{"org_id": org, "dry_run": true} }
	for name, tc := range map[string]struct {
		token string
		body  map[string]any
		code  int
	}{
		"an org admin, own org":   {orgAdmin.AccessToken, dry(org), 200},
		"an org admin, other org": {orgAdmin.AccessToken, dry(other), 404},
		"a global admin, any org": {e.Admin.AccessToken, dry(other), 200},
		"a global admin, no org":  {e.Admin.AccessToken, map[string]any{"dry_run": true}, 400},
		"an unknown org":          {e.Admin.AccessToken, dry("00000000-0000-4000-8000-000000000000"), 404},
		"a plain user":            {user.AccessToken, dry(org), 403},
	} {
		b, _ := json.Marshal(tc.body)
		if r := e.Raw("POST", "/v1/revocations", tc.token, "application/json", b); r.Status != tc.code {
			t.Errorf("%s: %d %s, want %d", name, r.Status, r.Body, tc.code)
		}
	}
	before := e.Count("audit_log")
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for body, field := range map[string]string{
		`{"org_id":"` + org + `","role":""}`:                           "role",
		`{"org_id":"` + org + `","colour":"red"}`:                      "colour",
		`{"org_id":"` + org + `","signed_in_before":"yesterday"}`:      "signed_in_before",
		`{"org_id":"` + org + `","signed_in_before":"` + future + `"}`: "signed_in_before",
		`{"org_id":"` + org + `","device_type":"toaster"}`:             "device_type",
		`{"org_id":"` + org + `","role":"root"}`:                       "role",
		`{"org_id":"not-a-uuid"}`:                                      "org_id",
	} {
		r := e.Raw("POST", "/v1/revocations", e.Admin.AccessToken, "application/json", []byte(body))
		sessionstest.AssertProblem(t, r, 400)
		if !strings.Contains(string(r.Body), field) {
			t.Errorf("%s: the problem %s does not name %s", body, r.Body, field)
		}
	}
	if e.Count("audit_log") != before {
		t.Fatal("refused input wrote an audit entry")
	}
}

// TestOrgAdminBulkRevocationSparesGlobalAdmins: a global admin is never in
// an org admin's scope, even in its own org: the org admin's bulk
// revocation of the org ends everyone else's sessions and none of the
// global admin's, and naming the global_admin role is refused.
func TestOrgAdminBulkRevocationSparesGlobalAdmins(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Mixed")
	_, admin := e.NewUser(org, "org_admin")
	_, root := e.NewUser(org, "global_admin")
	_, user := e.NewUser(org, "user")
	var dry struct {
		MatchedSessions int `json:"matched_sessions"`
	}
	if code := e.Call("POST", "/v1/revocations", admin.AccessToken, map[string]any{"org_id": org, "dry_run": true}, &dry); code != 200 || dry.MatchedSessions != 2 {
		t.Fatalf("dry run: %d %+v, want the org admin's and the user's sessions", code, dry)
	}
	if code := e.Call("POST", "/v1/revocations", admin.AccessToken, map[string]any{"org_id": org, "role": "global_admin"}, nil); code != 403 {
		t.Fatalf("an org admin naming global_admin: %d, want 403", code)
	}
	if code := e.Call("POST", "/v1/revocations", admin.AccessToken, map[string]any{"org_id": org, "reason_text": "reset"}, nil); code != 201 {
		t.Fatalf("revoke: %d", code)
	}
	if e.Alive(user.AccessToken) || e.Alive(admin.AccessToken) {
		t.Fatal("a session of the org survived")
	}
	if !e.Alive(root.AccessToken) {
		t.Fatal("an org admin's bulk revocation ended a global admin's session")
	}
}
