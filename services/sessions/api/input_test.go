package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestMalformedInputIsRefusedAndWritesNothing sends bad input to every
// endpoint that takes any, and checks for a 400 problem and an untouched
// database.
func TestMalformedInputIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	uid, p := e.NewUser(org, "user")
	admin := e.Admin.AccessToken
	big := `{"email":"` + strings.Repeat("a", 70<<10) + `","password":"x"}`

	type req struct {
		method, path, token, ctype, body string
	}
	json := "application/json"
	cases := map[string]req{
		"login: not JSON":           {"POST", "/v1/auth/login", "", json, `email=a&password=b`},
		"login: empty body":         {"POST", "/v1/auth/login", "", json, ``},
		"login: array":              {"POST", "/v1/auth/login", "", json, `[]`},
		"login: unknown field":      {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c","password":"x","admin":true}`},
		"login: wrong type":         {"POST", "/v1/auth/login", "", json, `{"email":1,"password":"x"}`},
		"login: missing password":   {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c"}`},
		"login: missing email":      {"POST", "/v1/auth/login", "", json, `{"password":"x"}`},
		"login: bad device type":    {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c","password":"x","device":{"type":"toaster"}}`},
		"login: device not object":  {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c","password":"x","device":"ios"}`},
		"login: two objects":        {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c","password":"x"}{}`},
		"login: too large":          {"POST", "/v1/auth/login", "", json, big},
		"login: form content type":  {"POST", "/v1/auth/login", "", "application/x-www-form-urlencoded", `{"email":"a@b.c","password":"x"}`},
		"login: truncated":          {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c","pass`},
		"refresh: missing token":    {"POST", "/v1/auth/refresh", "", json, `{}`},
		"refresh: null token":       {"POST", "/v1/auth/refresh", "", json, `{"refresh_token":null}`},
		"refresh: number":           {"POST", "/v1/auth/refresh", "", json, `{"refresh_token":42}`},
		"refresh: unknown field":    {"POST", "/v1/auth/refresh", "", json, `{"refresh_token":"` + p.RefreshToken + `","x":1}`},
		"me revoke: bad id":         {"DELETE", "/v1/me/sessions/not-a-uuid", p.AccessToken, "", ``},
		"sessions: limit zero":      {"GET", "/v1/sessions?limit=0", admin, "", ``},
		"sessions: limit too big":   {"GET", "/v1/sessions?limit=501", admin, "", ``},
		"sessions: limit not int":   {"GET", "/v1/sessions?limit=ten", admin, "", ``},
		"sessions: bad cursor":      {"GET", "/v1/sessions?cursor=%%%", admin, "", ``},
		"sessions: forged cursor":   {"GET", "/v1/sessions?cursor=MTIzfGFiYw", admin, "", ``},
		"sessions: bad org_id":      {"GET", "/v1/sessions?org_id=42", admin, "", ``},
		"sessions: bad user_id":     {"GET", "/v1/sessions?user_id=x", admin, "", ``},
		"get session: bad id":       {"GET", "/v1/sessions/123", admin, "", ``},
		"delete session: bad id":    {"DELETE", "/v1/sessions/123", admin, "", ``},
		"revoke user: bad id":       {"DELETE", "/v1/users/123/sessions", admin, "", ``},
		"org: missing name":         {"POST", "/v1/orgs", admin, json, `{}`},
		"org: blank name":           {"POST", "/v1/orgs", admin, json, `{"name":"   "}`},
		"org: long name":            {"POST", "/v1/orgs", admin, json, `{"name":"` + strings.Repeat("n", 201) + `"}`},
		"org: unknown field":        {"POST", "/v1/orgs", admin, json, `{"name":"x","id":"y"}`},
		"user: bad email":           {"POST", "/v1/users", admin, json, `{"org_id":"` + org + `","email":"not an email","password":"password-1","role":"user"}`},
		"user: email with name":     {"POST", "/v1/users", admin, json, `{"org_id":"` + org + `","email":"Bob <bob@example.com>","password":"password-1","role":"user"}`},
		"user: short password":      {"POST", "/v1/users", admin, json, `{"org_id":"` + org + `","email":"x@example.com","password":"short","role":"user"}`},
		"user: bad role":            {"POST", "/v1/users", admin, json, `{"org_id":"` + org + `","email":"x@example.com","password":"password-1","role":"root"}`},
		"user: bad org":             {"POST", "/v1/users", admin, json, `{"org_id":"nope","email":"x@example.com","password":"password-1","role":"user"}`},
		"user: unknown org":         {"POST", "/v1/users", admin, json, `{"org_id":"00000000-0000-0000-0000-000000000000","email":"x@example.com","password":"password-1","role":"user"}`},
		"patch: missing disabled":   {"PATCH", "/v1/users/" + uid, admin, json, `{}`},
		"patch: disabled string":    {"PATCH", "/v1/users/" + uid, admin, json, `{"disabled":"yes"}`},
		"patch: unknown field":      {"PATCH", "/v1/users/" + uid, admin, json, `{"disabled":true,"role":"global_admin"}`},
		"patch: bad id":             {"PATCH", "/v1/users/zzz", admin, json, `{"disabled":true}`},
		"patch: disable yourself":   {"PATCH", "/v1/users/" + e.AdminID, admin, json, `{"disabled":true}`},
		"patch: null disabled":      {"PATCH", "/v1/users/" + uid, admin, json, `{"disabled":null}`},
		"login: NUL in email":       {"POST", "/v1/auth/login", "", json, `{"email":"a\u0000@b.c","password":"password-1"}`},
		"login: NUL in device name": {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c","password":"password-1","device":{"type":"ios","name":"my\u0000phone"}}`},
		"org: NUL in name":          {"POST", "/v1/orgs", admin, json, `{"name":"Acme\u0000"}`},
		"user: NUL in email":        {"POST", "/v1/users", admin, json, `{"org_id":"` + org + `","email":"x\u0000@example.com","password":"password-1","role":"user"}`},
		"login: password too large": {"POST", "/v1/auth/login", "", json, `{"email":"a@b.c","password":"` + strings.Repeat("p", 1025) + `"}`},
	}
	before := e.Snapshot()
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := e.Raw(c.method, c.path, c.token, c.ctype, []byte(c.body))
			sessionstest.AssertProblem(t, r, 400)
		})
	}
	if after := e.Snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("malformed requests changed the database: %v -> %v", before, after)
	}
	if !e.Alive(p.AccessToken) {
		t.Fatal("the user's session died")
	}
}

func TestAuthenticationRequired(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	for _, path := range []string{"/v1/me/sessions", "/v1/sessions"} {
		for name, h := range map[string]string{"none": "", "garbage": "x.y.z", "refresh token as bearer": newRefreshToken()} {
			r := e.Raw("GET", path, h, "", nil)
			sessionstest.AssertProblem(t, r, 401)
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("%s %s: no WWW-Authenticate", path, name)
			}
		}
	}
	sessionstest.AssertProblem(t, e.Raw("GET", "/v1/nope", "", "", nil), 404)
	sessionstest.AssertProblem(t, e.Raw("PUT", "/v1/auth/login", "", "", nil), 405)
}
