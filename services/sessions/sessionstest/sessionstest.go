// Package sessionstest is the test harness of the session service: a real
// service on a PostgreSQL database of the test's own, served over HTTP by
// sessiond's own routes (the API and the portal), with a settable clock and
// helpers to sign in, call the API and read the database. Every API call it
// makes is held against the served OpenAPI description (openapi.go): a
// response the description does not allow fails the test, and so does a
// success answered to a request the description does not allow.
package sessionstest

import (
	"bytes"
	"context"
	"crypto/rand"
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

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/api"
	"github.com/sessionguard/revoke/services/sessions/portal"
	"github.com/sessionguard/revoke/services/sessions/receipts"
	"github.com/sessionguard/revoke/services/sessions/sessiond"
)

// Main runs a package's tests; call it from TestMain.
func Main(m *testing.M) { testenv.Main(m) }

// Clock is a settable clock; with nothing set it is real time.
type Clock struct {
	mu  sync.Mutex
	off time.Duration
	at  time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() {
		return c.at
	}
	return time.Now().Add(c.off)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() {
		c.at = c.at.Add(d)
		return
	}
	c.off += d
}

// Set freezes the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = t
}

// Env is one session service under test.
type Env struct {
	T     testing.TB
	Pool  *pgxpool.Pool
	Svc   *sessions.Service
	Keys  *sessions.KeyStore
	KEK   []byte
	Clock *Clock
	Log   *slog.Logger
	// Receipts answers revocation receipts from Fleet, which no gateway
	// reports to unless a test feeds it.
	Receipts *receipts.Store
	Fleet    *receipts.Fleet
	// Srv serves sessiond's routes; the portal's cookies are Secure.
	Srv     *httptest.Server
	OrgP    string // the platform org of the global admin
	Admin   sessions.TokenPair
	AdminID string
}

// Password hashing as cheap as argon2id allows: tests sign in often.
var Password = argon2id.Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// Config is the service configuration of the tests.
func Config() sessions.Config {
	return sessions.Config{
		Issuer: "http://sessiond.test", Audience: "api",
		AccessTTL: 5 * time.Minute, RefreshTTL: 720 * time.Hour, ReuseGrace: 10 * time.Second,
		LoginLimit:   sessions.RateLimit{N: 10, Window: 15 * time.Minute},
		LoginIPLimit: sessions.RateLimit{N: 100, Window: 15 * time.Minute},
		Leeway:       30 * time.Second,
		Password:     Password,
	}
}

// New starts a service on a database of the test's own; mutate may change
// its configuration first.
func New(t testing.TB, mutate ...func(*sessions.Config)) *Env {
	t.Helper()
	cfg := Config()
	for _, m := range mutate {
		m(&cfg)
	}
	return NewOn(t, testenv.Postgres(t), cfg)
}

