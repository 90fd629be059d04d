package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/sessionguard/revoke/internal/testenv"
)

// The portal tests drive the admin portal and the "My sessions" page in a
// real headless Chromium against the whole system (sessiond and gateways on
// PostgreSQL and NATS), and check the effects where they matter: at the
// gateways. They save a screenshot of every page into PORTAL_SCREENSHOTS_DIR
// (default: a temporary directory); the README's pictures come from
// PORTAL_SCREENSHOTS_DIR=docs/screenshots (run from the repository root, or
// an absolute path).

const (
	uaIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	uaMac     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
	uaWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	uaAndroid = "okhttp/4.12.0 (Android 14; Pixel 8)"
	uaFirefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
)

// chromiumPath finds a Chromium (or Chrome) binary, "" when there is none.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/lib/chromium/chromium"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium with an empty profile, on one tab.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("no chromium binary found (on Debian: apt-get install chromium); the portal's browser tests need a real headless Chromium")
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("start chromium: %v", err)
	}
	shots := os.Getenv("PORTAL_SCREENSHOTS_DIR")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, base: base, shots: shots}
}

// do runs actions with a deadline.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// navigate runs actions that load a page (a link, a form) and returns the
// page's HTTP status.
func (b *browser) navigate(actions ...chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return int(resp.Status)
}

func (b *browser) open(path string) int {
	b.t.Helper()
	return b.navigate(chromedp.Navigate(b.base + path))
}

func result[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

// text is the visible text of the page's <main>.
func (b *browser) text() string {
	b.t.Helper()
	return result(b, chromedp.Text(chromedp.CSS("main")))
}

func (b *browser) eval(js string) bool {
	b.t.Helper()
	return result(b, chromedp.Evaluate[bool](js))
}

func (b *browser) location() string {
	b.t.Helper()
	return result(b, chromedp.Location())
}

// signIn fills in and submits the sign-in form of area.
func (b *browser) signIn(area, email, password string) int {
	b.t.Helper()
	b.open("/" + area + "/signin")
	b.do(chromedp.SendKeys(chromedp.CSS("#email"), email), chromedp.SendKeys(chromedp.CSS("#password"), password))
	return b.navigate(chromedp.Click(chromedp.CSS(`main form button[type="submit"]`)))
}

// ask opens the <details> confirmation that holds the form posting to
// action: the first step of every destructive action.
func (b *browser) ask(action string) {
	b.t.Helper()
	form := `form[action="` + action + `"]`
	if b.eval(`document.querySelector('` + form + ` button[type="submit"]').checkVisibility()`) {
		b.t.Fatalf("the confirmation of %s is visible before it is asked for", action)
	}
	b.do(chromedp.Click(chromedp.CSS(`details:has(> ` + form + `) > summary`)))
	b.do(chromedp.WaitVisible(chromedp.CSS(form + ` button[type="submit"]`)))
}

// confirm asks for the action and confirms it, and returns the status of
// the page it leads to.
func (b *browser) confirm(action string) int {
	b.t.Helper()
	b.ask(action)
	return b.navigate(chromedp.Click(chromedp.CSS(`form[action="` + action + `"] button[type="submit"]`)))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := result(b, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(b.shots, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// cookie is the value of the browser's cookie name for the system's origin.
func (b *browser) cookie(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) deleteCookie(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: name, URL: b.base + "/"}); err != nil {
		b.t.Fatal(err)
	}
}

// rows counts the rows of the sessions table on the page.
func (b *browser) rows() int {
	b.t.Helper()
	return result(b, chromedp.Evaluate[int](`document.querySelectorAll("table.sessions:not(.audit) tbody tr").length`))
}

// org creates an organisation as the bootstrap admin.
func (s *system) org(name string) string {
	s.t.Helper()
	var o struct{ ID string }
	if code := s.do("POST", "/v1/orgs", s.admin, map[string]string{"name": name}, &o); code != 201 {
		s.t.Fatalf("create org %s: %d", name, code)
	}
	return o.ID
}

// member creates a user with the password "password-1".
func (s *system) member(org, role, email string) string {
	s.t.Helper()
	var u struct{ ID string }
	if code := s.do("POST", "/v1/users", s.admin, map[string]string{"org_id": org, "email": email, "password": "password-1", "role": role}, &u); code != 201 {
		s.t.Fatalf("create user %s: %d", email, code)
	}
	return u.ID
}

// device logs a user in from a device, the way an app would.
func (s *system) device(email, userAgent, deviceType, deviceName string) pair {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"email": email, "password": "password-1", "device": map[string]string{"type": deviceType, "name": deviceName}})
	req, _ := http.NewRequest("POST", s.api+"/v1/auth/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var p pair
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&p) != nil {
		s.t.Fatalf("login %s: %d", email, resp.StatusCode)
	}
	return p
}

