package sessions

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/testenv"
)

// Tests for the holes of the security review of 2026-12-01 that the session
// service owns (the same-second revocations are in auth_test.go, the NUL
// inputs in input_test.go).

// TestPasswordHashingIsBounded: with every hashing turn and queue place
// taken, a login is answered 503 with Retry-After at once, counts as no
// failure, and works again once a turn is free; a burst never computes more
// hashes at once than there are turns.
func TestPasswordHashingIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.HashConcurrency, c.HashQueue, c.HashWait = 1, 1, 100*time.Millisecond
		// attempts in flight count toward the limit until decided; this
		// burst is about hashing, not rate limits
		c.LoginLimit.N = 1000
	})
	_, email := e.user(e.org("A"), "user")
	login := func() response {
		b, _ := json.Marshal(map[string]string{"email": email, "password": "password-1"})
		return e.raw("POST", "/v1/auth/login", "", "application/json", b)
	}
	ctx := context.Background()
	if err := e.svc.hasher.acquire(ctx); err != nil { // the one turn
		t.Fatal(err)
	}
	// The queue's one place: a waiter that holds it until the turn frees.
	queued := make(chan error, 1)
	go func() {
		err := e.svc.hasher.acquire(ctx)
		if err == nil {
			e.svc.hasher.release()
		}
		queued <- err
	}()
	testenv.Eventually(t, 5*time.Second, func() bool {
		e.svc.hasher.mu.Lock()
		defer e.svc.hasher.mu.Unlock()
		return e.svc.hasher.waiting == 1
	}, "the queued hash never started waiting")
	failures := e.count("login_failures")
	start := time.Now()
	r := login()
	assertProblem(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "overloaded") {
		t.Fatalf("503 without Retry-After or the overloaded type: %v %s", r.Header, r.Body)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a shed login took %s; it must not wait", d)
	}
	if n := e.count("login_failures"); n != failures {
		t.Fatalf("a shed login left %d failures, want %d", n, failures)
	}
	e.svc.hasher.release()
	if err := <-queued; err != nil {
		t.Fatalf("the queued hash: %v", err)
	}
	if r := login(); r.Status != 200 {
		t.Fatalf("login once a turn is free: %d %s", r.Status, r.Body)
	}

	// A burst: only 200 or 503, and never two hashes at once.
	var wg sync.WaitGroup
	codes := make(chan int, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); codes <- login().Status }()
	}
	wg.Wait()
	close(codes)
	seen := map[int]int{}
	for c := range codes {
		seen[c]++
	}
	if seen[200]+seen[503] != 30 || seen[200] == 0 {
		t.Fatalf("answers %v, want only 200 and 503", seen)
	}
	e.svc.hasher.mu.Lock()
	peak := e.svc.hasher.peak
	e.svc.hasher.mu.Unlock()
	if peak != 1 {
		t.Fatalf("%d hashes ran at once, want 1", peak)
	}
}

// TestHasherShedsPastItsQueue is the unit rule: slots turns, queue waiters,
// and waiting at most wait.
func TestHasherShedsPastItsQueue(t *testing.T) {
	t.Parallel()
	h := newHasher(testPassword, 2, 1, 50*time.Millisecond, NewMetrics(nilRegistry()))
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := h.acquire(ctx); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
	}
	start := time.Now()
	if err := h.acquire(ctx); err == nil || !strings.Contains(err.Error(), "no password hashing turn within") {
		t.Fatalf("a waiter past the wait: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("gave up after %s, before the wait", d)
	}
	h.mu.Lock()
	h.waiting = 1 // the queue is full
	h.mu.Unlock()
	if err := h.acquire(ctx); err == nil || !strings.Contains(err.Error(), "every password hashing turn is taken") {
		t.Fatalf("past the queue: %v", err)
	}
	h.mu.Lock()
	h.waiting = 0
	h.mu.Unlock()
	h.release()
	if err := h.acquire(ctx); err != nil {
		t.Fatalf("a freed turn: %v", err)
	}
}

