package sessions

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/internal/tokens"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testClock is a settable clock; zero offset means real time.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
	at  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() {
		return c.at
	}
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() {
		c.at = c.at.Add(d)
		return
	}
	c.off += d
}

// Set freezes the clock at t.
func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = t
}

type env struct {
	t       testing.TB
	pool    *pgxpool.Pool
	svc     *Service
	keys    *KeyStore
	clock   *testClock
	srv     *httptest.Server
	orgP    string // the platform org of the global admin
	admin   TokenPair
	adminID string
}

var testPassword = argon2id.Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

func testConfig() Config {
	return Config{
		Issuer: "http://sessiond.test", Audience: "api",
		AccessTTL: 5 * time.Minute, RefreshTTL: 720 * time.Hour, ReuseGrace: 10 * time.Second,
		LoginLimit: RateLimit{N: 10, Window: 15 * time.Minute}, LoginIPLimit: RateLimit{N: 100, Window: 15 * time.Minute}, Leeway: 30 * time.Second,
		Password: testPassword,
	}
}

func newEnv(t testing.TB, mutate ...func(*Config)) *env {
	t.Helper()
	cfg := testConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	pool := testenv.Postgres(t)
	return newEnvOn(t, pool, cfg)
}

func newEnvOn(t testing.TB, pool *pgxpool.Pool, cfg Config) *env {
	t.Helper()
	ctx := context.Background()
	var logOut io.Writer = io.Discard
	if os.Getenv("TEST_LOG") != "" {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	keys, err := NewKeyStore(pool, kek, KeyRetention(cfg), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Init(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	svc, err := NewService(pool, keys, kek, cfg, metrics, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{}
	svc.now = clock.Now
	h := NewHandler(svc, log, metrics, reg, nil, func(ctx context.Context) error { return pool.Ping(ctx) })
	srv := httptest.NewServer(h.Routes())
	t.Cleanup(srv.Close)
	e := &env{t: t, pool: pool, svc: svc, keys: keys, clock: clock, srv: srv}
	if _, err := svc.BootstrapAdmin(ctx, "root@example.com", "root-password"); err != nil {
		t.Fatal(err)
	}
	e.admin = e.login("root@example.com", "root-password")
	e.orgP = e.claims(e.admin.AccessToken).Org
	e.adminID = e.claims(e.admin.AccessToken).Subject
	return e
}

var emailSeq struct {
	sync.Mutex
	n int
}

func uniqueEmail(prefix string) string {
	emailSeq.Lock()
	defer emailSeq.Unlock()
	emailSeq.n++
	return prefix + "-" + strings.ToLower(rand.Text()[:8]) + "@example.com"
}

// org creates an organisation as the global admin.
func (e *env) org(name string) string {
	e.t.Helper()
	o, err := e.svc.CreateOrg(context.Background(), SystemPrincipal, name, ClientMeta{})
	if err != nil {
		e.t.Fatal(err)
	}
	return o.ID
}

// user creates a user and returns its id and email; the password is "password-1".
func (e *env) user(org, role string) (string, string) {
	e.t.Helper()
	email := uniqueEmail(role)
	u, err := e.svc.CreateUser(context.Background(), SystemPrincipal, NewUser{OrgID: org, Email: email, Password: "password-1", Role: role}, ClientMeta{})
	if err != nil {
		e.t.Fatal(err)
	}
	return u.ID, email
}

func (e *env) login(email, password string) TokenPair {
	e.t.Helper()
	var p TokenPair
	status := e.call("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": password, "device": map[string]string{"type": "web", "name": "test"}}, &p)
	if status != http.StatusOK {
		e.t.Fatalf("login %s: status %d", email, status)
	}
	return p
}

// newUser creates a user and logs it in.
func (e *env) newUser(org, role string) (string, TokenPair) {
	e.t.Helper()
	id, email := e.user(org, role)
	return id, e.login(email, "password-1")
}

func (e *env) claims(tok string) *tokens.Claims {
	e.t.Helper()
	c, err := tokens.NewVerifier("http://sessiond.test", "api", time.Minute).Verify(e.keys.Current(), tok, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// raw sends a request with body as is.
func (e *env) raw(method, path, token, contentType string, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// call sends body as JSON and decodes a 2xx answer into out.
func (e *env) call(method, path, token string, body any, out any) int {
	e.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			e.t.Fatal(err)
		}
	}
	r := e.raw(method, path, token, "application/json", b)
	if out != nil && r.Status/100 == 2 {
		if err := json.Unmarshal(r.Body, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, r.Body, err)
		}
	}
	return r.Status
}

// alive reports whether token is still accepted by sessiond.
func (e *env) alive(token string) bool {
	e.t.Helper()
	switch s := e.call("GET", "/v1/me/sessions", token, nil, nil); s {
	case http.StatusOK:
		return true
	case http.StatusUnauthorized:
		return false
	default:
		e.t.Fatalf("GET /v1/me/sessions: status %d", s)
		return false
	}
}

func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// snapshot counts the rows of every table that a request might write.
func (e *env) snapshot() map[string]int {
	m := map[string]int{}
	for _, tb := range []string{"orgs", "users", "sessions", "refresh_tokens", "revocations", "outbox", "audit_log", "login_failures"} {
		m[tb] = e.count(tb)
	}
	var revoked int
	_ = e.pool.QueryRow(context.Background(), "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL").Scan(&revoked)
	m["sessions_revoked"] = revoked
	var disabled int
	_ = e.pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE disabled_at IS NOT NULL").Scan(&disabled)
	m["users_disabled"] = disabled
	return m
}

func assertProblem(t testing.TB, r response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p map[string]any
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.Body, err)
	}
	for _, k := range []string{"type", "title", "status", "detail"} {
		if _, ok := p[k]; !ok {
			t.Fatalf("problem lacks %q: %s", k, r.Body)
		}
	}
	if int(p["status"].(float64)) != status {
		t.Fatalf("problem status %v, want %d", p["status"], status)
	}
	for _, leak := range []string{"SQLSTATE", "pgx", "goroutine", "panic", ".go:"} {
		if strings.Contains(string(r.Body), leak) {
			t.Fatalf("problem leaks internals (%s): %s", leak, r.Body)
		}
	}
}

func base64URLDecode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func nilRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
