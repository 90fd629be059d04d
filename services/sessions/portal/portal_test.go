package portal_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions/portal"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// portalClient is a browser without JavaScript: it keeps cookies by name
// (Secure ones too, over the test's plain http), sends them all, and does
// not follow redirects.
type portalClient struct {
	t    *testing.T
	base string
	jar  map[string]string
	hc   *http.Client
}

type portalResponse struct {
	Status  int
	Header  http.Header
	Body    string
	Cookies map[string]*http.Cookie // as set by this sessionstest.Response
}

func newPortalClient(t *testing.T, base string) *portalClient {
	return &portalClient{t: t, base: base, jar: map[string]string{}, hc: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (c *portalClient) do(method, path string, form url.Values) portalResponse {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	for name, value := range c.jar {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := portalResponse{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Cookies: map[string]*http.Cookie{}}
	for _, ck := range resp.Cookies() {
		r.Cookies[ck.Name] = ck
		if ck.MaxAge < 0 {
			delete(c.jar, ck.Name)
		} else {
			c.jar[ck.Name] = ck.Value
		}
	}
	return r
}

func (c *portalClient) get(path string) portalResponse { return c.do("GET", path, nil) }

func (c *portalClient) post(path string, form url.Values) portalResponse {
	return c.do("POST", path, form)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token in a page's forms.
func csrf(t *testing.T, page portalResponse) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no CSRF field in the page (status %d):\n%s", page.Status, page.Body)
	}
	return m[1]
}

// signIn signs in through the sign-in form of area and returns the answer
// to the POST.
func (c *portalClient) signIn(area, email, password string) portalResponse {
	c.t.Helper()
	form := c.get("/" + area + "/signin")
	if form.Status != 200 {
		c.t.Fatalf("GET /%s/signin: %d", area, form.Status)
	}
	return c.post("/"+area+"/signin", url.Values{"email": {email}, "password": {password}, "csrf": {csrf(c.t, form)}})
}

// mustSignIn signs in and returns the token of the signed-in pages' forms.
func (c *portalClient) mustSignIn(area, email string) string {
	c.t.Helper()
	password := "password-1"
	if email == "root@example.com" { // the bootstrap admin of newEnv
		password = "root-password"
	}
	if r := c.signIn(area, email, password); r.Status != http.StatusSeeOther {
		c.t.Fatalf("sign in %s: status %d\n%s", email, r.Status, r.Body)
	}
	home := "/admin/"
	if area == "account" {
		home = "/account/sessions"
	}
	page := c.get(home)
	if page.Status != 200 && page.Status != 403 {
		c.t.Fatalf("GET %s after sign-in: %d", home, page.Status)
	}
	return csrf(c.t, page)
}

func assertStatus(t *testing.T, r portalResponse, status int, contains ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d\n%s", r.Status, status, r.Body)
	}
	for _, s := range contains {
		if !strings.Contains(r.Body, s) {
			t.Fatalf("the page lacks %q:\n%s", s, r.Body)
		}
	}
}

func assertRedirect(t *testing.T, r portalResponse, to string) {
	t.Helper()
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != to {
		t.Fatalf("status %d to %q, want 303 to %q\n%s", r.Status, r.Header.Get("Location"), to, r.Body)
	}
}

func TestPortalCookies(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, email := e.User(org, "org_admin")
	for _, tc := range []struct {
		name   string
		base   string
		secure bool
		prefix string
	}{
		{"secure (default)", e.Srv.URL, true, "__Host-sg_"},
		{"PORTAL_COOKIE_SECURE=false", insecurePortal(t, e, []byte("0123456789abcdef0123456789abcdef")), false, "sg_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newPortalClient(t, tc.base)
			form := c.get("/admin/signin")
			assertStatus(t, form, 200, `<label for="email">`, `<label for="password">`)
			check := func(ck *http.Cookie, name string, maxAge time.Duration) {
				t.Helper()
				if ck == nil {
					t.Fatalf("cookie %s not set", name)
				}
				if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure != tc.secure || ck.Path != "/" || ck.Domain != "" {
					t.Fatalf("cookie %s: HttpOnly=%v SameSite=%v Secure=%v Path=%q Domain=%q", name, ck.HttpOnly, ck.SameSite, ck.Secure, ck.Path, ck.Domain)
				}
				if maxAge > 0 && ck.MaxAge != int(maxAge/time.Second) {
					t.Fatalf("cookie %s: Max-Age %d, want %s", name, ck.MaxAge, maxAge)
				}
			}
			check(form.Cookies[tc.prefix+"signin"], "signin", 12*time.Hour)

			bad := c.post("/admin/signin", url.Values{"email": {email}, "password": {"wrong"}, "csrf": {csrf(t, form)}})
			assertStatus(t, bad, http.StatusUnauthorized, "Invalid email or password.", `role="alert"`)
			if len(bad.Cookies) != 0 {
				t.Fatalf("a failed sign-in set cookies: %v", bad.Cookies)
			}

			ok := c.post("/admin/signin", url.Values{"email": {email}, "password": {"password-1"}, "csrf": {csrf(t, form)}})
			assertRedirect(t, ok, "/admin/")
			check(ok.Cookies[tc.prefix+"access"], "access", 5*time.Minute)
			check(ok.Cookies[tc.prefix+"refresh"], "refresh", 720*time.Hour)
			if !e.Alive(ok.Cookies[tc.prefix+"access"].Value) {
				t.Fatal("the access-token cookie does not hold a live access token")
			}
			if ck := ok.Cookies[tc.prefix+"signin"]; ck == nil || ck.MaxAge >= 0 {
				t.Fatal("the sign-in nonce outlives the sign-in")
			}
			page := c.get("/admin/")
			assertStatus(t, page, 200, "Sessions in A", email, "this session")
			for name, ck := range page.Cookies {
				check(ck, name, 0)
			}
			// The access token alone, without the refresh token, is enough
			// while it lives.
			delete(c.jar, tc.prefix+"refresh")
			assertStatus(t, c.get("/account/sessions"), 200, "This device")
		})
	}
}

