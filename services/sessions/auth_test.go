package sessions

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/jackc/pgx/v5"
)

func TestLoginAnswersTheContract(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("A")
	_, email := e.user(org, "user")
	var p TokenPair
	code := e.call("POST", "/v1/auth/login", "", map[string]any{"email": strings.ToUpper(email), "password": "password-1"}, &p)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if p.TokenType != "Bearer" || p.ExpiresIn != 300 || len(p.RefreshToken) != 43 || !isUUID(p.SessionID) {
		t.Fatalf("unexpected pair %+v", p)
	}
	c := e.claims(p.AccessToken)
	if c.SessionID != p.SessionID || c.Org != org || c.Role != "user" || c.Issuer != "http://sessiond.test" || !isUUID(c.ID) {
		t.Fatalf("unexpected claims %+v", c)
	}
	// device type derived from the User-Agent when absent
	var s Session
	e.call("GET", "/v1/sessions/"+p.SessionID, e.admin.AccessToken, nil, &s)
	if s.DeviceType != "other" || s.UserAgent == nil || !strings.HasPrefix(*s.UserAgent, "Go-http-client") || s.IP == nil || *s.IP != "127.0.0.1" {
		t.Fatalf("unexpected session %+v", s)
	}
}

func TestDeviceTypeFromUserAgent(t *testing.T) {
	t.Parallel()
	for ua, want := range map[string]string{
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15":                   "ios",
		"MyApp/3.1 CFNetwork/1485 Darwin/23.1.0":                                                        "ios",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36": "android",
		"okhttp/4.12.0": "android",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36":            "web",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/537.36 (KHTML) Slack/4.35 Electron/27.0.0": "desktop",
		"curl/8.4.0": "other",
		"":           "other",
	} {
		if got := DeviceTypeFromUserAgent(ua); got != want {
			t.Errorf("%q: %s, want %s", ua, got, want)
		}
	}
}

// TestLoginDoesNotRevealAccounts: unknown email, wrong password, disabled and
// erased users get byte-identical answers, and an unknown email is checked
// against a hash of the same cost as a real one.
func TestLoginDoesNotRevealAccounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("A")
	_, known := e.user(org, "user")
	disabledID, disabled := e.user(org, "user")
	erasedID, erased := e.user(org, "user")
	if code := e.call("PATCH", "/v1/users/"+disabledID, e.admin.AccessToken, map[string]bool{"disabled": true}, nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	if _, err := e.pool.Exec(t.Context(), "UPDATE users SET erased_at = now() WHERE id = $1", erasedID); err != nil {
		t.Fatal(err)
	}
	attempts := map[string]map[string]string{
		"unknown email":   {"email": "nobody-" + known, "password": "password-1"},
		"wrong password":  {"email": known, "password": "password-2"},
		"disabled user":   {"email": disabled, "password": "password-1"},
		"erased user":     {"email": erased, "password": "password-1"},
		"disabled, wrong": {"email": disabled, "password": "nope-nope"},
	}
	var first *response
	for name, body := range attempts {
		b, _ := json.Marshal(body)
		r := e.raw("POST", "/v1/auth/login", "", "application/json", b)
		assertProblem(t, r, http.StatusUnauthorized)
		r.Header.Del("X-Request-Id")
		r.Header.Del("Date")
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
	if err := e.pool.QueryRow(t.Context(), "SELECT password_hash FROM users WHERE email = $1", known).Scan(&realHash); err != nil {
		t.Fatal(err)
	}
	pReal, _, _, err1 := argon2id.DecodeHash(realHash)
	pDummy, _, _, err2 := argon2id.DecodeHash(e.svc.dummyHash)
	if err1 != nil || err2 != nil || *pReal != *pDummy {
		t.Fatalf("dummy hash parameters %+v differ from real ones %+v (%v %v)", pDummy, pReal, err1, err2)
	}
	var failures int
	_ = e.pool.QueryRow(t.Context(), "SELECT count(*) FROM audit_log WHERE action = 'login_failed'").Scan(&failures)
	if failures != len(attempts) {
		t.Fatalf("%d failed logins audited, want %d", failures, len(attempts))
	}
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.LoginLimit = RateLimit{N: 3, Window: time.Hour}
		c.LoginIPLimit = RateLimit{N: 5, Window: 30 * time.Minute}
	})
	org := e.org("A")
	_, email := e.user(org, "user")
	_, other := e.user(org, "user")
	_, third := e.user(org, "user")
	try := func(email, pw string) response {
		b, _ := json.Marshal(map[string]string{"email": email, "password": pw})
		return e.raw("POST", "/v1/auth/login", "", "application/json", b)
	}
	if r := try(email, "password-1"); r.Status != 200 {
		t.Fatalf("first login: %d", r.Status)
	}
	for i := 0; i < 3; i++ {
		assertProblem(t, try(strings.ToUpper(email), "wrong-password"), 401)
	}
	// The account is now limited: even the right password gets 429.
	r := try(email, "password-1")
	assertProblem(t, r, 429)
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || ra < 3500 || ra > 3600 {
		t.Fatalf("Retry-After %q, want about an hour", r.Header.Get("Retry-After"))
	}
	// The client IP has its own, higher limit: another account from the
	// same address still signs in (one person's typos do not lock out an
	// office behind one NAT address)...
	if r := try(other, "password-1"); r.Status != 200 {
		t.Fatalf("another account from the same IP after 3 failures: %d %s", r.Status, r.Body)
	}
	// ...until the IP itself has 5 failures: then every account from it waits.
	for i := 0; i < 2; i++ {
		assertProblem(t, try(third, "wrong-password"), 401)
	}
	r = try(other, "password-1")
	assertProblem(t, r, 429)
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1700 || ra > 1800 {
		t.Fatalf("Retry-After %q, want about the IP window of 30 minutes", r.Header.Get("Retry-After"))
	}
	// Once the windows have passed, the right password works again.
	if _, err := e.pool.Exec(t.Context(), "UPDATE login_failures SET at = at - interval '61 minutes'"); err != nil {
		t.Fatal(err)
	}
	if r := try(email, "password-1"); r.Status != 200 {
		t.Fatalf("after the window: %d %s", r.Status, r.Body)
	}
	if n := e.count("login_failures WHERE account = '" + email + "'"); n != 0 {
		t.Fatalf("a successful login left %d failures of the account", n)
	}
}