// TestErasureIgnoresAUserHoldingATombstone: an org admin who creates a
// user with the email the old erasure gave a victim ("erased+<id>@invalid")
// cannot make the victim's erasure fail.
func TestErasureIgnoresAUserHoldingATombstone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("A")
	_, adminTok := e.newUser(org, "org_admin")
	victim, victimEmail := e.user(org, "user")
	p := e.login(victimEmail, "password-1")
	for _, squat := range []string{"erased+" + victim + "@invalid"} {
		if code := e.call("POST", "/v1/users", adminTok.AccessToken, map[string]string{"org_id": org, "email": squat, "password": "password-1", "role": "user"}, nil); code != 201 {
			t.Fatalf("create %s: %d", squat, code)
		}
	}
	req := events.UserDeleted{EventID: uuid.NewString(), UserID: victim, OrgID: org, RequestedAt: time.Now().UTC()}
	if res, err := e.svc.Erase(t.Context(), req); err != nil || res != "erased" {
		t.Fatalf("erase: %q %v", res, err)
	}
	if e.alive(p.AccessToken) {
		t.Fatal("the victim's token survived the erasure")
	}
	if code := e.call("POST", "/v1/auth/login", "", map[string]string{"email": victimEmail, "password": "password-1"}, nil); code != 401 {
		t.Fatalf("the victim logs in after erasure: %d", code)
	}
	var email *string
	if err := e.pool.QueryRow(t.Context(), "SELECT email FROM users WHERE id = $1", victim).Scan(&email); err != nil || email != nil {
		t.Fatalf("erased email %v %v, want NULL", email, err)
	}
	// A second erased user, and a repeat: NULL emails never collide.
	other, _ := e.user(org, "user")
	for _, id := range []string{other, victim} {
		if _, err := e.svc.Erase(t.Context(), events.UserDeleted{EventID: uuid.NewString(), UserID: id, OrgID: org, RequestedAt: time.Now().UTC()}); err != nil {
			t.Fatalf("erase %s: %v", id, err)
		}
	}
}

// TestUserAgentIsStoredCleaned: a User-Agent with bytes that are not UTF-8
// or with control characters signs in (200) and is stored cleaned.
func TestUserAgentIsStoredCleaned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, email := e.user(e.org("A"), "user")
	b, _ := json.Marshal(map[string]string{"email": email, "password": "password-1"})
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/auth/login", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (iPhone; \xff\xfe CPU iPhone OS 17_0)\t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p TokenPair
	_ = json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login with an odd User-Agent: %d", resp.StatusCode)
	}
	var ua, device string
	if err := e.pool.QueryRow(t.Context(), "SELECT user_agent, device_type FROM sessions WHERE id = $1", p.SessionID).Scan(&ua, &device); err != nil {
		t.Fatal(err)
	}
	if ua != "Mozilla/5.0 (iPhone; \uFFFD CPU iPhone OS 17_0)" || device != "ios" {
		t.Fatalf("stored %q (%s)", ua, device)
	}
}

func TestCleanHeaderText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"curl/8.5.0":             "curl/8.5.0",
		"a\xffb":                 "a\uFFFDb",
		"a\x00b\tc\r\nd":         "abcd",
		"Safari \u00e9":          "Safari \u00e9",
		strings.Repeat("x", 600): strings.Repeat("x", 512),
	} {
		if got := cleanHeaderText(in, 512); got != want || !storable(got) {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestSettingsThatBreakTheGuaranteesAreRefused: a token leeway beyond the
// revocation leeway would let a revoked token outlive its blocklist entry.
func TestSettingsThatBreakTheGuaranteesAreRefused(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TOKEN_LEEWAY": "2m"}
	_, err := ServiceConfigFromEnv(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "TOKEN_LEEWAY (2m0s) must not exceed the revocation leeway (1m0s)") {
		t.Fatalf("error %v", err)
	}
	env["TOKEN_LEEWAY"] = "1m"
	if _, err := ServiceConfigFromEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatalf("TOKEN_LEEWAY=1m: %v", err)
	}
}

func TestLoginRateLimitSettings(t *testing.T) {
	t.Parallel()
	c, err := ServiceConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginLimit != (RateLimit{N: 10, Window: 15 * time.Minute}) || c.LoginIPLimit != (RateLimit{N: 100, Window: 15 * time.Minute}) {
		t.Fatalf("defaults %v and %v, want 10/15m and 100/15m", c.LoginLimit, c.LoginIPLimit)
	}
	env := map[string]string{"LOGIN_RATE_LIMIT": "5/1h", "LOGIN_IP_RATE_LIMIT": "oops"}
	_, err = ServiceConfigFromEnv(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), `LOGIN_IP_RATE_LIMIT: "oops" must be N/duration`) {
		t.Fatalf("error %v", err)
	}
}
