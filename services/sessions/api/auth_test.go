package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

func TestLoginAnswersTheContract(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, email := e.User(org, "user")
	var p sessions.TokenPair
	code := e.Call("POST", "/v1/auth/login", "", map[string]any{"email": strings.ToUpper(email), "password": "password-1"}, &p)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if p.TokenType != "Bearer" || p.ExpiresIn != 300 || len(p.RefreshToken) != 43 || !events.IsUUID(p.SessionID) {
		t.Fatalf("unexpected pair %+v", p)
	}
	c := e.Claims(p.AccessToken)
	if c.SessionID != p.SessionID || c.Org != org || c.Role != "user" || c.Issuer != "http://sessiond.test" || !events.IsUUID(c.ID) {
		t.Fatalf("unexpected claims %+v", c)
	}
	// device type derived from the User-Agent when absent
	var s sessions.Session
	e.Call("GET", "/v1/sessions/"+p.SessionID, e.Admin.AccessToken, nil, &s)
	if s.DeviceType != "other" || s.UserAgent == nil || !strings.HasPrefix(*s.UserAgent, "Go-http-client") || s.IP == nil || *s.IP != "127.0.0.1" {
		t.Fatalf("unexpected session %+v", s)
	}
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t, func(c *sessions.Config) {
		c.LoginLimit = sessions.RateLimit{N: 3, Window: time.Hour}
		c.LoginIPLimit = sessions.RateLimit{N: 5, Window: 30 * time.Minute}
	})
	org := e.Org("A")
	_, email := e.User(org, "user")
	_, other := e.User(org, "user")
	_, third := e.User(org, "user")
	try := func(email, pw string) sessionstest.Response {
		b, _ := json.Marshal(map[string]string{"email": email, "password": pw})
		return e.Raw("POST", "/v1/auth/login", "", "application/json", b)
	}
	if r := try(email, "password-1"); r.Status != 200 {
		t.Fatalf("first login: %d", r.Status)
	}
	for i := 0; i < 3; i++ {
		sessionstest.AssertProblem(t, try(strings.ToUpper(email), "wrong-password"), 401)
	}
	// The account is now limited: even the right password gets 429.
	r := try(email, "password-1")
	sessionstest.AssertProblem(t, r, 429)
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
		sessionstest.AssertProblem(t, try(third, "wrong-password"), 401)
	}
	r = try(other, "password-1")
	sessionstest.AssertProblem(t, r, 429)
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1700 || ra > 1800 {
		t.Fatalf("Retry-After %q, want about the IP window of 30 minutes", r.Header.Get("Retry-After"))
	}
	// Once the windows have passed, the right password works again.
	if _, err := e.Pool.Exec(t.Context(), "UPDATE login_failures SET at = at - interval '61 minutes'"); err != nil {
		t.Fatal(err)
	}
	if r := try(email, "password-1"); r.Status != 200 {
		t.Fatalf("after the window: %d %s", r.Status, r.Body)
	}
	if n := e.Count("login_failures WHERE account = '" + email + "'"); n != 0 {
		t.Fatalf("a successful login left %d failures of the account", n)
	}
}

// TestConcurrentWrongPasswordsStopAtTheLimit: the limit is reserved before
// the password is checked, atomically, so a burst of wrong passwords on one
// account gets exactly the limit's number of 401s and 429 for the rest.
func TestConcurrentWrongPasswordsStopAtTheLimit(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t, func(c *sessions.Config) { c.HashConcurrency, c.HashQueue, c.HashWait = 2, 64, time.Minute })
	_, email := e.User(e.Org("A"), "user")
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
			codes <- e.Raw("POST", "/v1/auth/login", "", "application/json", b).Status
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
	if f := e.Count("login_failures"); f != 10 {
		t.Fatalf("%d failures recorded, want 10", f)
	}
}