// TestConcurrentWrongPasswordsStopAtTheLimit: the limit is reserved before
// the password is checked, atomically, so a burst of wrong passwords on one
// account gets exactly the limit's number of 401s and 429 for the rest.
func TestConcurrentWrongPasswordsStopAtTheLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.HashConcurrency, c.HashQueue, c.HashWait = 2, 64, time.Minute })
	_, email := e.user(e.org("A"), "user")
	const n = 40
	codes := make(chan int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			b, _ := json.Marshal(map[string]string{"email": email, "password": "wrong-password"})
			codes <- e.raw("POST", "/v1/auth/login", "", "application/json", b).Status
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if got[401] != 10 || got[429] != n-10 {
		t.Fatalf("answers %v, want 10 of 401 and %d of 429", got, n-10)
	}
	if f := e.count("login_failures"); f != 10 {
		t.Fatalf("%d failures recorded, want 10", f)
	}
}

// TestConcurrentRefreshKeepsOneFamily: 100 goroutines refresh the same token
// at once; all succeed within the grace, all get the same new refresh
// token, and the chain has exactly one successor.
func TestConcurrentRefreshKeepsOneFamily(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, p := e.newUser(e.org("A"), "user")
	const n = 100
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		codes   = map[int]int{}
		refresh = map[string]int{}
		jtis    = map[string]bool{}
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var out TokenPair
			code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}, &out)
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code == 200 {
				refresh[out.RefreshToken]++
				jtis[e.claims(out.AccessToken).ID] = true
			}
		}()
	}
	close(start)
	wg.Wait()
	if codes[200] != n {
		t.Fatalf("status counts %v, want %d × 200", codes, n)
	}
	if len(refresh) != 1 {
		t.Fatalf("%d different refresh tokens handed out, want 1", len(refresh))
	}
	if len(jtis) != n {
		t.Fatalf("%d distinct access tokens, want %d", len(jtis), n)
	}
	if c := e.count("refresh_tokens WHERE session_id = '" + p.SessionID + "'"); c != 2 {
		t.Fatalf("%d refresh tokens in the session, want 2 (the root and its one successor)", c)
	}
	var next string
	for k := range refresh {
		next = k
	}
	var again TokenPair
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": next}, &again); code != 200 || again.RefreshToken == next {
		t.Fatalf("rotating the successor: %d", code)
	}
}

func TestRefreshGraceAndReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, p := e.newUser(e.org("A"), "user")
	var r1, r2, r3 TokenPair
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}, &r1); code != 200 {
		t.Fatalf("refresh: %d", code)
	}
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": r1.RefreshToken}, &r2); code != 200 {
		t.Fatalf("refresh 2: %d", code)
	}
	// Within the grace of its rotation, the root gives the live head (r2), not r1.
	e.clock.Advance(5 * time.Second)
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}, &r3); code != 200 {
		t.Fatalf("grace refresh: %d", code)
	}
	if r3.RefreshToken != r2.RefreshToken {
		t.Fatal("a refresh within the grace did not return the live refresh token")
	}
	if !e.alive(r3.AccessToken) {
		t.Fatal("access token from the grace answer refused")
	}
	// After the grace: reuse. 401, and the whole session dies at once.
	e.clock.Advance(6 * time.Second)
	r := e.raw("POST", "/v1/auth/refresh", "", "application/json", []byte(`{"refresh_token":"`+p.RefreshToken+`"}`))
	assertProblem(t, r, 401)
	if !strings.Contains(string(r.Body), "reuse") {
		t.Fatalf("body %s does not say reuse", r.Body)
	}
	for _, tok := range []string{p.AccessToken, r1.AccessToken, r2.AccessToken, r3.AccessToken} {
		if e.alive(tok) {
			t.Fatal("an access token of the reused session still works")
		}
	}
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": r2.RefreshToken}, nil); code != 401 {
		t.Fatalf("the live refresh token of a reused session: %d, want 401", code)
	}
	var reason string
	if err := e.pool.QueryRow(t.Context(), "SELECT revoked_reason FROM sessions WHERE id = $1", p.SessionID).Scan(&reason); err != nil || reason != "refresh_reuse" {
		t.Fatalf("session revoked reason %q (%v)", reason, err)
	}
	if n := e.count("audit_log WHERE action = 'refresh_reuse'"); n != 1 {
		t.Fatalf("%d refresh_reuse audit rows", n)
	}
	if n := e.count("refresh_tokens WHERE session_id = '" + p.SessionID + "'"); n != 0 {
		t.Fatalf("%d refresh tokens survive the revocation", n)
	}
}

func TestRefreshRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("A")
	id, p := e.newUser(org, "user")
	_, p2 := e.newUser(org, "user")
	for name, tok := range map[string]string{
		"garbage":          "not-a-token",
		"unknown":          newRefreshToken(),
		"access token":     p.AccessToken,
		"almost right":     almostRight(p.RefreshToken),
		"right with space": " " + p.RefreshToken,
	} {
		if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": tok}, nil); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	// disabled user
	e.call("PATCH", "/v1/users/"+id, e.admin.AccessToken, map[string]bool{"disabled": true}, nil)
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}, nil); code != 401 {
		t.Fatalf("disabled user's refresh: %d", code)
	}
	// expired refresh token
	if _, err := e.pool.Exec(t.Context(), "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE session_id = $1", p2.SessionID); err != nil {
		t.Fatal(err)
	}
	if code := e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p2.RefreshToken}, nil); code != 401 {
		t.Fatalf("expired refresh: %d", code)
	}
}

// TestRevocationAndIssueInTheSameSecond: user-level revocations reject
// every token issued before them and none issued after them, however many
// share one second: revoke all, sign in, disable, all within a second.
func TestRevocationAndIssueInTheSameSecond(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("A")
	id, email := e.user(org, "user")
	base := time.Now().Truncate(time.Second)
	e.clock.Set(base.Add(100 * time.Millisecond))
	before := e.login(email, "password-1")
	e.clock.Set(base.Add(400 * time.Millisecond))
	var n struct{ Revoked int }
	if code := e.call("DELETE", "/v1/users/"+id+"/sessions", e.admin.AccessToken, nil, &n); code != 200 || n.Revoked != 1 {
		t.Fatalf("revoke all: %d %+v", code, n)
	}
	e.clock.Set(base.Add(700 * time.Millisecond))
	after := e.login(email, "password-1")
	if e.alive(before.AccessToken) {
		t.Fatal("token issued before the revocation still works")
	}
	if !e.alive(after.AccessToken) {
		t.Fatal("token issued after the revocation, in the same second, is refused")
	}
	c := e.claims(after.AccessToken)
	if want := base.Add(700 * time.Millisecond); !c.IssuedAt.Equal(want) || c.NotBefore.Unix() != base.Unix() {
		t.Fatalf("iat %v nbf %v; want iat %v (to the microsecond) and nbf the whole second", c.IssuedAt, c.NotBefore, want)
	}
	notBefores := func() []time.Time {
		rows, err := e.pool.Query(t.Context(), "SELECT not_before FROM revocations WHERE kind = 'user' AND value = $1 ORDER BY id", id)
		if err != nil {
			t.Fatal(err)
		}
		nbs, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err != nil {
			t.Fatal(err)
		}
		return nbs
	}
	if nb := notBefores(); len(nb) != 1 || !nb[0].Equal(base.Add(400*time.Millisecond)) {
		t.Fatalf("not_before %v, want the revocation's own instant %v", nb, base.Add(400*time.Millisecond))
	}
	// A second user-level revocation in the same second covers the token
	// issued between the two (the security review's hole: it was accepted
	// at every gateway, as both had the same whole-second not_before).
	e.clock.Set(base.Add(900 * time.Millisecond))
	var u User
	if code := e.call("PATCH", "/v1/users/"+id, e.admin.AccessToken, map[string]bool{"disabled": true}, &u); code != 200 || !u.Disabled {
		t.Fatalf("disable: %d", code)
	}
	nbs := notBefores()
	if len(nbs) != 2 || !c.IssuedAt.Before(nbs[1]) || !nbs[0].Before(c.IssuedAt) {
		t.Fatalf("not_befores %v around the second token's iat %v: want first < iat < second", nbs, c.IssuedAt)
	}
	if e.alive(after.AccessToken) {
		t.Fatal("the token issued between two revocations in one second survived the second")
	}
}