// NewOn starts a service with cfg on pool. It creates the bootstrap global
// admin (root@example.com, password root-password) and signs it in.
func NewOn(t testing.TB, pool *pgxpool.Pool, cfg sessions.Config) *Env {
	t.Helper()
	ctx := context.Background()
	var logOut io.Writer = io.Discard
	if os.Getenv("TEST_LOG") != "" {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	keys, err := sessions.NewKeyStore(pool, kek, sessions.KeyRetention(cfg), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Init(ctx); err != nil {
		t.Fatal(err)
	}
	clock := &Clock{}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	svc, err := sessions.NewService(pool, keys, kek, cfg, sessions.NewMetrics(prometheus.NewRegistry()), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{T: t, Pool: pool, Svc: svc, Keys: keys, KEK: kek, Clock: clock, Log: log}
	e.Fleet = receipts.NewFleet(receipts.DefaultSilence, time.Now, prometheus.NewRegistry())
	e.Receipts = receipts.NewStore(pool, e.Fleet, time.Now, prometheus.NewRegistry(), log)
	e.Srv = httptest.NewServer(e.Handler(portal.Config{KEK: kek}))
	t.Cleanup(e.Srv.Close)
	if _, err := svc.BootstrapAdmin(ctx, "root@example.com", "root-password"); err != nil {
		t.Fatal(err)
	}
	e.Admin = e.Login("root@example.com", "root-password")
	e.OrgP = e.Claims(e.Admin.AccessToken).Org
	e.AdminID = e.Claims(e.Admin.AccessToken).Subject
	return e
}

// Handler is sessiond's HTTP surface for this service, with the portal
// configured by pc.
func (e *Env) Handler(pc portal.Config) http.Handler {
	reg := prometheus.NewRegistry()
	ready := func(ctx context.Context) error { return e.Pool.Ping(ctx) }
	return sessiond.Routes(e.Log, reg, httpx.RouterOptions{}, api.NewHandler(e.Svc, e.Receipts, e.Log, reg, nil, ready), portal.New(e.Svc, e.Receipts, pc, e.Log), nil)
}

var emailSeq struct {
	sync.Mutex
	n int
}

// UniqueEmail is an email address no other test uses.
func UniqueEmail(prefix string) string {
	emailSeq.Lock()
	defer emailSeq.Unlock()
	emailSeq.n++
	return prefix + "-" + strings.ToLower(rand.Text()[:8]) + "@example.com"
}

// Org creates an organisation as the operator.
func (e *Env) Org(name string) string {
	e.T.Helper()
	o, err := e.Svc.CreateOrg(context.Background(), sessions.SystemPrincipal, name, sessions.ClientMeta{})
	if err != nil {
		e.T.Fatal(err)
	}
	return o.ID
}

// User creates a user and returns its id and email; the password is
// "password-1".
func (e *Env) User(org, role string) (string, string) {
	e.T.Helper()
	email := UniqueEmail(role)
	u, err := e.Svc.CreateUser(context.Background(), sessions.SystemPrincipal, sessions.NewUser{OrgID: org, Email: email, Password: "password-1", Role: role}, sessions.ClientMeta{})
	if err != nil {
		e.T.Fatal(err)
	}
	return u.ID, email
}

// Login signs in through the API.
func (e *Env) Login(email, password string) sessions.TokenPair {
	e.T.Helper()
	var p sessions.TokenPair
	status := e.Call("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": password, "device": map[string]string{"type": "web", "name": "test"}}, &p)
	if status != http.StatusOK {
		e.T.Fatalf("login %s: status %d", email, status)
	}
	return p
}

// NewUser creates a user and signs it in.
func (e *Env) NewUser(org, role string) (string, sessions.TokenPair) {
	e.T.Helper()
	id, email := e.User(org, role)
	return id, e.Login(email, "password-1")
}

// Claims verifies tok and returns its claims.
func (e *Env) Claims(tok string) *tokens.Claims {
	e.T.Helper()
	c, err := tokens.NewVerifier("http://sessiond.test", "api", time.Minute).Verify(e.Keys.Current(), tok, e.Clock.Now())
	if err != nil {
		e.T.Fatal(err)
	}
	return c
}

// Response is an answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Raw sends a request with body as is. API requests and their answers are
// held against the OpenAPI description.
func (e *Env) Raw(method, path, token, contentType string, body []byte) Response {
	e.T.Helper()
	return e.RawWith(method, path, token, contentType, body, nil)
}

// RawWith is Raw with extra request headers.
func (e *Env) RawWith(method, path, token, contentType string, body []byte, headers map[string]string) Response {
	e.T.Helper()
	req, err := http.NewRequest(method, e.Srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.T.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.Srv.Client().Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if !strings.HasPrefix(path, "/admin") && !strings.HasPrefix(path, "/account") {
		checkAgainstSpec(e.T, req, body, r)
	}
	return r
}

// Call sends body as JSON and decodes a 2xx answer into out.
func (e *Env) Call(method, path, token string, body any, out any) int {
	e.T.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			e.T.Fatal(err)
		}
	}
	r := e.Raw(method, path, token, "application/json", b)
	if out != nil && r.Status/100 == 2 {
		if err := json.Unmarshal(r.Body, out); err != nil {
			e.T.Fatalf("%s %s: decode %s: %v", method, path, r.Body, err)
		}
	}
	return r.Status
}

// Refresh presents refresh at POST /v1/auth/refresh and decodes a 2xx
// answer (the new pair) into out.
func (e *Env) Refresh(refresh string, out any) int {
	e.T.Helper()
	return e.Call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": refresh}, out)
}

// Alive reports whether token is still accepted by sessiond.
func (e *Env) Alive(token string) bool {
	e.T.Helper()
	switch s := e.Call("GET", "/v1/me/sessions", token, nil, nil); s {
	case http.StatusOK:
		return true
	case http.StatusUnauthorized:
		return false
	default:
		e.T.Fatalf("GET /v1/me/sessions: status %d", s)
		return false
	}
}

// Count counts the rows of table (which may carry a WHERE clause).
func (e *Env) Count(table string) int {
	e.T.Helper()
	var n int
	if err := e.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		e.T.Fatal(err)
	}
	return n
}

