package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestMethodNotAllowedSaysWhatIs: a 405 names the methods the path has
// (RFC 9110 section 15.5.6), on the API and on the portal alike.
func TestMethodNotAllowedSaysWhatIs(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	for path, want := range map[string]string{
		"/v1/auth/login":         "POST",
		"/v1/me/sessions":        "GET, DELETE",
		"/v1/users/" + e.AdminID: "GET, PATCH",
		"/admin/signin":          "GET, POST",
	} {
		r := e.Raw(http.MethodPut, path, e.Admin.AccessToken, "", nil)
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != want {
			t.Errorf("PUT %s: %d, Allow %q; want 405 with Allow %q", path, r.Status, r.Header.Get("Allow"), want)
		}
	}
}

// TestBearerChallenges: a request without a token is challenged with a
// plain "Bearer" (RFC 6750 section 3.1: no error code when no credentials
// were sent); one with a bad token gets error="invalid_token".
func TestBearerChallenges(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	for name, tc := range map[string]struct{ auth, want string }{
		"no Authorization":     {"", "Bearer"},
		"another scheme":       {"Basic dXNlcjpwYXNz", "Bearer"},
		"an empty bearer":      {"Bearer ", "Bearer"},
		"a token that is bad":  {"Bearer x.y.z", `Bearer error="invalid_token"`},
		"a token that expired": {"Bearer " + e.Admin.AccessToken + "x", `Bearer error="invalid_token"`},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.Srv.URL+"/v1/me/sessions", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != tc.want {
			t.Errorf("%s: %d, WWW-Authenticate %q; want 401 with %q", name, resp.StatusCode, got, tc.want)
		}
	}
}

// TestEveryAnswerButTheKeysIsNotCached: the description promises
// Cache-Control: no-store on every response but the JWKS.
func TestEveryAnswerButTheKeysIsNotCached(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/healthz", ""}, {"GET", "/readyz", ""}, {"GET", "/metrics", ""}, {"GET", "/openapi.json", ""},
		{"GET", "/v1/me/sessions", e.Admin.AccessToken}, {"GET", "/v1/me/sessions", ""}, {"GET", "/v1/nope", ""},
		{"PUT", "/v1/auth/login", ""}, {"GET", "/admin/signin", ""}, {"GET", "/admin/static/portal.css", ""},
	} {
		r := e.Raw(c.method, c.path, c.token, "", nil)
		if got := r.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s %s (%d): Cache-Control %q, want no-store", c.method, c.path, r.Status, got)
		}
	}
	if r := e.Raw("GET", "/.well-known/jwks.json", "", "", nil); !strings.HasPrefix(r.Header.Get("Cache-Control"), "public") {
		t.Errorf("JWKS: Cache-Control %q, want it cacheable", r.Header.Get("Cache-Control"))
	}
}