// scriptRE and inlineAttrRE find inline scripts, event handlers and style
// attributes, which the portal's CSP would block.
var (
	scriptRE     = regexp.MustCompile(`<script[^>]*>([^<]*)</script>`)
	inlineAttrRE = regexp.MustCompile(`<[^>]*\s(style|on[a-z]+)=`)
)

func assertNoInline(t *testing.T, body string) {
	t.Helper()
	for _, m := range scriptRE.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(m[0], ` src="/admin/static/`) || strings.TrimSpace(m[1]) != "" {
			t.Errorf("inline script: %s", m[0])
		}
	}
	if strings.Count(body, "<script") != len(scriptRE.FindAllString(body, -1)) {
		t.Error("a script tag the check does not understand")
	}
	if m := inlineAttrRE.FindString(body); m != "" {
		t.Errorf("inline style or event handler: %s", m)
	}
}

func TestPortalSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, userEmail := e.User(org, "user")
	admin := newPortalClient(t, e.Srv.URL)
	admin.mustSignIn("admin", "root@example.com")
	user := newPortalClient(t, e.Srv.URL)
	user.mustSignIn("account", userEmail)
	anon := newPortalClient(t, e.Srv.URL)

	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
		"Cache-Control":           "no-store",
	}
	cases := []struct {
		name   string
		c      *portalClient
		method string
		path   string
		status int
		ctype  string
	}{
		{"sign-in page", anon, "GET", "/admin/signin", 200, "text/html; charset=utf-8"},
		{"account sign-in page", anon, "GET", "/account/signin", 200, "text/html; charset=utf-8"},
		{"signed out", anon, "GET", "/admin/", 303, ""},
		{"sessions", admin, "GET", "/admin/", 200, "text/html; charset=utf-8"},
		{"user page", admin, "GET", "/admin/users/" + e.AdminID, 200, "text/html; charset=utf-8"},
		{"own sessions", user, "GET", "/account/sessions", 200, "text/html; charset=utf-8"},
		{"plain user in the admin portal", user, "GET", "/admin/", 403, "text/html; charset=utf-8"},
		{"unknown page", admin, "GET", "/admin/nope", 404, "text/html; charset=utf-8"},
		{"wrong method", admin, "DELETE", "/admin/signin", 405, "text/html; charset=utf-8"},
		{"POST without CSRF", admin, "POST", "/admin/signout", 403, "text/html; charset=utf-8"},
		{"stylesheet", anon, "GET", "/admin/static/portal.css", 200, "text/css; charset=utf-8"},
		{"script", anon, "GET", "/admin/static/portal.js", 200, "text/javascript; charset=utf-8"},
		{"no directory listing", anon, "GET", "/admin/static/", 404, "text/html; charset=utf-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var form url.Values
			if tc.method == "POST" {
				form = url.Values{}
			}
			r := tc.c.do(tc.method, tc.path, form)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d", r.Status, tc.status)
			}
			for k, v := range want {
				if got := r.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.ctype != "" && r.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", r.Header.Get("Content-Type"), tc.ctype)
			}
			if strings.HasPrefix(tc.ctype, "text/html") && tc.status != 303 {
				assertNoInline(t, r.Body)
				for _, landmark := range []string{`<html lang="en">`, "<main", "<h1", `name="viewport"`} {
					if !strings.Contains(r.Body, landmark) {
						t.Errorf("the page lacks %s", landmark)
					}
				}
			}
		})
	}
	// The JSON API keeps its own headers.
	if r := e.Raw("GET", "/healthz", "", "", nil); r.Header.Get("Content-Security-Policy") != "" {
		t.Fatal("the portal's headers leak onto the API")
	}
}

