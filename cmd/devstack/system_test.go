package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/services/sessions/sessiond"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/services/gateway"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// system is the whole product in one test process: a real sessiond and
// real gateways over loopback, on a real PostgreSQL and NATS JetStream.
type system struct {
	t        testing.TB
	api      string
	apiLn    string // sessiond's address, kept across restarts
	stopAPI  func()
	dbURL    string
	nats     *testenv.NATSServer
	upstream *httptest.Server
	seen     chan http.Header
	gateways []*gw
	admin    string // access token of the bootstrap admin
	sessiond sessiond.Config
	natsURL  string               // s.nats's URL, or the servers systemOptions named
	env      map[string]string    // sessiond's environment, for a sessiond run as a process
	checks   *pgxpool.Pool        // opened on first use by checks that read the database
	tracer   trace.TracerProvider // of sessiond and every gateway (nil: none)
	activity time.Duration        // the gateways' ActivityEvery (0: no reports)
}

type gw struct {
	proxy, control string
	stop           context.CancelFunc
	done           chan error
}

func quietLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func newSystem(t testing.TB, gateways int) *system {
	t.Helper()
	return newSystemWith(t, gateways, systemOptions{})
}

// systemOptions vary what newSystemWith builds; the zero value builds what
// newSystem does.
type systemOptions struct {
	dbURL   string            // default: a fresh database of the test's own (testenv)
	natsURL string            // default: a restartable embedded server (s.nats)
	env     map[string]string // sessiond settings added to or replacing the defaults
	// noSessiond leaves sessiond and the gateways to the caller (to run
	// sessiond as a process on s.apiLn with s.env, say); s.admin stays empty.
	noSessiond bool
	// tracer traces sessiond and every gateway (nil: not traced).
	tracer trace.TracerProvider
	// noActivity starts gateways that report no activity: a test that
	// stands in for idle minutes by writing last_active_at would otherwise
	// see its own requests' reports, a second later, undo it.
	noActivity bool
}

func newSystemWith(t testing.TB, gateways int, o systemOptions) *system {
	t.Helper()
	s := &system{t: t, dbURL: o.dbURL, natsURL: o.natsURL, seen: make(chan http.Header, 1024)}
	if s.dbURL == "" {
		s.dbURL = testenv.DatabaseURL(t)
	}
	if s.natsURL == "" {
		s.nats = testenv.StartNATS(t)
		s.natsURL = s.nats.URL()
	}
	s.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.seen <- r.Header.Clone():
		default:
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(s.upstream.Close)
	env := map[string]string{
		"DATABASE_URL": s.dbURL, "NATS_URL": s.natsURL,
		"KEY_ENCRYPTION_KEY":    base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)),
		"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com", "BOOTSTRAP_ADMIN_PASSWORD": "admin-password",
		"ISSUER": "http://sessiond.test", "LOGIN_RATE_LIMIT": "1000/1m",
	}
	maps.Copy(env, o.env)
	s.env = env
	cfg, err := sessiond.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = o.tracer
	s.sessiond = cfg
	s.tracer = o.tracer
	if !o.noActivity {
		s.activity = 30 * time.Second
	}
	ln := listen(t)
	s.apiLn = ln.Addr().String()
	s.api = "http://" + s.apiLn
	if o.noSessiond {
		ln.Close()
		return s
	}
	s.startSessiond(ln)
	for i := 0; i < gateways; i++ {
		s.startGateway()
	}
	s.admin = s.login("admin@example.com", "admin-password").AccessToken
	return s
}

// startSessiond starts sessiond on ln, or on its previous address.
func (s *system) startSessiond(ln net.Listener) {
	s.t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.apiLn); err != nil {
			s.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sessiond.Serve(ctx, s.sessiond, ln, quietLog()) }()
	stopped := false
	s.stopAPI = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	s.t.Cleanup(s.stopAPI)
	s.waitOK(s.api + "/readyz")
}

func (s *system) startGateway() *gw {
	s.t.Helper()
	return s.startGatewayWith(gwOptions{})
}

