package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/services/gateway"
)

// System tests for the holes of the security review of 2026-12-01, seen
// from outside as the review saw them: through sessiond's API, the
// gateways' listeners, the Go middleware, and a verifier that knows only
// the contract.

// TestUserRevocationsInOneSecondAtEveryVerifier: revoke all of a user's
// sessions, sign in, disable the user, in quick succession (usually within
// one second): the token of that sign-in is accepted everywhere between the
// two revocations and refused everywhere after the second.
func TestUserRevocationsInOneSecondAtEveryVerifier(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 2)
	mw := s.middleware()
	third := s.contractVerifier()
	id, first := s.user()
	email := s.emailOf(first)

	if code := s.do("DELETE", "/v1/users/"+id+"/sessions", s.admin, nil, nil); code != 200 {
		t.Fatalf("revoke all: %d", code)
	}
	between := s.login(email, "password-1")
	if code := s.do("PATCH", "/v1/users/"+id, s.admin, map[string]bool{"disabled": true}, nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	// Both revocations are in the stream once the first token is refused
	// and the second has reached every gateway; the second is what counts.
	s.waitRefusedEverywhere(between.AccessToken)
	if code := mw(between.AccessToken); code != 401 {
		t.Fatalf("the Go middleware accepts the token issued between the revocations: %d", code)
	}
	if code := s.do("GET", "/v1/me/sessions", between.AccessToken, nil, nil); code != 401 {
		t.Fatalf("sessiond accepts it: %d", code)
	}
	nbs := third.notBefores(id, 2)
	iat := third.iat(between.AccessToken)
	if !(nbs[0] < iat && iat < nbs[1]) {
		t.Fatalf("a verifier reading the contract's numbers sees not_befores %v around iat %v; want first < iat < second", nbs, iat)
	}
	if !(third.iat(first.AccessToken) < nbs[0]) {
		t.Fatal("the token issued before both is not before the first not_before")
	}
}

// TestUserRevocationSparesTheNextSignIn: a sign-in right after a user-level
// revocation is accepted at every verifier, however close it follows.
func TestUserRevocationSparesTheNextSignIn(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 1)
	mw := s.middleware()
	third := s.contractVerifier()
	id, first := s.user()
	email := s.emailOf(first)
	for i := 0; i < 5; i++ {
		if code := s.do("DELETE", "/v1/users/"+id+"/sessions", s.admin, nil, nil); code != 200 {
			t.Fatalf("revoke all: %d", code)
		}
		next := s.login(email, "password-1")
		s.waitRefusedEverywhere(first.AccessToken)
		if !s.acceptedEverywhere(next.AccessToken) || mw(next.AccessToken) != 200 || s.do("GET", "/v1/me/sessions", next.AccessToken, nil, nil) != 200 {
			t.Fatalf("round %d: the sign-in after the revocation is refused somewhere", i)
		}
		nbs := third.notBefores(id, i+1)
		if iat := third.iat(next.AccessToken); !(iat > nbs[i]) {
			t.Fatalf("round %d: iat %v is not after not_before %v", i, iat, nbs[i])
		}
		first = next
	}
}

// TestGatewayStartsOnAQuietStream: a gateway process started when
// REVOCATIONS holds no message (every one aged out; a purge leaves the
// same state) is ready and stays ready past its staleness bound.
func TestGatewayStartsOnAQuietStream(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 0)
	_, p := s.user()
	s.do("POST", "/v1/auth/logout", p.AccessToken, nil, nil) // one revocation, then quiet
	_, js := testenv.JetStream(t, s.natsURL)
	stream, err := js.Stream(t.Context(), events.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { info, err := stream.Info(t.Context()); return err == nil && info.State.LastSeq > 0 }, "the revocation never reached the stream")
	if err := stream.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	g := s.startGatewayWith(gwOptions{maxStaleness: time.Second})
	_, q := s.user()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if code := check(t, g, q.AccessToken); code != 200 {
			t.Fatalf("a gateway on a quiet stream answers %d", code)
		}
		if code := readyz(g); code != 200 {
			t.Fatalf("its /readyz answers %d", code)
		}
	}
}