func TestPortalCSRF(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, adminEmail := e.User(org, "org_admin")
	_, victim := e.NewUser(org, "user")
	userID, userEmail := e.User(org, "user")
	other := e.Login(userEmail, "password-1")

	admin := newPortalClient(t, e.Srv.URL)
	token := admin.mustSignIn("admin", adminEmail)
	second := newPortalClient(t, e.Srv.URL)
	secondToken := second.mustSignIn("admin", adminEmail)
	if token == secondToken {
		t.Fatal("two sessions share a CSRF token")
	}
	user := newPortalClient(t, e.Srv.URL)
	user.mustSignIn("account", userEmail)

	revoke := "/admin/sessions/" + victim.SessionID + "/revoke"
	before := e.Snapshot()
	for name, form := range map[string]url.Values{
		"no token":               {"back": {"/admin/"}},
		"empty token":            {"csrf": {""}},
		"forged token":           {"csrf": {strings.Repeat("A", 43)}},
		"another session's":      {"csrf": {secondToken}},
		"token in the query":     nil,
		"the sign-in form token": {"csrf": {csrf(t, newPortalClient(t, e.Srv.URL).get("/admin/signin"))}},
	} {
		t.Run(name, func(t *testing.T) {
			path := revoke
			if form == nil {
				path, form = revoke+"?csrf="+url.QueryEscape(token), url.Values{}
			}
			assertStatus(t, admin.post(path, form), http.StatusForbidden, "security token")
		})
	}
	for name, path := range map[string]string{
		"revoke user":        "/admin/users/" + userID + "/revoke-sessions",
		"disable user":       "/admin/users/" + userID + "/disable",
		"sign out":           "/admin/signout",
		"account sign out":   "/account/signout",
		"account revoke":     "/account/sessions/" + other.SessionID + "/revoke",
		"account revoke-all": "/account/sessions/revoke-others",
	} {
		t.Run(name, func(t *testing.T) {
			c := admin
			if strings.HasPrefix(path, "/account") {
				c = user
			}
			assertStatus(t, c.post(path, url.Values{}), http.StatusForbidden, "security token")
		})
	}
	if after := e.Snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused POSTs changed the database: %v -> %v", before, after)
	}
	if !e.Alive(victim.AccessToken) || !e.Alive(other.AccessToken) {
		t.Fatal("a refused POST revoked a session")
	}

	// With the right token the same request works.
	assertRedirect(t, admin.post(revoke, url.Values{"csrf": {token}, "back": {"/admin/?device=web"}}), "/admin/?device=web")
	if e.Alive(victim.AccessToken) {
		t.Fatal("the revoked session lives")
	}

	t.Run("sign-in form", func(t *testing.T) {
		c := newPortalClient(t, e.Srv.URL)
		form := c.get("/admin/signin")
		tok := csrf(t, form)
		creds := func(token string) url.Values {
			return url.Values{"email": {adminEmail}, "password": {"password-1"}, "csrf": {token}}
		}
		assertStatus(t, c.post("/admin/signin", creds("")), http.StatusForbidden, "security token")
		flipped := "A" + tok[1:]
		if tok[0] == 'A' {
			flipped = "B" + tok[1:]
		}
		assertStatus(t, c.post("/admin/signin", creds(flipped)), http.StatusForbidden)
		// Another browser's pair of cookie and token does not fit this one.
		assertStatus(t, c.post("/admin/signin", creds(csrf(t, newPortalClient(t, e.Srv.URL).get("/admin/signin")))), http.StatusForbidden)
		// Without the cookie, the token alone is refused (double submit).
		bare := newPortalClient(t, e.Srv.URL)
		assertStatus(t, bare.post("/admin/signin", creds(tok)), http.StatusForbidden)
		assertRedirect(t, c.post("/admin/signin", creds(tok)), "/admin/")
	})
}

