package sessions_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
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
	e := sessionstest.New(t, func(c *sessions.Config) {
		c.HashConcurrency, c.HashQueue, c.HashWait = 1, 1, 100*time.Millisecond
		// attempts in flight count toward the limit until decided; this
		// burst is about hashing, not rate limits
		c.LoginLimit.N = 1000
	})
	_, email := e.User(e.Org("A"), "user")
	login := func() sessionstest.Response {
		b, _ := json.Marshal(map[string]string{"email": email, "password": "password-1"})
		return e.Raw("POST", "/v1/auth/login", "", "application/json", b)
	}
	if err := sessions.AcquireHashTurn(e.Svc); err != nil { // the one turn
		t.Fatal(err)
	}
	// The queue's one place: a waiter that holds it until the turn frees.
	queued := make(chan error, 1)
	go func() {
		err := sessions.AcquireHashTurn(e.Svc)
		if err == nil {
			sessions.ReleaseHashTurn(e.Svc)
		}
		queued <- err
	}()
	testenv.Eventually(t, 5*time.Second, func() bool { return sessions.HashesWaiting(e.Svc) == 1 }, "the queued hash never started waiting")
	failures := e.Count("login_failures")
	start := time.Now()
	r := login()
	sessionstest.AssertProblem(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "overloaded") {
		t.Fatalf("503 without Retry-After or the overloaded type: %v %s", r.Header, r.Body)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a shed login took %s; it must not wait", d)
	}
	if n := e.Count("login_failures"); n != failures {
		t.Fatalf("a shed login left %d failures, want %d", n, failures)
	}
	sessions.ReleaseHashTurn(e.Svc)
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
	if peak := sessions.HashPeak(e.Svc); peak != 1 {
		t.Fatalf("%d hashes ran at once, want 1", peak)
	}
}

// TestErasureIgnoresAUserHoldingATombstone: an org admin who creates a
// user with the email the old erasure gave a victim ("erased+<id>@invalid")
// cannot make the victim's erasure fail.
func TestErasureIgnoresAUserHoldingATombstone(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, adminTok := e.NewUser(org, "org_admin")
	victim, victimEmail := e.User(org, "user")
	p := e.Login(victimEmail, "password-1")
	for _, squat := range []string{"erased+" + victim + "@invalid"} {
		if code := e.Call("POST", "/v1/users", adminTok.AccessToken, map[string]string{"org_id": org, "email": squat, "password": "password-1", "role": "user"}, nil); code != 201 {
			t.Fatalf("create %s: %d", squat, code)
		}
	}
	req := events.UserDeleted{EventID: uuid.NewString(), UserID: victim, OrgID: org, RequestedAt: time.Now().UTC()}
	if res, err := e.Svc.Erase(t.Context(), req); err != nil || res != "erased" {
		t.Fatalf("erase: %q %v", res, err)
	}
	if e.Alive(p.AccessToken) {
		t.Fatal("the victim's token survived the erasure")
	}
	if code := e.Call("POST", "/v1/auth/login", "", map[string]string{"email": victimEmail, "password": "password-1"}, nil); code != 401 {
		t.Fatalf("the victim logs in after erasure: %d", code)
	}
	var email *string
	if err := e.Pool.QueryRow(t.Context(), "SELECT email FROM users WHERE id = $1", victim).Scan(&email); err != nil || email != nil {
		t.Fatalf("erased email %v %v, want NULL", email, err)
	}
	// A second erased user, and a repeat: NULL emails never collide.
	other, _ := e.User(org, "user")
	for _, id := range []string{other, victim} {
		if _, err := e.Svc.Erase(t.Context(), events.UserDeleted{EventID: uuid.NewString(), UserID: id, OrgID: org, RequestedAt: time.Now().UTC()}); err != nil {
			t.Fatalf("erase %s: %v", id, err)
		}
	}
}