// TestProxyHeadersCannotBeStrippedOrSpoofed: the demo upstream of a real
// gateway receives exactly the gateway's four identity headers.
func TestProxyHeadersCannotBeStrippedOrSpoofed(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 1)
	_, p := s.user()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.gateways[0].proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /hello HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer %s\r\n"+
		"Connection: keep-alive, X-Auth-User, X-Auth-Org, X-Auth-Session, X-Auth-Role\r\nX_Auth_Role: global_admin\r\nx_auth_org: other\r\n\r\n", p.AccessToken)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("proxy: %d", resp.StatusCode)
	}
	h := <-s.seen
	if h.Get("X-Auth-Session") != p.SessionID || h.Get("X-Auth-Role") != "user" || h.Get("X-Auth-User") == "" || h.Get("X-Auth-Org") == "" {
		t.Fatalf("the upstream lacks identity headers: %v", h)
	}
	for k := range h {
		if n := strings.ToLower(strings.ReplaceAll(k, "_", "-")); strings.HasPrefix(n, "x-auth-") && strings.Contains(k, "_") {
			t.Fatalf("the upstream received %s: %v", k, h[k])
		}
	}
}

// TestLoginBurstsAreBounded: 40 wrong passwords at once on one account get
// exactly the limit's 401s; 80 sign-ins at once compute a bounded number of
// password hashes and shed the rest with 503 and Retry-After.
func TestLoginBurstsAreBounded(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 0, systemOptions{env: map[string]string{"LOGIN_RATE_LIMIT": "10/15m", "LOGIN_IP_RATE_LIMIT": "1000/15m"}})
	_, p := s.user()
	email := s.emailOf(p)
	burst := func(n int, body map[string]string) map[int]int {
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[int]int{}
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, h, b, err := call("POST", s.api+"/v1/auth/login", "", body)
				if err != nil {
					t.Error(err)
					return
				}
				if code == 503 && (h.Get("Retry-After") == "" || !strings.Contains(string(b), "overloaded")) {
					t.Errorf("a 503 without Retry-After: %v %s", h, b)
				}
				mu.Lock()
				got[code]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return got
	}
	// 40 at once: each is either decided (401) or refused (429), unless its
	// hash was shed (503, which counts for nothing); exactly 10 are decided.
	wrong := burst(40, map[string]string{"email": email, "password": "wrong-password"})
	if wrong[401] > 10 || wrong[401]+wrong[429]+wrong[503] != 40 {
		t.Fatalf("40 wrong passwords at once: %v; want at most 10 of 401 and the rest 429 or 503", wrong)
	}
	for wrong[401] < 10 { // shed attempts counted nothing: the limit is still exact
		if code, _, _, _ := call("POST", s.api+"/v1/auth/login", "", map[string]string{"email": email, "password": "wrong-password"}); code == 401 {
			wrong[401]++
		} else if code != 503 {
			t.Fatalf("before the limit: %d", code)
		}
	}
	if code, _, _, _ := call("POST", s.api+"/v1/auth/login", "", map[string]string{"email": email, "password": "wrong-password"}); code != 429 {
		t.Fatalf("the 11th failure: %d, want 429", code)
	}
	// 80 unauthenticated sign-ins at once (unknown accounts, each checked
	// against a dummy hash of the same cost, as the review sent them).
	var wg sync.WaitGroup
	var mu sync.Mutex
	unknown := map[int]int{}
	for i := 0; i < 80; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, h, _, err := call("POST", s.api+"/v1/auth/login", "", map[string]string{"email": fmt.Sprintf("nobody-%d@example.com", i), "password": "password-1"})
			if err != nil {
				t.Error(err)
				return
			}
			if code == 503 && h.Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
			mu.Lock()
			unknown[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if unknown[503] == 0 || unknown[401]+unknown[503] != 80 {
		t.Fatalf("80 sign-ins at once: %v; want some shed with 503 and nothing but 401 and 503", unknown)
	}
}