// TestPortalScope checks that an org admin can neither see nor touch
// another org's users and sessions through the portal.
func TestPortalScope(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	orgA, orgB := e.Org("Alpha"), e.Org("Bravo")
	_, adminEmail := e.User(orgA, "org_admin")
	_, mine := e.NewUser(orgA, "user")
	theirID, theirs := e.NewUser(orgB, "user")
	_, theirEmail := e.User(orgB, "user")
	e.Login(theirEmail, "password-1")

	c := newPortalClient(t, e.Srv.URL)
	token := c.mustSignIn("admin", adminEmail)
	list := c.get("/admin/")
	assertStatus(t, list, 200, "Sessions in Alpha", mine.SessionID)
	for _, leak := range []string{theirs.SessionID, theirEmail, "Bravo", `name="org"`} {
		if strings.Contains(list.Body, leak) {
			t.Fatalf("an org admin's listing shows %q", leak)
		}
	}
	assertStatus(t, c.get("/admin/?email=example.com&limit=500"), 200)
	if strings.Contains(c.get("/admin/?email="+url.QueryEscape(theirEmail)).Body, theirs.SessionID) {
		t.Fatal("an email search reaches another org")
	}
	assertStatus(t, c.get("/admin/?org="+orgB), http.StatusForbidden)
	assertStatus(t, c.get("/admin/users/"+theirID), http.StatusNotFound, "No user with this id in your scope.")
	assertStatus(t, c.get("/admin/users/"+e.AdminID), http.StatusNotFound) // a global admin is outside an org admin's scope

	before := e.Snapshot()
	form := url.Values{"csrf": {token}}
	assertStatus(t, c.post("/admin/sessions/"+theirs.SessionID+"/revoke", form), http.StatusNotFound, "No active session with this id in your scope.")
	assertStatus(t, c.post("/admin/users/"+theirID+"/revoke-sessions", form), http.StatusNotFound)
	assertStatus(t, c.post("/admin/users/"+theirID+"/disable", form), http.StatusNotFound)
	if after := e.Snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("out-of-scope POSTs changed the database: %v -> %v", before, after)
	}
	if !e.Alive(theirs.AccessToken) {
		t.Fatal("another org's session was revoked")
	}

	// A global admin sees every org and can filter by one.
	g := newPortalClient(t, e.Srv.URL)
	g.mustSignIn("admin", "root@example.com")
	all := g.get("/admin/")
	assertStatus(t, all, 200, "All sessions", theirs.SessionID, mine.SessionID, `name="org"`, "Bravo")
	onlyB := g.get("/admin/?org=" + orgB)
	assertStatus(t, onlyB, 200, theirs.SessionID)
	if strings.Contains(onlyB.Body, mine.SessionID) {
		t.Fatal("the org filter shows another org")
	}

	// A plain user gets a 403 page that leads to its own sessions.
	u := newPortalClient(t, e.Srv.URL)
	u.mustSignIn("admin", theirEmail)
	assertStatus(t, u.get("/admin/"), http.StatusForbidden, "Administrators only", `href="/account/sessions"`)
	assertStatus(t, u.get("/admin/users/"+theirID), http.StatusForbidden)
}