// gwOptions vary what startGatewayWith starts; the zero value starts what
// startGateway does.
type gwOptions struct {
	now          func() time.Time // the gateway's clock (nil: time.Now), to skew it
	maxStaleness time.Duration    // default 10s
}

func (s *system) startGatewayWith(o gwOptions) *gw {
	s.t.Helper()
	if o.maxStaleness == 0 {
		o.maxStaleness = 10 * time.Second
	}
	u, _ := url.Parse(s.upstream.URL)
	cfg := gateway.AppConfig{NATSURL: s.natsURL, Upstream: u, Config: gateway.Config{
		JWKSURL: s.api + "/.well-known/jwks.json", MaxStaleness: o.maxStaleness, Issuer: "http://sessiond.test",
		Audience: "api", Leeway: 30 * time.Second, CacheSize: 1 << 16, ActivityEvery: s.activity, Now: o.now, Tracer: s.tracer}}
	lns := gateway.Listeners{Proxy: listen(s.t), Control: listen(s.t)}
	g := &gw{proxy: "http://" + lns.Proxy.Addr().String(), control: "http://" + lns.Control.Addr().String(), done: make(chan error, 1)}
	cfg.Name = "gw-" + lns.Control.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	go func() { g.done <- gateway.Serve(ctx, cfg, lns, quietLog()) }()
	s.t.Cleanup(func() { cancel(); <-g.done })
	s.gateways = append(s.gateways, g)
	s.waitOK(g.control + "/readyz")
	return g
}

func (s *system) waitOK(u string) {
	s.t.Helper()
	testenv.Eventually(s.t, 15*time.Second, func() bool {
		resp, err := http.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "%s never answered 200", u)
}

type pair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
}

func (s *system) do(method, path, token string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.api+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (s *system) login(email, password string) pair {
	s.t.Helper()
	var p pair
	if code := s.do("POST", "/v1/auth/login", "", map[string]string{"email": email, "password": password}, &p); code != 200 {
		s.t.Fatalf("login %s: %d", email, code)
	}
	return p
}

// user creates an org and a user in it and logs the user in.
func (s *system) user() (string, pair) {
	s.t.Helper()
	var org struct{ ID string }
	if code := s.do("POST", "/v1/orgs", s.admin, map[string]string{"name": fmt.Sprintf("acme %d", time.Now().UnixNano())}, &org); code != 201 {
		s.t.Fatalf("create org: %d", code)
	}
	email := "u" + base64.RawURLEncoding.EncodeToString([]byte(time.Now().Format(time.RFC3339Nano))) + "@example.com"
	var u struct{ ID string }
	if code := s.do("POST", "/v1/users", s.admin, map[string]string{"org_id": org.ID, "email": email, "password": "password-1", "role": "user"}, &u); code != 201 {
		s.t.Fatalf("create user: %d", code)
	}
	return u.ID, s.login(email, "password-1")
}

// logins creates a user (as user does) and returns n more sessions of it.
func (s *system) logins(n int) []pair {
	s.t.Helper()
	_, first := s.user()
	email := s.emailOf(first)
	toks := make([]pair, n)
	for i := range toks {
		toks[i] = s.login(email, "password-1")
	}
	return toks
}

// check asks a gateway's forward-auth endpoint about a token.
func check(t testing.TB, g *gw, token string) int {
	req, _ := http.NewRequest("GET", g.control+"/v1/check", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (s *system) waitRefusedEverywhere(token string) {
	s.t.Helper()
	for _, g := range s.gateways {
		testenv.Eventually(s.t, 10*time.Second, func() bool { return check(s.t, g, token) == 401 }, "gateway %s still accepts a revoked token", g.control)
	}
}

func (s *system) acceptedEverywhere(token string) bool {
	for _, g := range s.gateways {
		if check(s.t, g, token) != 200 {
			return false
		}
	}
	return true
}

func (s *system) pool() *pgxpool.Pool {
	s.t.Helper()
	pool, err := postgres.Connect(s.t.Context(), s.dbURL)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(pool.Close)
	return pool
}

func waitFor(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, cond, msg)
}