// age moves a session's login and last activity into the past, and gives it
// an address from the documentation range, as a session of a real user
// would have.
func (s *system) age(sessionID string, loggedIn, lastActive time.Duration, ip string) {
	s.t.Helper()
	_, err := s.pool().Exec(s.t.Context(), `UPDATE sessions SET created_at = now() - make_interval(secs => $2),
		last_active_at = now() - make_interval(secs => $3), ip = $4::inet WHERE id = $1`,
		sessionID, loggedIn.Seconds(), lastActive.Seconds(), ip)
	if err != nil {
		s.t.Fatal(err)
	}
}

func assertContains(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Fatalf("page lacks %q:\n%s", w, text)
		}
	}
}

func assertLacks(t *testing.T, text string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(text, w) {
			t.Fatalf("page shows %q:\n%s", w, text)
		}
	}
}

// TestPortalOrgAdmin signs in as an org admin, sees its own org's sessions
// only, filters them, revokes one and disables a user in the browser, and
// sees the revoked tokens refused at every gateway.
func TestPortalOrgAdmin(t *testing.T) {
	s := newSystem(t, 2)
	acme, globex := s.org("Acme"), s.org("Globex")
	s.member(acme, "org_admin", "olivia@acme.test")
	aliceID := s.member(acme, "user", "alice@acme.test")
	s.member(acme, "user", "bob@acme.test")
	garyID := s.member(globex, "user", "gary@globex.test")
	aliceIPhone := s.device("alice@acme.test", uaIPhone, "ios", "Alice's iPhone")
	aliceMac := s.device("alice@acme.test", uaMac, "web", "")
	bobPhone := s.device("bob@acme.test", uaAndroid, "android", "Pixel 8")
	bobOld := s.device("bob@acme.test", uaWindows, "web", "Office PC")
	gary := s.device("gary@globex.test", uaWindows, "web", "")
	s.age(aliceIPhone.SessionID, 3*24*time.Hour, 4*time.Minute, "203.0.113.24")
	s.age(aliceMac.SessionID, 2*time.Hour, 12*time.Minute, "198.51.100.7")
	s.age(bobPhone.SessionID, 26*time.Hour, 3*time.Hour, "203.0.113.90")
	s.age(bobOld.SessionID, 20*24*time.Hour, 9*24*time.Hour, "192.0.2.15")

	b := newBrowser(t, s.api)
	b.open("/admin/")
	if loc := b.location(); !strings.HasSuffix(loc, "/admin/signin") {
		t.Fatalf("signed out /admin/ led to %s, want the sign-in page", loc)
	}
	b.screenshot("signin.png")

	if code := b.signIn("admin", "olivia@acme.test", "password-1"); code != 200 {
		t.Fatalf("sign in: status %d", code)
	}
	text := b.text()
	assertContains(t, text, "Sessions in Acme", "alice@acme.test", "bob@acme.test", "olivia@acme.test",
		"Safari on iOS", "Alice's iPhone", "Chrome on Windows", "4 min ago", "9 days ago")
	assertLacks(t, text, "gary@globex.test", "Globex")
	if got := b.rows(); got != 5 { // alice 2, bob 2, olivia's browser
		t.Fatalf("%d rows, want the 5 sessions of Acme", got)
	}
	if b.eval(`document.querySelector("#f-org") !== null`) {
		t.Fatal("an org admin is offered an organisation filter")
	}
	if !b.eval(`document.querySelector("time[datetime][title]").getAttribute("title") === document.querySelector("time[datetime][title]").getAttribute("datetime")`) {
		t.Fatal("a relative time has no exact time on hover")
	}
	b.screenshot("admin-sessions.png")

	t.Run("filters", func(t *testing.T) {
		b.do(chromedp.SetValue(chromedp.CSS("#f-active"), "older"))
		b.navigate(chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
		if got, text := b.rows(), b.text(); got != 1 || !strings.Contains(text, "Office PC") {
			t.Fatalf("inactive for 7 days: %d rows, want bob's office PC:\n%s", got, text)
		}
		b.open("/admin/")
		b.do(chromedp.SendKeys(chromedp.CSS("#f-email"), "ALICE"))
		b.navigate(chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
		if got := b.rows(); got != 2 {
			t.Fatalf("email contains alice: %d rows, want 2", got)
		}
		b.open("/admin/?device=android")
		if got, text := b.rows(), b.text(); got != 1 || !strings.Contains(text, "Pixel 8") {
			t.Fatalf("android: %d rows:\n%s", got, text)
		}
		b.open("/admin/?active=1h&limit=2")
		if got := b.rows(); got != 2 {
			t.Fatalf("page 1 of the last hour: %d rows, want 2", got)
		}
		b.navigate(chromedp.Click(chromedp.CSS(`a[rel="next"]`)))
		if got := b.rows(); got != 1 { // alice's 2 and olivia's browser were active within the hour
			t.Fatalf("page 2 of the last hour: %d rows, want 1", got)
		}
	})

	t.Run("phone", func(t *testing.T) {
		b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
		b.open("/admin/")
		if !b.eval(`getComputedStyle(document.querySelector("table.sessions tbody tr")).display === "block"`) {
			t.Fatal("on a phone the sessions are not shown as cards")
		}
		if !b.eval(`document.documentElement.scrollWidth <= window.innerWidth`) {
			t.Fatal("the page scrolls sideways on a phone")
		}
		if !b.eval(`document.querySelector("details.filter-fold").open === false`) {
			t.Fatal("on a phone the filters do not fold away")
		}
		b.screenshot("admin-sessions-phone.png")
		b.do(chromedp.EmulateViewport(1280, 900))
	})

	t.Run("another org is out of reach", func(t *testing.T) {
		if code := b.open("/admin/users/" + garyID); code != 404 {
			t.Fatalf("another org's user page: status %d, want 404", code)
		}
		if code := b.open("/admin/?org=" + globex); code != 403 {
			t.Fatalf("another org's sessions: status %d, want 403", code)
		}
		if !s.acceptedEverywhere(gary.AccessToken) {
			t.Fatal("gary's token is refused")
		}
	})

	t.Run("revoke a session", func(t *testing.T) {
		b.open("/admin/")
		if code := b.confirm("/admin/sessions/" + aliceIPhone.SessionID + "/revoke"); code != 200 {
			t.Fatalf("revoke: status %d", code)
		}
		assertContains(t, b.text(), "Session revoked. Refused at 2 of 2 gateways in")
		if !b.eval(`document.querySelector(".flash-region[aria-live] .flash-ok") !== null`) {
			t.Fatal("the result is not in the live region")
		}
		s.waitRefusedEverywhere(aliceIPhone.AccessToken)
		if !s.acceptedEverywhere(aliceMac.AccessToken) || !s.acceptedEverywhere(bobPhone.AccessToken) {
			t.Fatal("a session that was not revoked is refused")
		}
		assertLacks(t, b.text(), "Alice's iPhone")
	})

	t.Run("disable a user, and the audit trail", func(t *testing.T) {
		b.navigate(chromedp.Click(chromedp.CSS(`a[href="/admin/users/` + aliceID + `"]`)))
		assertContains(t, b.text(), "alice@acme.test", "Active sessions", "Recent activity", "Session revoked", "olivia@acme.test", "revoked by an administrator")
		b.ask("/admin/users/" + aliceID + "/disable")
		// The script moves the focus on the details' toggle event, which
		// fires after the click returns.
		testenv.Eventually(t, 5*time.Second, func() bool {
			return b.eval(`document.activeElement.textContent === "Yes, disable user"`)
		}, "opening the confirmation does not focus its button")
		b.screenshot("admin-user.png")
		if code := b.navigate(chromedp.Click(chromedp.CSS(`form[action="/admin/users/` + aliceID + `/disable"] button`))); code != 200 {
			t.Fatalf("disable: status %d", code)
		}
		text := b.text()
		assertContains(t, text, "alice@acme.test is disabled", "Disabled", "User disabled", "No active sessions")
		s.waitRefusedEverywhere(aliceMac.AccessToken)
	})

	t.Run("revoke by rule", func(t *testing.T) {
		b.navigate(chromedp.Click(chromedp.CSS(`nav a[href="/admin/revoke"]`)))
		b.do(chromedp.SetValue(chromedp.CSS(`select[name="device_type"]`), "android"))
		if code := b.navigate(chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`))); code != 200 {
			t.Fatalf("count: status %d", code)
		}
		assertContains(t, b.text(), "1 session of 1 user will end")
		if !s.acceptedEverywhere(bobPhone.AccessToken) {
			t.Fatal("counting revoked something")
		}
		b.do(chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "Lost Android phones"))
		b.screenshot("admin-revoke.png")
		if code := b.navigate(chromedp.Click(chromedp.CSS(`.count-result button[type="submit"]`))); code != 200 {
			t.Fatalf("revoke: status %d", code)
		}
		assertContains(t, b.text(), "Revoked 1 session of 1 user. Refused at 2 of 2 gateways in")
		s.waitRefusedEverywhere(bobPhone.AccessToken)
		if !s.acceptedEverywhere(bobOld.AccessToken) {
			t.Fatal("a session the rule does not match is refused")
		}
	})

	t.Run("a favicon", func(t *testing.T) {
		if !b.eval(`document.querySelector("link[rel=icon]") !== null`) {
			t.Fatal("the page names no icon")
		}
		resp, err := http.Get(s.api + "/admin/static/favicon.svg")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/svg+xml") {
			t.Fatalf("favicon: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})

	t.Run("session policy", func(t *testing.T) {
		b.navigate(chromedp.Click(chromedp.CSS(`nav a[href="/admin/policy"]`)))
		assertContains(t, b.text(), "Session policy", "Sessions per user", "Idle timeout")
		b.do(chromedp.SetValue(chromedp.CSS(`#p-max`), "5"), chromedp.SetValue(chromedp.CSS(`#p-idle`), "720h"))
		if code := b.navigate(chromedp.Click(chromedp.CSS(`form.policy button[type="submit"]`))); code != 200 {
			t.Fatalf("save: status %d", code)
		}
		assertContains(t, b.text(), "The session policy is saved")
		if !b.eval(`document.querySelector("#p-max").value === "5" && document.querySelector("#p-idle").value === "720h"`) {
			t.Fatal("the saved policy is not shown")
		}
		b.screenshot("admin-policy.png")
		if code := s.do("PUT", "/v1/orgs/"+acme+"/policy", s.admin, map[string]any{}, nil); code != http.StatusOK {
			t.Fatalf("reset the policy: %d", code)
		}
	})

	t.Run("the user directory finds a disabled user", func(t *testing.T) {
		b.navigate(chromedp.Click(chromedp.CSS(`nav a[href="/admin/users"]`)))
		text := b.text()
		assertContains(t, text, "Users", "alice@acme.test", "bob@acme.test", "olivia@acme.test", "Disabled", "Last sign-in")
		assertLacks(t, text, "gary@globex.test")
		b.do(chromedp.SetValue(chromedp.CSS(`#u-email`), "ALICE"))
		if code := b.navigate(chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`))); code != 200 {
			t.Fatalf("search: status %d", code)
		}
		assertContains(t, b.text(), "1 user on this page matching the filters", "alice@acme.test")
		b.screenshot("admin-users.png")
		if code := b.confirm("/admin/users/" + aliceID + "/enable"); code != 200 {
			t.Fatalf("enable: status %d", code)
		}
		assertContains(t, b.text(), "alice@acme.test is enabled again")
		if loc := b.location(); !strings.Contains(loc, "/admin/users?") {
			t.Fatalf("enabling from the directory led to %s, want back to it", loc)
		}

		b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
		b.open("/admin/users")
		if !b.eval(`getComputedStyle(document.querySelector("table.users tbody tr")).display === "block"`) {
			t.Fatal("on a phone the users are not shown as cards")
		}
		if !b.eval(`document.documentElement.scrollWidth <= window.innerWidth`) {
			t.Fatal("the users page scrolls sideways on a phone")
		}
		b.do(chromedp.EmulateViewport(1280, 900))
	})
}

// TestPortalAccount signs in on /account/sessions, signs out the other
// devices, then signs out, and sees every one of those tokens refused at the
// gateways.
func TestPortalAccount(t *testing.T) {
	s := newSystem(t, 2)
	acme := s.org("Acme")
	s.member(acme, "user", "carol@acme.test")
	phone := s.device("carol@acme.test", uaIPhone, "ios", "Carol's iPhone")
	laptop := s.device("carol@acme.test", uaFirefox, "web", "")
	s.age(phone.SessionID, 5*24*time.Hour, 20*time.Minute, "203.0.113.41")
	s.age(laptop.SessionID, 2*24*time.Hour, 26*time.Hour, "198.51.100.23")

	b := newBrowser(t, s.api)
	if code := b.signIn("account", "carol@acme.test", "password-1"); code != 200 {
		t.Fatalf("sign in: status %d", code)
	}
	if loc := b.location(); !strings.HasSuffix(loc, "/account/sessions") {
		t.Fatalf("signed in to %s", loc)
	}
	text := b.text()
	assertContains(t, text, "My sessions", "This device", "Carol's iPhone", "Firefox on Linux", "Safari on iOS", "20 min ago", "Sign out all other devices")
	if n := result(b, chromedp.Evaluate[int](`document.querySelectorAll(".device-card").length`)); n != 3 {
		t.Fatalf("%d sessions shown, want 3", n)
	}
	if !b.eval(`document.querySelector(".device-card.current .tag") !== null`) {
		t.Fatal("the current session is not marked")
	}
	b.screenshot("account-sessions.png")

	access := b.cookie("__Host-sg_access")
	if access == "" {
		t.Fatal("no access-token cookie in the browser")
	}
	if code := b.confirm("/account/sessions/revoke-others"); code != 200 {
		t.Fatalf("sign out other devices: status %d", code)
	}
	assertContains(t, b.text(), "Signed out 2 other devices. Refused at 2 of 2 gateways in")
	s.waitRefusedEverywhere(phone.AccessToken)
	s.waitRefusedEverywhere(laptop.AccessToken)
	if !s.acceptedEverywhere(access) {
		t.Fatal("the browser's own session was revoked too")
	}
	if n := result(b, chromedp.Evaluate[int](`document.querySelectorAll(".device-card").length`)); n != 1 {
		t.Fatalf("%d sessions left, want 1", n)
	}

	if code := b.navigate(chromedp.Click(chromedp.CSS(`header form[action="/account/signout"] button`))); code != 200 {
		t.Fatalf("sign out: status %d", code)
	}
	if loc := b.location(); !strings.HasSuffix(loc, "/account/signin") {
		t.Fatalf("signed out to %s", loc)
	}
	assertContains(t, b.text(), "You are signed out.")
	s.waitRefusedEverywhere(access)
	if b.cookie("__Host-sg_access") != "" || b.cookie("__Host-sg_refresh") != "" {
		t.Fatal("the token cookies outlive the sign-out")
	}
}

// TestPortalSessionLifecycle checks the transparent refresh (a browser
// whose access token is gone or expired stays signed in as long as its
// refresh token works), that a revoked session sends the browser back to the
// sign-in page, that a plain user gets a 403 page in the admin portal, and
// that a POST without the CSRF token is refused.
func TestPortalSessionLifecycle(t *testing.T) {
	s := newSystem(t, 1)
	acme := s.org("Acme")
	s.member(acme, "user", "dave@acme.test")
	victim := s.device("dave@acme.test", uaMac, "web", "")

	b := newBrowser(t, s.api)
	if code := b.signIn("admin", "dave@acme.test", "password-1"); code != 403 {
		t.Fatalf("a plain user in the admin portal: status %d, want 403", code)
	}
	assertContains(t, b.text(), "Administrators only", "Go to My sessions")
	b.navigate(chromedp.Click(chromedp.CSS(`main a[href="/account/sessions"]`)))
	assertContains(t, b.text(), "My sessions", "This device")

	t.Run("refresh", func(t *testing.T) {
		access, refresh := b.cookie("__Host-sg_access"), b.cookie("__Host-sg_refresh")
		b.deleteCookie("__Host-sg_access")
		if code := b.open("/account/sessions"); code != 200 {
			t.Fatalf("without an access token: status %d", code)
		}
		assertContains(t, b.text(), "This device")
		next, nextRefresh := b.cookie("__Host-sg_access"), b.cookie("__Host-sg_refresh")
		if next == "" || next == access || nextRefresh == "" || nextRefresh == refresh {
			t.Fatal("the portal did not refresh the token pair")
		}
		if !s.acceptedEverywhere(next) {
			t.Fatal("the refreshed access token is refused")
		}
	})

	t.Run("POST without CSRF token", func(t *testing.T) {
		for name, body := range map[string]string{"none": "", "empty": "csrf=", "forged": "csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
			status := result(b, chromedp.Evaluate[int](`fetch("/account/sessions/`+victim.SessionID+`/revoke", {method: "POST",
				headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "`+body+`"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
			if status != 403 {
				t.Fatalf("%s: status %d, want 403", name, status)
			}
		}
		if !s.acceptedEverywhere(victim.AccessToken) {
			t.Fatal("a POST without a valid CSRF token revoked the session")
		}
	})

	t.Run("revoked session", func(t *testing.T) {
		sid := result(b, chromedp.Evaluate[string](`document.querySelector(".device-card.current form").getAttribute("action").split("/")[3]`))
		if code := s.do("DELETE", "/v1/sessions/"+sid, s.admin, nil, nil); code != 204 {
			t.Fatalf("revoke through the API: %d", code)
		}
		b.open("/account/sessions")
		if loc := b.location(); !strings.HasSuffix(loc, "/account/signin") {
			t.Fatalf("a revoked session stayed on %s", loc)
		}
		assertContains(t, b.text(), "Your session has ended")
	})
}