// TestPortalMalformedInputWritesNothing sends bad forms and queries and
// expects a clear error page and an untouched database.
func TestPortalMalformedInputWritesNothing(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	uid, p := e.NewUser(org, "user")
	c := newPortalClient(t, e.Srv.URL)
	token := c.mustSignIn("admin", "root@example.com")
	acct := newPortalClient(t, e.Srv.URL)
	acctToken := acct.mustSignIn("account", e.EmailOf(uid))
	ok := url.Values{"csrf": {token}}

	cases := []struct {
		name   string
		c      *portalClient
		method string
		path   string
		form   url.Values
		status int
		says   string
	}{
		{"revoke: bad session id", c, "POST", "/admin/sessions/not-a-uuid/revoke", ok, 400, "Session id must be a UUID."},
		{"revoke user: bad id", c, "POST", "/admin/users/123/revoke-sessions", ok, 400, "User id must be a UUID."},
		{"disable: bad id", c, "POST", "/admin/users/zzz/disable", ok, 400, "User id must be a UUID."},
		{"enable: bad id", c, "POST", "/admin/users/zzz/enable", ok, 400, "User id must be a UUID."},
		{"disable yourself", c, "POST", "/admin/users/" + e.AdminID + "/disable", ok, 400, "You cannot disable your own account."},
		{"user page: bad id", c, "GET", "/admin/users/42", nil, 400, "User id must be a UUID."},
		{"list: bad device type", c, "GET", "/admin/?device=toaster", nil, 400, "Device type must be one of"},
		{"list: bad activity", c, "GET", "/admin/?active=2y", nil, 400, "Last activity must be one of 1h, 24h, 7d, older."},
		{"list: bad org", c, "GET", "/admin/?org=42", nil, 400, "Organisation must be a UUID."},
		{"list: forged cursor", c, "GET", "/admin/?cursor=MTIzfGFiYw", nil, 400, "Cursor is not one this API returned."},
		{"list: limit zero", c, "GET", "/admin/?limit=0", nil, 400, "Limit must be an integer between 1 and 500."},
		{"list: limit text", c, "GET", "/admin/?limit=ten", nil, 400, "Limit must be an integer"},
		{"list: long email", c, "GET", "/admin/?email=" + strings.Repeat("a", 255), nil, 400, "at most 254 characters"},
		{"form too large", c, "POST", "/admin/sessions/" + p.SessionID + "/revoke", url.Values{"csrf": {token}, "x": {strings.Repeat("x", 70<<10)}}, 400, "The form could not be read"},
		{"account revoke: bad id", acct, "POST", "/account/sessions/123/revoke", url.Values{"csrf": {acctToken}}, 400, "Session id must be a UUID."},
		{"account revoke: not mine", acct, "POST", "/account/sessions/" + e.Admin.SessionID + "/revoke", url.Values{"csrf": {acctToken}}, 404, "No active session of yours has this id."},
	}
	before := e.Snapshot()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.c.do(tc.method, tc.path, tc.form)
			assertStatus(t, r, tc.status, tc.says)
			if !strings.Contains(r.Body, "<h1") || strings.Contains(r.Body, "SQLSTATE") {
				t.Fatalf("not a clear error page:\n%s", r.Body)
			}
		})
	}
	t.Run("sign-in: blank fields", func(t *testing.T) {
		anon := newPortalClient(t, e.Srv.URL)
		tok := csrf(t, anon.get("/account/signin"))
		r := anon.post("/account/signin", url.Values{"csrf": {tok}, "email": {"  "}, "password": {"x"}})
		assertStatus(t, r, 400, "Email is required", `role="alert"`)
		r = anon.post("/account/signin", url.Values{"csrf": {tok}, "email": {"a@example.com"}, "password": {strings.Repeat("p", 1025)}})
		assertStatus(t, r, 400, "Password is required", `value="a@example.com"`)
		if _, ok := anon.jar["__Host-sg_access"]; ok {
			t.Fatal("a refused sign-in set a token cookie")
		}
	})
	if after := e.Snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("malformed requests changed the database: %v -> %v", before, after)
	}
	if !e.Alive(p.AccessToken) {
		t.Fatal("the user's session died")
	}
}