// TestConcurrentRefreshKeepsOneFamily: 100 goroutines refresh the same token
// at once; all succeed within the grace, all get the same new refresh
// token, and the chain has exactly one successor.
func TestConcurrentRefreshKeepsOneFamily(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	_, p := e.NewUser(e.Org("A"), "user")
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
			var out sessions.TokenPair
			code := e.Refresh(p.RefreshToken, &out)
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code == 200 {
				refresh[out.RefreshToken]++
				jtis[e.Claims(out.AccessToken).ID] = true
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
	if c := e.Count("refresh_tokens WHERE session_id = '" + p.SessionID + "'"); c != 2 {
		t.Fatalf("%d refresh tokens in the session, want 2 (the root and its one successor)", c)
	}
	var next string
	for k := range refresh {
		next = k
	}
	var again sessions.TokenPair
	if code := e.Refresh(next, &again); code != 200 || again.RefreshToken == next {
		t.Fatalf("rotating the successor: %d", code)
	}
}

func TestRefreshGraceAndReuse(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	_, p := e.NewUser(e.Org("A"), "user")
	var r1, r2, r3 sessions.TokenPair
	if code := e.Refresh(p.RefreshToken, &r1); code != 200 {
		t.Fatalf("refresh: %d", code)
	}
	if code := e.Refresh(r1.RefreshToken, &r2); code != 200 {
		t.Fatalf("refresh 2: %d", code)
	}
	// Within the grace of its rotation, the root gives the live head (r2), not r1.
	e.Clock.Advance(5 * time.Second)
	if code := e.Refresh(p.RefreshToken, &r3); code != 200 {
		t.Fatalf("grace refresh: %d", code)
	}
	if r3.RefreshToken != r2.RefreshToken {
		t.Fatal("a refresh within the grace did not return the live refresh token")
	}
	if !e.Alive(r3.AccessToken) {
		t.Fatal("access token from the grace answer refused")
	}
	// After the grace: reuse. 401, and the whole session dies at once.
	e.Clock.Advance(6 * time.Second)
	r := e.Raw("POST", "/v1/auth/refresh", "", "application/json", []byte(`{"refresh_token":"`+p.RefreshToken+`"}`))
	sessionstest.AssertProblem(t, r, 401)
	if !strings.Contains(string(r.Body), "reuse") {
		t.Fatalf("body %s does not say reuse", r.Body)
	}
	for _, tok := range []string{p.AccessToken, r1.AccessToken, r2.AccessToken, r3.AccessToken} {
		if e.Alive(tok) {
			t.Fatal("an access token of the reused session still works")
		}
	}
	if code := e.Refresh(r2.RefreshToken, nil); code != 401 {
		t.Fatalf("the live refresh token of a reused session: %d, want 401", code)
	}
	var reason string
	if err := e.Pool.QueryRow(t.Context(), "SELECT revoked_reason FROM sessions WHERE id = $1", p.SessionID).Scan(&reason); err != nil || reason != "refresh_reuse" {
		t.Fatalf("session revoked reason %q (%v)", reason, err)
	}
	if n := e.Count("audit_log WHERE action = 'refresh_reuse'"); n != 1 {
		t.Fatalf("%d refresh_reuse audit rows", n)
	}
	if n := e.Count("refresh_tokens WHERE session_id = '" + p.SessionID + "'"); n != 0 {
		t.Fatalf("%d refresh tokens survive the revocation", n)
	}
}

func TestRefreshRefusals(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	id, p := e.NewUser(org, "user")
	_, p2 := e.NewUser(org, "user")
	for name, tok := range map[string]string{
		"garbage":          "not-a-token",
		"unknown":          newRefreshToken(),
		"access token":     p.AccessToken,
		"almost right":     almostRight(p.RefreshToken),
		"right with space": " " + p.RefreshToken,
	} {
		if code := e.Refresh(tok, nil); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	// disabled user
	e.Call("PATCH", "/v1/users/"+id, e.Admin.AccessToken, map[string]bool{"disabled": true}, nil)
	if code := e.Refresh(p.RefreshToken, nil); code != 401 {
		t.Fatalf("disabled user's refresh: %d", code)
	}
	// expired refresh token
	if _, err := e.Pool.Exec(t.Context(), "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE session_id = $1", p2.SessionID); err != nil {
		t.Fatal(err)
	}
	if code := e.Refresh(p2.RefreshToken, nil); code != 401 {
		t.Fatalf("expired refresh: %d", code)
	}
}

// TestRevocationAndIssueInTheSameSecond: user-level revocations reject
// every token issued before them and none issued after them, however many
// share one second: revoke all, sign in, disable, all within a second.
func TestRevocationAndIssueInTheSameSecond(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	id, email := e.User(org, "user")
	base := time.Now().Truncate(time.Second)
	e.Clock.Set(base.Add(100 * time.Millisecond))
	before := e.Login(email, "password-1")
	e.Clock.Set(base.Add(400 * time.Millisecond))
	var n struct{ Revoked int }
	if code := e.Call("DELETE", "/v1/users/"+id+"/sessions", e.Admin.AccessToken, nil, &n); code != 200 || n.Revoked != 1 {
		t.Fatalf("revoke all: %d %+v", code, n)
	}
	e.Clock.Set(base.Add(700 * time.Millisecond))
	after := e.Login(email, "password-1")
	if e.Alive(before.AccessToken) {
		t.Fatal("token issued before the revocation still works")
	}
	if !e.Alive(after.AccessToken) {
		t.Fatal("token issued after the revocation, in the same second, is refused")
	}
	c := e.Claims(after.AccessToken)
	if want := base.Add(700 * time.Millisecond); !c.IssuedAt.Equal(want) || c.NotBefore.Unix() != base.Unix() {
		t.Fatalf("iat %v nbf %v; want iat %v (to the microsecond) and nbf the whole second", c.IssuedAt, c.NotBefore, want)
	}
	notBefores := func() []time.Time {
		rows, err := e.Pool.Query(t.Context(), "SELECT not_before FROM revocations WHERE kind = 'user' AND value = $1 ORDER BY id", id)
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
	e.Clock.Set(base.Add(900 * time.Millisecond))
	var u sessions.User
	if code := e.Call("PATCH", "/v1/users/"+id, e.Admin.AccessToken, map[string]bool{"disabled": true}, &u); code != 200 || !u.Disabled {
		t.Fatalf("disable: %d", code)
	}
	nbs := notBefores()
	if len(nbs) != 2 || !c.IssuedAt.Before(nbs[1]) || !nbs[0].Before(c.IssuedAt) {
		t.Fatalf("not_befores %v around the second token's iat %v: want first < iat < second", nbs, c.IssuedAt)
	}
	if e.Alive(after.AccessToken) {
		t.Fatal("the token issued between two revocations in one second survived the second")
	}
}

// TestUserRevocationFollowsEveryIssuedToken: a replica whose clock is
// behind revokes a user after another replica, whose clock is ahead,
// issued a token; the revocation's not-before still comes after that
// token's iat, because it follows the latest iat recorded for the user.
func TestUserRevocationFollowsEveryIssuedToken(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	id, email := e.User(e.Org("A"), "user")
	now := time.Now()
	e.Clock.Set(now.Add(3 * time.Second)) // the replica that signs in runs ahead
	p := e.Login(email, "password-1")
	e.Clock.Set(now) // the replica that revokes does not
	if code := e.Call("DELETE", "/v1/users/"+id+"/sessions", e.Admin.AccessToken, nil, nil); code != 200 {
		t.Fatalf("revoke all: %d", code)
	}
	var nb time.Time
	if err := e.Pool.QueryRow(t.Context(), "SELECT not_before FROM revocations WHERE kind = 'user' AND value = $1", id).Scan(&nb); err != nil {
		t.Fatal(err)
	}
	iat := e.Claims(p.AccessToken).IssuedAt
	if !iat.Before(nb) || nb.Sub(iat) != time.Microsecond {
		t.Fatalf("not_before %v, want a microsecond after the token's iat %v", nb, iat)
	}
	// and a token issued right after, by the slow replica, is after it
	e.Clock.Set(now.Add(time.Millisecond))
	later := e.Login(email, "password-1")
	if c := e.Claims(later.AccessToken); !c.IssuedAt.After(nb) {
		t.Fatalf("iat %v of a later token is not after not_before %v", c.IssuedAt, nb)
	}
	if !e.Alive(later.AccessToken) || e.Alive(p.AccessToken) {
		t.Fatal("sessiond decides differently from the not-before")
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	oldKid := e.Keys.Current().SigningKeyID()
	_, p := e.NewUser(e.Org("A"), "user")
	kid, err := e.Keys.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if kid == oldKid {
		t.Fatal("rotation kept the kid")
	}
	var jwks struct {
		Keys []struct{ Kid, Alg, Crv string }
	}
	if code := e.Call("GET", "/.well-known/jwks.json", "", nil, &jwks); code != 200 || len(jwks.Keys) != 2 {
		t.Fatalf("jwks: %d %+v", code, jwks)
	}
	if !e.Alive(p.AccessToken) {
		t.Fatal("a token signed by the retired key is refused")
	}
	var q sessions.TokenPair
	e.Refresh(p.RefreshToken, &q)
	if !strings.Contains(q.AccessToken, ".") || headerKid(t, q.AccessToken) != kid {
		t.Fatalf("new token signed with %q, want %q", headerKid(t, q.AccessToken), kid)
	}
}

func headerKid(t *testing.T, tok string) string {
	t.Helper()
	var h struct{ Kid string }
	seg := strings.Split(tok, ".")[0]
	b, err := base64.RawURLEncoding.DecodeString(seg)
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