// TestUserRevocationFollowsEveryIssuedToken: a replica whose clock is
// behind revokes a user after another replica, whose clock is ahead,
// issued a token; the revocation's not-before still comes after that
// token's iat, because it follows the latest iat recorded for the user.
func TestUserRevocationFollowsEveryIssuedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, email := e.user(e.org("A"), "user")
	now := time.Now()
	e.clock.Set(now.Add(3 * time.Second)) // the replica that signs in runs ahead
	p := e.login(email, "password-1")
	e.clock.Set(now) // the replica that revokes does not
	if code := e.call("DELETE", "/v1/users/"+id+"/sessions", e.admin.AccessToken, nil, nil); code != 200 {
		t.Fatalf("revoke all: %d", code)
	}
	var nb time.Time
	if err := e.pool.QueryRow(t.Context(), "SELECT not_before FROM revocations WHERE kind = 'user' AND value = $1", id).Scan(&nb); err != nil {
		t.Fatal(err)
	}
	iat := e.claims(p.AccessToken).IssuedAt
	if !iat.Before(nb) || nb.Sub(iat) != time.Microsecond {
		t.Fatalf("not_before %v, want a microsecond after the token's iat %v", nb, iat)
	}
	// and a token issued right after, by the slow replica, is after it
	e.clock.Set(now.Add(time.Millisecond))
	later := e.login(email, "password-1")
	if c := e.claims(later.AccessToken); !c.IssuedAt.After(nb) {
		t.Fatalf("iat %v of a later token is not after not_before %v", c.IssuedAt, nb)
	}
	if !e.alive(later.AccessToken) || e.alive(p.AccessToken) {
		t.Fatal("sessiond decides differently from the not-before")
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	oldKid := e.keys.Current().SigningKeyID()
	_, p := e.newUser(e.org("A"), "user")
	kid, err := e.keys.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if kid == oldKid {
		t.Fatal("rotation kept the kid")
	}
	var jwks struct {
		Keys []struct{ Kid, Alg, Crv string }
	}
	if code := e.call("GET", "/.well-known/jwks.json", "", nil, &jwks); code != 200 || len(jwks.Keys) != 2 {
		t.Fatalf("jwks: %d %+v", code, jwks)
	}
	if !e.alive(p.AccessToken) {
		t.Fatal("a token signed by the retired key is refused")
	}
	var q TokenPair
	e.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}, &q)
	if !strings.Contains(q.AccessToken, ".") || headerKid(t, q.AccessToken) != kid {
		t.Fatalf("new token signed with %q, want %q", headerKid(t, q.AccessToken), kid)
	}
}

func headerKid(t *testing.T, tok string) string {
	t.Helper()
	var h struct{ Kid string }
	seg := strings.Split(tok, ".")[0]
	b, err := base64URLDecode(seg)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(b, &h)
	return h.Kid
}

// almostRight changes a token's last character.
func almostRight(tok string) string {
	last := byte('A')
	if tok[len(tok)-1] == last {
		last = 'B'
	}
	return tok[:len(tok)-1] + string(last)
}