// Snapshot counts the rows of every table that a request might write.
func (e *Env) Snapshot() map[string]int {
	m := map[string]int{}
	for _, tb := range []string{"orgs", "users", "sessions", "refresh_tokens", "revocations", "outbox", "audit_log", "login_failures"} {
		m[tb] = e.Count(tb)
	}
	m["sessions_revoked"] = e.Count("sessions WHERE revoked_at IS NOT NULL")
	m["users_disabled"] = e.Count("users WHERE disabled_at IS NOT NULL")
	return m
}

// OutboxRow is one event in the outbox.
type OutboxRow struct {
	Subject string
	Event   events.Event
}

// Outbox reads every event in the outbox, in order, and checks that each is
// byte for byte what events.Encode makes of it, whether Go or the
// one-statement revocation wrote it.
func (e *Env) Outbox() []OutboxRow {
	e.T.Helper()
	rows, err := e.Pool.Query(context.Background(), "SELECT event_id, subject, payload FROM outbox ORDER BY id")
	if err != nil {
		e.T.Fatal(err)
	}
	defer rows.Close()
	var out []OutboxRow
	for rows.Next() {
		var id, subject string
		var payload []byte
		if err := rows.Scan(&id, &subject, &payload); err != nil {
			e.T.Fatal(err)
		}
		ev, err := events.Decode(subject, payload)
		if err != nil {
			e.T.Fatalf("outbox row %s: %v", payload, err)
		}
		if ev.ID() != id {
			e.T.Fatalf("outbox event_id column %s differs from payload %s", id, ev.ID())
		}
		// byte for byte what events.Encode makes of it, whether Go or the
		// database assembled it (session revocations: revokeSessions)
		if again, err := events.Encode(ev); err != nil || !bytes.Equal(again, payload) {
			e.T.Fatalf("outbox payload\n%s\nis not what events.Encode makes of it:\n%s (%v)", payload, again, err)
		}
		// the payload holds exactly the contract's fields
		var raw map[string]any
		_ = json.Unmarshal(payload, &raw)
		want := map[string][]string{
			events.SubjectSessionRevoked: {"event_id", "sid", "sub", "org", "reason", "revoked_at", "expires_at"},
			events.SubjectUserRevoked:    {"event_id", "sub", "org", "not_before", "reason", "revoked_at", "expires_at"},
			events.SubjectUserErased:     {"event_id", "request_event_id", "user_id", "sessions_revoked", "completed_at"},
			events.SubjectOrgRevoked:     {"event_id", "org", "role", "auth_before", "reason", "revoked_at", "expires_at"},
			events.SubjectSessionCreated: {"event_id", "session_id", "user_id", "org_id", "device_type", "client", "ip", "new_device", "created_at"},
		}[subject]
		if len(raw) != len(want) {
			e.T.Fatalf("payload %s has fields %v, want %v", payload, raw, want)
		}
		for _, k := range want {
			if _, ok := raw[k]; !ok {
				e.T.Fatalf("payload %s lacks %s", payload, k)
			}
		}
		out = append(out, OutboxRow{Subject: subject, Event: ev})
	}
	return out
}

// AssertProblem checks that r is an RFC 9457 problem of status that leaks
// nothing internal.
func AssertProblem(t testing.TB, r Response, status int) {
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

// EmailOf is a user's email.
func (e *Env) EmailOf(userID string) string {
	e.T.Helper()
	var email string
	if err := e.Pool.QueryRow(context.Background(), "SELECT email FROM users WHERE id = $1", userID).Scan(&email); err != nil {
		e.T.Fatal(err)
	}
	return email
}
