package sessions_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/alexedwards/argon2id"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestLoginDoesNotRevealAccounts: unknown email, wrong password, disabled and
// erased users get byte-identical answers, and an unknown email is checked
// against a hash of the same cost as a real one.
func TestLoginDoesNotRevealAccounts(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, known := e.User(org, "user")
	disabledID, disabled := e.User(org, "user")
	erasedID, erased := e.User(org, "user")
	if code := e.Call("PATCH", "/v1/users/"+disabledID, e.Admin.AccessToken, map[string]bool{"disabled": true}, nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	if _, err := e.Pool.Exec(t.Context(), "UPDATE users SET erased_at = now() WHERE id = $1", erasedID); err != nil {
		t.Fatal(err)
	}
	attempts := map[string]map[string]string{
		"unknown email":   {"email": "nobody-" + known, "password": "password-1"},
		"wrong password":  {"email": known, "password": "password-2"},
		"disabled user":   {"email": disabled, "password": "password-1"},
		"erased user":     {"email": erased, "password": "password-1"},
		"disabled, wrong": {"email": disabled, "password": "nope-nope"},
	}
	var first *sessionstest.Response
	for name, body := range attempts {
		b, _ := json.Marshal(body)
		r := e.Raw("POST", "/v1/auth/login", "", "application/json", b)
		sessionstest.AssertProblem(t, r, http.StatusUnauthorized)
		// The request's own id (header and problem member) differs by
		// request, not by account: everything else must be the same.
		r.Header.Del("X-Request-Id")
		r.Header.Del("Date")
		var p map[string]any
		if err := json.Unmarshal(r.Body, &p); err != nil || p["request_id"] == "" {
			t.Fatalf("%s: a problem without its request id: %s", name, r.Body)
		}
		delete(p, "request_id")
		r.Body, _ = json.Marshal(p)
		if first == nil {
			first = &r
			continue
		}
		if string(r.Body) != string(first.Body) {
			t.Errorf("%s: body %s differs from %s", name, r.Body, first.Body)
		}
		if len(r.Header) != len(first.Header) {
			t.Errorf("%s: headers %v differ from %v", name, r.Header, first.Header)
		}
	}
	var realHash string
	if err := e.Pool.QueryRow(t.Context(), "SELECT password_hash FROM users WHERE email = $1", known).Scan(&realHash); err != nil {
		t.Fatal(err)
	}
	pReal, _, _, err1 := argon2id.DecodeHash(realHash)
	pDummy, _, _, err2 := argon2id.DecodeHash(sessions.DummyHash(e.Svc))
	if err1 != nil || err2 != nil || *pReal != *pDummy {
		t.Fatalf("dummy hash parameters %+v differ from real ones %+v (%v %v)", pDummy, pReal, err1, err2)
	}
	var failures int
	_ = e.Pool.QueryRow(t.Context(), "SELECT count(*) FROM audit_log WHERE action = 'login_failed'").Scan(&failures)
	if failures != len(attempts) {
		t.Fatalf("%d failed logins audited, want %d", failures, len(attempts))
	}
}