// TestPortalRefreshAndRevocation checks that an expired access token is
// refreshed transparently, and that a revoked session leads to the sign-in
// page with its cookies cleared.
func TestPortalRefreshAndRevocation(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, email := e.User(org, "user")
	c := newPortalClient(t, e.Srv.URL)
	e.Clock.Advance(-10 * time.Minute) // the tokens are issued 10 minutes ago, so the access token has expired
	signedIn := c.signIn("account", email, "password-1")
	e.Clock.Advance(10 * time.Minute)
	assertRedirect(t, signedIn, "/account/sessions")
	expired, refresh := c.jar["__Host-sg_access"], c.jar["__Host-sg_refresh"]
	if e.Call("GET", "/v1/me/sessions", expired, nil, nil) != http.StatusUnauthorized {
		t.Fatal("the test's access token has not expired")
	}

	page := c.get("/account/sessions")
	assertStatus(t, page, 200, "This device")
	next := page.Cookies["__Host-sg_access"]
	if next == nil || next.Value == expired || !e.Alive(next.Value) {
		t.Fatal("the expired access token was not replaced by a live one")
	}
	if rt := page.Cookies["__Host-sg_refresh"]; rt == nil || rt.Value == refresh || rt.MaxAge != int((720*time.Hour)/time.Second) {
		t.Fatal("the refresh token was not rotated into the cookie")
	}
	// The next page uses the new access token as it is.
	if again := c.get("/account/sessions"); again.Status != 200 || len(again.Cookies) != 0 {
		t.Fatalf("a live access token led to status %d and cookies %v", again.Status, again.Cookies)
	}

	sid := e.Claims(next.Value).SessionID
	if code := e.Call("DELETE", "/v1/sessions/"+sid, e.Admin.AccessToken, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	gone := c.get("/account/sessions")
	assertRedirect(t, gone, "/account/signin")
	for _, name := range []string{"__Host-sg_access", "__Host-sg_refresh"} {
		if ck := gone.Cookies[name]; ck == nil || ck.MaxAge >= 0 {
			t.Fatalf("cookie %s is not cleared", name)
		}
	}
	signin := c.get("/account/signin")
	assertStatus(t, signin, 200, "Your session has ended. Please sign in again.", `aria-live="polite"`)
	if strings.Contains(c.get("/account/signin").Body, "Your session has ended") {
		t.Fatal("the flash message shows twice")
	}
}

func TestPortalSignOutAndRevokeOthers(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, email := e.User(org, "user")
	phone, laptop := e.Login(email, "password-1"), e.Login(email, "password-1")
	c := newPortalClient(t, e.Srv.URL)
	token := c.mustSignIn("account", email)
	page := c.get("/account/sessions")
	assertStatus(t, page, 200, "Sign out all other devices", "Ends 2 other sessions")
	if n := strings.Count(page.Body, `class="device-card`); n != 3 {
		t.Fatalf("%d sessions shown, want 3", n)
	}

	assertRedirect(t, c.post("/account/sessions/"+phone.SessionID+"/revoke", url.Values{"csrf": {token}}), "/account/sessions")
	assertStatus(t, c.get("/account/sessions"), 200, "That device is signed out.")
	if e.Alive(phone.AccessToken) || !e.Alive(laptop.AccessToken) {
		t.Fatal("revoking one device")
	}
	assertRedirect(t, c.post("/account/sessions/revoke-others", url.Values{"csrf": {token}}), "/account/sessions")
	assertStatus(t, c.get("/account/sessions"), 200, "Signed out 1 other device.")
	if e.Alive(laptop.AccessToken) {
		t.Fatal("the other device lives")
	}
	access := c.jar["__Host-sg_access"]
	if !e.Alive(access) {
		t.Fatal("signing out the others signed out this browser")
	}
	out := c.post("/account/signout", url.Values{"csrf": {token}})
	assertRedirect(t, out, "/account/signin")
	if e.Alive(access) {
		t.Fatal("sign-out left the session alive")
	}
	if _, ok := c.jar["__Host-sg_refresh"]; ok {
		t.Fatal("sign-out left the refresh cookie")
	}
	assertRedirect(t, c.get("/account/sessions"), "/account/signin")
}

// insecurePortal serves the same service with PORTAL_COOKIE_SECURE=false.
func insecurePortal(t *testing.T, e *sessionstest.Env, kek []byte) string {
	srv := httptest.NewServer(e.Handler(portal.Config{InsecureCookies: true, KEK: kek}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPortalGatewaysPage: a global admin sees the fleet; an org admin does
// not.
func TestPortalGatewaysPage(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	now := time.Now()
	e.Fleet.Report(events.GatewayApplied{GatewayID: "6bc27edf-80b7-4c9e-9d6b-bf4ed0c27283", Name: "edge-fra-1", Version: "v2.0.0",
		StartedAt: now.Add(-time.Hour), AppliedSeq: 40, StreamLastSeq: 42, State: events.GatewayCurrent, At: now})
	root := newPortalClient(t, e.Srv.URL)
	root.mustSignIn("admin", "root@example.com")
	assertStatus(t, root.get("/admin/gateways"), 200, "edge-fra-1", "6bc27edf", "v2.0.0", "2 events", "current")
	assertStatus(t, root.get("/admin/"), 200, `href="/admin/gateways"`)
	_, email := e.User(e.Org("A"), "org_admin")
	oa := newPortalClient(t, e.Srv.URL)
	oa.mustSignIn("admin", email)
	assertStatus(t, oa.get("/admin/gateways"), 403)
	if strings.Contains(string(oa.get("/admin/").Body), `href="/admin/gateways"`) {
		t.Fatal("an org admin is offered the gateways page")
	}
}