// TestBadBytesAreTheClientsFault: NUL in an email, a device or org name is
// a 400 problem; a User-Agent that is not UTF-8 signs in.
func TestBadBytesAreTheClientsFault(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 0)
	_, p := s.user()
	email := s.emailOf(p)
	for name, c := range map[string]struct {
		path, token string
		body        map[string]any
	}{
		"email":       {"/v1/auth/login", "", map[string]any{"email": "a\x00@example.com", "password": "password-1"}},
		"device name": {"/v1/auth/login", "", map[string]any{"email": email, "password": "password-1", "device": map[string]string{"type": "ios", "name": "x\x00"}}},
		"org name":    {"/v1/orgs", s.admin, map[string]any{"name": "Acme\x00"}},
	} {
		code, h, b, err := call("POST", s.api+c.path, c.token, c.body)
		if err != nil || code != 400 || h.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s with NUL: %d %s %v", name, code, b, err)
		}
	}
	req, _ := http.NewRequest("POST", s.api+"/v1/auth/login", strings.NewReader(`{"email":"`+email+`","password":"password-1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (Linux; Android 14) \xc3\x28 Chrome/120")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a User-Agent that is not UTF-8: %d", resp.StatusCode)
	}
}

// TestErasureOfAUserWhoseTombstoneIsTaken: an org admin who creates a user
// named like the old erasure tombstone does not stop the erasure.
func TestErasureOfAUserWhoseTombstoneIsTaken(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 1)
	pipe := newPipeline(t, s.natsURL)
	victim, p := s.user()
	var me struct {
		Sessions []struct {
			OrgID string `json:"org_id"`
		}
	}
	s.do("GET", "/v1/me/sessions", p.AccessToken, nil, &me)
	org := me.Sessions[0].OrgID
	if code := s.do("POST", "/v1/users", s.admin, map[string]string{"org_id": org, "email": "erased+" + victim + "@invalid", "password": "password-1", "role": "user"}, nil); code != 201 {
		t.Fatalf("create the squatter: %d", code)
	}
	conf := pipe.confirmation(pipe.request(victim, org), 15*time.Second)
	if conf.SessionsRevoked != 1 {
		t.Fatalf("confirmation %+v", conf)
	}
	s.waitRefusedEverywhere(p.AccessToken)
}

// middleware serves a Go service behind gateway.Middleware, wired to this
// system, and returns a function that asks it about a token.
func (s *system) middleware() func(token string) int {
	s.t.Helper()
	nc, err := natsx.Connect(s.natsURL, "middleware", quietLog())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.Start(ctx, gateway.Config{JWKSURL: s.api + "/.well-known/jwks.json", MaxStaleness: 10 * time.Second,
		Issuer: "http://sessiond.test", Audience: "api", Leeway: 30 * time.Second}, nc, prometheus.NewRegistry(), quietLog())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cancel(); g.Close() })
	srv := httptest.NewServer(g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })))
	s.t.Cleanup(srv.Close)
	ask := func(token string) int {
		code, _, _, err := call("GET", srv.URL, token, nil)
		if err != nil {
			s.t.Fatal(err)
		}
		return code
	}
	waitFor(s.t, func() bool { return ask("") == 401 }, "the middleware never became ready")
	return ask
}

// contractVerifier reads tokens and revocation events as a third party
// that knows only the contract would: claims as JSON numbers (float64),
// not_before as an RFC 3339 time turned into seconds.
type contractVerifier struct {
	t  testing.TB
	js jetstream.JetStream
}

func (s *system) contractVerifier() *contractVerifier {
	_, js := testenv.JetStream(s.t, s.natsURL)
	return &contractVerifier{t: s.t, js: js}
}

func (c *contractVerifier) iat(token string) float64 {
	c.t.Helper()
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		c.t.Fatal(err)
	}
	var claims struct{ Iat float64 }
	if err := json.Unmarshal(b, &claims); err != nil {
		c.t.Fatal(err)
	}
	return claims.Iat
}

// notBefores waits for n user revocations of sub in REVOCATIONS and returns
// their not_before in stream order, as seconds.
func (c *contractVerifier) notBefores(sub string, n int) []float64 {
	c.t.Helper()
	var out []float64
	waitFor(c.t, func() bool {
		out = out[:0]
		cons, err := c.js.OrderedConsumer(c.t.Context(), events.StreamRevocations, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectUserRevoked}})
		if err != nil {
			return false
		}
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			var ev struct {
				Sub       string `json:"sub"`
				NotBefore string `json:"not_before"`
			}
			if json.Unmarshal(m.Data(), &ev) != nil || ev.Sub != sub {
				continue
			}
			tm, err := time.Parse(time.RFC3339Nano, ev.NotBefore)
			if err != nil {
				c.t.Fatal(err)
			}
			out = append(out, float64(tm.UnixNano())/1e9)
		}
		return len(out) >= n
	}, "fewer than the wanted user revocations reached the stream")
	return out
}
