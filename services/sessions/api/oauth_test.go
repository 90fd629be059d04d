package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

type createdClient struct {
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	OrgID        *string  `json:"org_id"`
	Scopes       []string `json:"scopes"`
}

// form posts an OAuth form with HTTP Basic client credentials (none when id
// is "").
func form(t *testing.T, e *sessionstest.Env, path, id, secret string, v url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.Srv.URL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := e.Srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestAPIClients: admins create clients in their scope (the secret shown
// once, kept only as a hash), list and delete them; a client's credentials
// get a token of its scopes, and stop working once it is deleted.
func TestAPIClients(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("Clients"), e.Org("Other")
	_, admin := e.NewUser(org, "org_admin")
	_, user := e.NewUser(org, "user")
	var c createdClient
	if code := e.Call("POST", "/v1/clients", admin.AccessToken, map[string]any{"name": "SIEM", "scopes": []string{"introspect", "ssf.read"}}, &c); code != 201 ||
		c.ClientSecret == "" || c.OrgID == nil || *c.OrgID != org {
		t.Fatalf("create: %d %+v", code, c)
	}
	if n := e.Count("api_clients WHERE secret_hash = sha256(convert_to('" + c.ClientSecret + "', 'UTF8'))"); n != 1 {
		t.Fatal("the secret is not kept as its hash")
	}
	for _, bad := range []struct {
		token string
		body  map[string]any
		want  int
	}{
		{admin.AccessToken, map[string]any{"name": "x", "org_id": other, "scopes": []string{"introspect"}}, 404},
		{admin.AccessToken, map[string]any{"name": "x", "scopes": []string{"root"}}, 400},
		{admin.AccessToken, map[string]any{"name": "", "scopes": []string{"introspect"}}, 400},
		{user.AccessToken, map[string]any{"name": "x", "scopes": []string{"introspect"}}, 403},
	} {
		if code := e.Call("POST", "/v1/clients", bad.token, bad.body, nil); code != bad.want {
			t.Errorf("%v: %d, want %d", bad.body, code, bad.want)
		}
	}
	var list struct {
		Clients []map[string]any `json:"clients"`
	}
	if code := e.Call("GET", "/v1/clients", admin.AccessToken, nil, &list); code != 200 || len(list.Clients) != 1 || list.Clients[0]["client_secret"] != nil {
		t.Fatalf("list: %d %+v", code, list)
	}

	code, tok := form(t, e, "/oauth2/token", c.ClientID, c.ClientSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"introspect"}})
	if code != 200 || tok["token_type"] != "Bearer" || tok["scope"] != "introspect" || tok["access_token"] == "" {
		t.Fatalf("token: %d %v", code, tok)
	}
	if got, err := e.Svc.ClientByToken(t.Context(), tok["access_token"].(string)); err != nil || got.ID != c.ClientID || !got.Has("introspect") || got.Has("ssf.read") {
		t.Fatalf("the token's client: %+v %v", got, err)
	}
	for _, bad := range []struct {
		id, secret, grant, scope, want string
		status                         int
	}{
		{c.ClientID, "wrong", "client_credentials", "", "invalid_client", 401},
		{"", "", "client_credentials", "", "invalid_client", 401},
		{c.ClientID, c.ClientSecret, "password", "", "unsupported_grant_type", 400},
		{c.ClientID, c.ClientSecret, "client_credentials", "ssf.manage", "invalid_scope", 400},
	} {
		v := url.Values{"grant_type": {bad.grant}}
		if bad.scope != "" {
			v.Set("scope", bad.scope)
		}
		if code, out := form(t, e, "/oauth2/token", bad.id, bad.secret, v); code != bad.status || out["error"] != bad.want {
			t.Errorf("%+v: %d %v", bad, code, out)
		}
	}
	var theirs createdClient
	if code := e.Call("POST", "/v1/clients", e.Admin.AccessToken, map[string]any{"name": "other's", "org_id": other, "scopes": []string{"introspect"}}, &theirs); code != 201 {
		t.Fatalf("a global admin's client of another org: %d", code)
	}
	if code := e.Call("DELETE", "/v1/clients/"+theirs.ClientID, admin.AccessToken, nil, nil); code != 404 {
		t.Fatalf("an org admin deleting another org's client: %d, want 404", code)
	}
	if code := e.Call("GET", "/v1/clients", admin.AccessToken, nil, &list); code != 200 || len(list.Clients) != 1 {
		t.Fatalf("an org admin sees %d clients, want its org's one", len(list.Clients))
	}
	if code := e.Call("DELETE", "/v1/clients/"+c.ClientID, admin.AccessToken, nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if _, err := e.Svc.ClientByToken(t.Context(), tok["access_token"].(string)); err == nil {
		t.Fatal("a deleted client's token still works")
	}
	if code, out := form(t, e, "/oauth2/token", c.ClientID, c.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); code != 401 || out["error"] != "invalid_client" {
		t.Fatalf("a deleted client's credentials: %d %v", code, out)
	}
}

// TestRFC7009Revocation: a user's refresh or access token revokes its
// session, with reason token_revoke; anything else answers 200 and changes
// nothing; no client authentication is needed.
func TestRFC7009Revocation(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("Revoking")
	_, email := e.User(org, "user")
	byRefresh, byAccess, bystander := e.Login(email, "password-1"), e.Login(email, "password-1"), e.Login(email, "password-1")
	for _, c := range []struct {
		token, hint string
	}{{byRefresh.RefreshToken, "refresh_token"}, {byAccess.AccessToken, ""}} {
		if code, _ := form(t, e, "/oauth2/revoke", "", "", url.Values{"token": {c.token}, "token_type_hint": {c.hint}}); code != 200 {
			t.Fatalf("revoke: %d", code)
		}
	}
	if e.Alive(byRefresh.AccessToken) || e.Alive(byAccess.AccessToken) || !e.Alive(bystander.AccessToken) {
		t.Fatal("RFC 7009 did not revoke exactly the tokens' sessions")
	}
	if n := e.Count("sessions WHERE revoked_reason = 'token_revoke'"); n != 2 {
		t.Fatalf("%d sessions revoked with token_revoke, want 2", n)
	}
	before := e.Snapshot()
	for _, tok := range []string{"garbage", byRefresh.RefreshToken, strings.Repeat("A", 43)} {
		if code, _ := form(t, e, "/oauth2/revoke", "", "", url.Values{"token": {tok}}); code != 200 {
			t.Fatalf("an invalid token: %d, want 200", code)
		}
	}
	if after := e.Snapshot(); after["sessions_revoked"] != before["sessions_revoked"] || after["outbox"] != before["outbox"] {
		t.Fatalf("an invalid token changed something: %v → %v", before, after)
	}
	// Like every revoking call, it names its receipt, and waits on asking.
	another := e.Login(email, "password-1")
	for _, tok := range []string{another.RefreshToken, "garbage"} {
		req, _ := http.NewRequest("POST", e.Srv.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Prefer", "wait=2")
		resp, err := e.Srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || len(resp.Header.Get("Revocation-Id")) != 36 || resp.Header.Get("Revocation-Status") == "" {
			t.Fatalf("%s: %d, headers %v", tok, resp.StatusCode, resp.Header)
		}
	}
	if code, out := form(t, e, "/oauth2/revoke", "", "", url.Values{}); code != 400 || out["error"] != "invalid_request" {
		t.Fatalf("no token: %d %v", code, out)
	}
}

// TestRFC7662Introspection: a client with the introspect scope learns
// whether a token is active, checked as a gateway checks it, with its
// claims; a revoked token is inactive; an org's client sees only its org's
// tokens as active; a client without the scope, or without credentials,
// is refused.
func TestRFC7662Introspection(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org, other := e.Org("Introspected"), e.Org("Elsewhere")
	_, email := e.User(org, "user")
	pair := e.Login(email, "password-1")
	client := func(org string, scopes ...string) createdClient {
		var c createdClient
		body := map[string]any{"name": "rs", "scopes": scopes}
		if org != "" {
			body["org_id"] = org
		}
		if code := e.Call("POST", "/v1/clients", e.Admin.AccessToken, body, &c); code != 201 {
			t.Fatalf("client: %d", code)
		}
		return c
	}
	rs, outsider, noScope := client(org, "introspect"), client(other, "introspect"), client("", "ssf.read")
	ask := func(c createdClient, tok string) (int, map[string]any) {
		return form(t, e, "/oauth2/introspect", c.ClientID, c.ClientSecret, url.Values{"token": {tok}})
	}
	code, got := ask(rs, pair.AccessToken)
	if code != 200 || got["active"] != true || got["sid"] != pair.SessionID || got["token_type"] != "access_token" || got["org"] != org || got["auth_time"] == nil {
		t.Fatalf("an access token: %d %v", code, got)
	}
	if code, got := ask(rs, pair.RefreshToken); code != 200 || got["active"] != true || got["token_type"] != "refresh_token" || got["sid"] != pair.SessionID {
		t.Fatalf("a refresh token: %d %v", code, got)
	}
	if _, got := ask(outsider, pair.AccessToken); got["active"] != false || len(got) != 1 {
		t.Fatalf("another org's client: %v", got)
	}
	// A refresh token of a session the org's policy has ended (idle) is not
	// active, as its refresh would be refused.
	if code := e.Call("PUT", "/v1/orgs/"+org+"/policy", e.Admin.AccessToken, map[string]any{"idle_timeout": "10m"}, nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	if _, err := e.Pool.Exec(t.Context(), `UPDATE sessions SET last_active_at = now() - interval '11 minutes' WHERE id = $1`, pair.SessionID); err != nil {
		t.Fatal(err)
	}
	e.Clock.Set(time.Now())
	if _, got := ask(rs, pair.RefreshToken); got["active"] != false {
		t.Fatalf("an idle session's refresh token: %v", got)
	}
	if code := e.Call("PUT", "/v1/orgs/"+org+"/policy", e.Admin.AccessToken, map[string]any{}, nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	if code := e.Call("DELETE", "/v1/me/sessions/"+pair.SessionID, pair.AccessToken, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	for _, tok := range []string{pair.AccessToken, pair.RefreshToken, "garbage"} {
		if code, got := ask(rs, tok); code != 200 || got["active"] != false || len(got) != 1 {
			t.Fatalf("a revoked or invalid token: %d %v", code, got)
		}
	}
	if code, out := ask(noScope, pair.AccessToken); code != 403 || out["error"] != "insufficient_scope" {
		t.Fatalf("a client without the scope: %d %v", code, out)
	}
	if code, out := form(t, e, "/oauth2/introspect", "", "", url.Values{"token": {pair.AccessToken}}); code != 401 || out["error"] != "invalid_client" {
		t.Fatalf("no client: %d %v", code, out)
	}
}
