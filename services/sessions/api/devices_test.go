package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestManageDevices: sessions carry a client label worked out by the
// server; a user renames one of their devices (and only theirs); a new
// login from a device with the same id ends that device's previous
// session (reason replaced, published like every revocation), while the
// user's other devices live on; bad names and ids are refused, naming the
// field, and change nothing.
func TestManageDevices(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Devices")
	_, email := e.User(org, "user")
	_, other := e.NewUser(org, "user")
	login := func(deviceID string) sessions.TokenPair {
		t.Helper()
		var p sessions.TokenPair
		r := e.Raw("POST", "/v1/auth/login", "", "application/json", []byte(`{"email":"`+email+`","password":"password-1","device":{"type":"ios","name":"Phone","id":"`+deviceID+`"}}`))
		if r.Status != 200 {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := login("install-4f2a")
	laptop := e.Login(email, "password-1")
	outboxBefore := e.Count("outbox WHERE subject = 'revocations.v1.session'")
	second := login("install-4f2a")
	if e.Alive(first.AccessToken) {
		t.Fatal("the device's previous session lives on after it signed in again")
	}
	if !e.Alive(second.AccessToken) || !e.Alive(laptop.AccessToken) {
		t.Fatal("a session of another device, or the new one, was ended")
	}
	if n := e.Count("sessions WHERE id = '" + first.SessionID + "' AND revoked_reason = 'replaced'"); n != 1 {
		t.Fatal("the previous session is not revoked with reason replaced")
	}
	if n := e.Count("outbox WHERE subject = 'revocations.v1.session'") - outboxBefore; n != 1 {
		t.Fatalf("%d session revocation events, want 1", n)
	}

	var own []sessions.Session
	var list struct {
		Sessions []sessions.Session `json:"sessions"`
	}
	if code := e.Call("GET", "/v1/me/sessions", second.AccessToken, nil, &list); code != 200 {
		t.Fatalf("list: %d", code)
	}
	own = list.Sessions
	if len(own) != 2 {
		t.Fatalf("%d live sessions, want the phone and the laptop", len(own))
	}
	for _, s := range own {
		if s.Client == "" {
			t.Errorf("session %s has no client label", s.ID)
		}
	}

	var renamed sessions.Session
	if code := e.Call("PATCH", "/v1/me/sessions/"+laptop.SessionID, second.AccessToken, map[string]string{"device_name": "  Work laptop "}, &renamed); code != 200 ||
		renamed.DeviceName == nil || *renamed.DeviceName != "Work laptop" || renamed.ID != laptop.SessionID {
		t.Fatalf("rename: %d %+v", code, renamed)
	}
	if code := e.Call("PATCH", "/v1/me/sessions/"+laptop.SessionID, other.AccessToken, map[string]string{"device_name": "Mine now"}, nil); code != 404 {
		t.Fatalf("renaming another user's device: %d, want 404", code)
	}
	if code := e.Call("PATCH", "/v1/me/sessions/"+first.SessionID, second.AccessToken, map[string]string{"device_name": "Gone"}, nil); code != 404 {
		t.Fatalf("renaming an ended session: %d, want 404", code)
	}

	before := e.Snapshot()
	for _, bad := range []struct {
		method, path, body, field string
	}{
		{"PATCH", "/v1/me/sessions/" + laptop.SessionID, `{"device_name":"` + strings.Repeat("é", 101) + `"}`, "device_name"},
		{"PATCH", "/v1/me/sessions/" + laptop.SessionID, `{"device_name":"tab\there"}`, "device_name"},
		{"PATCH", "/v1/me/sessions/" + laptop.SessionID, `{}`, "device_name"},
		{"POST", "/v1/auth/login", `{"email":"` + email + `","password":"password-1","device":{"id":"` + strings.Repeat("x", 129) + `"}}`, "device.id"},
		{"POST", "/v1/auth/login", `{"email":"` + email + `","password":"password-1","device":{"id":"a\u0007b"}}`, "device.id"},
		{"POST", "/v1/auth/login", `{"email":"` + email + `","password":"password-1","device":{"name":"` + strings.Repeat("n", 201) + `"}}`, "device.name"},
	} {
		tok := ""
		if bad.method == "PATCH" {
			tok = second.AccessToken
		}
		r := e.Raw(bad.method, bad.path, tok, "application/json", []byte(bad.body))
		sessionstest.AssertProblem(t, r, 400)
		if !strings.Contains(string(r.Body), bad.field) {
			t.Errorf("%s %s: the problem does not name %s: %s", bad.method, bad.body, bad.field, r.Body)
		}
	}
	var name *string
	if err := e.Pool.QueryRow(context.Background(), `SELECT device_name FROM sessions WHERE id = $1`, laptop.SessionID).Scan(&name); err != nil || name == nil || *name != "Work laptop" {
		t.Fatalf("a refused rename changed the name: %v %v", name, err)
	}
	if after := e.Snapshot(); after["sessions"] != before["sessions"] {
		t.Fatalf("a refused login wrote a session: %v → %v", before, after)
	}
}

// TestOwnActivity: a user sees their own sign-ins, failed sign-ins and
// revocations, newest first, with the device and client, in pages; never
// another user's.
func TestOwnActivity(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Activity")
	_, email := e.User(org, "user")
	_, other := e.NewUser(org, "user")
	e.Call("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": "wrong-password"}, nil)
	phone := e.Login(email, "password-1")
	laptop := e.Login(email, "password-1")
	if code := e.Call("DELETE", "/v1/me/sessions/"+phone.SessionID, laptop.AccessToken, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	var page sessions.ActivityPage
	if code := e.Call("GET", "/v1/me/activity", laptop.AccessToken, nil, &page); code != 200 {
		t.Fatalf("activity: %d", code)
	}
	var actions []string
	for _, ev := range page.Events {
		actions = append(actions, ev.Action)
	}
	if got := strings.Join(actions, ","); got != "session_revoked,login,login,login_failed" {
		t.Fatalf("actions %s, want the revocation, two sign-ins and the failure, newest first", got)
	}
	if ev := page.Events[0]; ev.SessionID == nil || *ev.SessionID != phone.SessionID || ev.Reason == nil || *ev.Reason != "self_revoke" ||
		ev.DeviceType == nil || *ev.DeviceType != "web" || ev.Client == nil || *ev.Client == "" {
		t.Fatalf("the revocation: %+v", ev)
	}
	var paged []string
	cursor := ""
	for range 5 {
		var p sessions.ActivityPage
		path := "/v1/me/activity?limit=1"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		if code := e.Call("GET", path, laptop.AccessToken, nil, &p); code != 200 || len(p.Events) != 1 {
			t.Fatalf("page: %d %+v", code, p)
		}
		paged = append(paged, p.Events[0].Action)
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if strings.Join(paged, ",") != strings.Join(actions, ",") {
		t.Fatalf("pages of one: %v, want %v", paged, actions)
	}
	// An administrator's revocation shows no address: it is the admin's.
	_, admin := e.NewUser(org, "org_admin")
	if code := e.Call("DELETE", "/v1/sessions/"+laptop.SessionID, admin.AccessToken, nil, nil); code != 204 {
		t.Fatalf("admin revoke: %d", code)
	}
	var mine sessions.ActivityPage
	fresh := e.Login(email, "password-1")
	if code := e.Call("GET", "/v1/me/activity", fresh.AccessToken, nil, &mine); code != 200 {
		t.Fatalf("activity: %d", code)
	}
	found := false
	for _, ev := range mine.Events {
		if ev.Action == "session_revoked" && ev.Reason != nil && *ev.Reason == "admin_revoke" {
			found = true
			if ev.IP != nil {
				t.Fatalf("the admin's revocation shows the address %s", *ev.IP)
			}
		}
	}
	if !found {
		t.Fatal("the admin's revocation is not in the user's activity")
	}
	var theirs sessions.ActivityPage
	if code := e.Call("GET", "/v1/me/activity", other.AccessToken, nil, &theirs); code != 200 || len(theirs.Events) != 1 {
		t.Fatalf("another user sees %d events, want their own sign-in", len(theirs.Events))
	}
	sessionstest.AssertProblem(t, e.Raw("GET", "/v1/me/activity?cursor=nope", fresh.AccessToken, "", nil), 400)
}

// TestSessionCreatedEvents: every sign-in announces itself on
// sessions.v1.session.created, saying whether the device is new to the
// user: known by its device.id when it has one, else by its client label.
func TestSessionCreatedEvents(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Notified")
	_, email := e.User(org, "user")
	sign := func(ua, deviceID string) string {
		t.Helper()
		body := `{"email":"` + email + `","password":"password-1"`
		if deviceID != "" {
			body += `,"device":{"id":"` + deviceID + `"}`
		}
		r := e.RawWith("POST", "/v1/auth/login", "", "application/json", []byte(body+"}"), map[string]string{"User-Agent": ua})
		var p sessions.TokenPair
		if r.Status != 200 || json.Unmarshal(r.Body, &p) != nil {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		}
		return p.SessionID
	}
	const safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	want := map[string]bool{
		sign(safari, ""):         true,  // first sign-in from Safari on iOS
		sign(safari, ""):         false, // the same client again
		sign(firefox, ""):        true,  // another client
		sign(safari, "phone-1"):  true,  // a device id never seen
		sign(firefox, "phone-1"): false, // the same device id, whatever the client
	}
	seen := 0
	for _, row := range e.Outbox() {
		ev, ok := row.Event.(events.SessionCreated)
		if !ok {
			continue
		}
		wantNew, mine := want[ev.SessionID]
		if !mine {
			continue
		}
		seen++
		if ev.NewDevice != wantNew || ev.OrgID != org || ev.Client == "" || ev.DeviceType == "" {
			t.Errorf("session %s: %+v, want new_device %v", ev.SessionID, ev, wantNew)
		}
	}
	if seen != len(want) {
		t.Fatalf("%d session.created events, want %d", seen, len(want))
	}
}

// TestAuditShowsDeviceAndClient: an audit entry about a session names the
// session's device type and client while the session is kept.
func TestAuditShowsDeviceAndClient(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Audited")
	_, admin := e.NewUser(org, "org_admin")
	_, user := e.NewUser(org, "user")
	if code := e.Call("DELETE", "/v1/sessions/"+user.SessionID, admin.AccessToken, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	var page sessions.AuditPage
	if code := e.Call("GET", "/v1/audit?action=session_revoked", admin.AccessToken, nil, &page); code != 200 || len(page.Entries) != 1 {
		t.Fatalf("audit: %d %+v", code, page)
	}
	if ev := page.Entries[0]; ev.DeviceType == nil || *ev.DeviceType != "web" || ev.Client == nil || *ev.Client == "" {
		t.Fatalf("the entry: %+v", ev)
	}
}
