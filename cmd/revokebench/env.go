package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessionguard/revoke/internal/proc"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/sessionguard/revoke/internal/pgserver"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
)

const issuer = "http://revokebench.local"

// benchEnv is the running system under test.
type benchEnv struct {
	dir      string
	pg       *pgserver.Server
	pool     *pgxpool.Pool
	natsURL  string
	natsProc *proc.Proc
	// leafURL is where the hub takes leaf nodes; leaves are the points of
	// presence of -topology pop, each a NATS leaf node with a JetStream
	// domain of its own, the gateways spread over them.
	leafURL  string
	leaves   []*natsNode
	binDir   string
	kek      []byte
	api      string
	sessiond *proc.Proc
	gateways []*gateway
	upstream *proc.Proc
	upURL    string
	admin    string // bearer token of a global admin
	keys     *sessions.KeyStore
	client   *http.Client
	log      io.Writer
	keep     bool
	debug    string // sessiond's DEBUG_ADDR (profiler), "" for none
	// readyWait bounds the wait for a process to be ready (60 s when 0):
	// a gateway replaying 10M entries takes longer.
	readyWait time.Duration
}

type gateway struct {
	proc           *proc.Proc
	proxy, control string
	debug          string // its DEBUG_ADDR (profiler)
}

func startEnv(ctx context.Context, o options, logw io.Writer) (*benchEnv, error) {
	dir, err := os.MkdirTemp("", "rb-")
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(dir, 0o755)
	e := &benchEnv{dir: dir, log: logw, keep: o.keep, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 4096}, Timeout: 30 * time.Second}}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	fmt.Fprintln(logw, "starting PostgreSQL (fsync on), NATS, sessiond and", o.gateways, "gateways in", dir)
	if e.pg, err = pgserver.Start(ctx, filepath.Join(dir, "pg"), pgserver.Options{Settings: map[string]string{"max_connections": "400"}}); err != nil {
		return nil, err
	}
	if err := postgres.CreateDatabase(ctx, e.pg.URL("postgres"), "revoke", "", false); err != nil {
		return nil, err
	}
	if e.pool, err = postgres.Connect(ctx, e.pg.URL("revoke")); err != nil {
		return nil, err
	}
	if _, err := postgres.Migrate(ctx, e.pool); err != nil {
		return nil, err
	}
	if err := e.startNATS(ctx); err != nil {
		return nil, err
	}
	e.binDir = o.binDir
	if e.binDir == "" {
		e.binDir = filepath.Join(dir, "bin")
		fmt.Fprintln(logw, "building sessiond and gatewayd")
		if err := proc.Build(ctx, e.binDir, logw, "./cmd/sessiond", "./cmd/gatewayd"); err != nil {
			return nil, fmt.Errorf("%w (or pass -bin)", err)
		}
	}
	if o.profile != "" {
		if e.debug, err = proc.FreeAddr(); err != nil {
			return nil, err
		}
	}
	e.kek = make([]byte, 32)
	_, _ = rand.Read(e.kek)
	if err := e.startSessiond(ctx); err != nil {
		return nil, err
	}
	if e.upstream, e.upURL, err = e.startBare(ctx, "upstream", ""); err != nil {
		return nil, err
	}
	if o.topology == "pop" {
		for i := range o.leaves {
			name := fmt.Sprintf("nats-leaf-%d", i)
			leaf, err := e.startLeaf(ctx, name, filepath.Join(dir, name), e.leafURL)
			if err != nil {
				return nil, err
			}
			e.leaves = append(e.leaves, leaf)
		}
	}
	if err := e.startGateways(ctx, o.gateways); err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if e.keys, err = sessions.NewKeyStore(e.pool, e.kek, time.Hour, quiet); err != nil {
		return nil, err
	}
	if err := e.keys.Reload(ctx); err != nil {
		return nil, err
	}
	var p struct {
		AccessToken string `json:"access_token"`
	}
	if code, err := e.call(ctx, "POST", "/v1/auth/login", "", map[string]string{"email": "bench@example.com", "password": "bench-password"}, &p); err != nil || code != 200 {
		return nil, fmt.Errorf("admin login: %d %v", code, err)
	}
	e.admin = p.AccessToken
	ok = true
	return e, nil
}

func (e *benchEnv) spawn(_ context.Context, name string, env []string, args ...string) (*proc.Proc, error) {
	bin := filepath.Join(e.binDir, strings.SplitN(name, "-", 2)[0])
	if len(args) > 0 && slices.Contains([]string{"bare", "nats", "fleet", "relay"}, args[0]) {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		bin = self
	}
	return proc.Start(proc.Spec{Name: name, Bin: bin, Args: args, Env: env, Log: filepath.Join(e.dir, name+".log")})
}

// startNATS runs the hub's NATS JetStream (JetStream domain "hub", taking
// leaf nodes) as a process of its own (this binary's "nats" mode) and waits
// until it takes connections.
func (e *benchEnv) startNATS(ctx context.Context) error {
	addr, err := proc.FreeAddr()
	if err != nil {
		return err
	}
	leaf, err := proc.FreeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(addr)
	_, leafPort, _ := net.SplitHostPort(leaf)
	if e.natsProc, err = e.spawn(ctx, "nats", nil, "nats", "-port", port, "-store", filepath.Join(e.dir, "nats"),
		"-name", "hub", "-domain", hubDomain, "-leaf-port", leafPort); err != nil {
		return err
	}
	e.natsURL, e.leafURL = "nats://"+addr, "nats-leaf://"+leaf
	return e.waitNATS(e.natsURL, e.natsProc)
}

func (e *benchEnv) waitNATS(url string, p *proc.Proc) error {
	return p.WaitFor(context.Background(), 30*time.Second, func() bool {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
}

func (e *benchEnv) startSessiond(ctx context.Context) error {
	addr, err := proc.FreeAddr()
	if err != nil {
		return err
	}
	e.api = "http://" + addr
	env := []string{}
	if e.debug != "" {
		env = append(env, "DEBUG_ADDR="+e.debug)
	}
	e.sessiond, err = e.spawn(ctx, "sessiond", append(env,
		"DATABASE_URL="+e.pg.URL("revoke"), "NATS_URL="+e.natsURL, "SESSIOND_ADDR="+addr,
		"KEY_ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(e.kek), "ISSUER="+issuer,
		"BOOTSTRAP_ADMIN_EMAIL=bench@example.com", "BOOTSTRAP_ADMIN_PASSWORD=bench-password",
		"LOGIN_RATE_LIMIT=100000/1m", "LOG_LEVEL=warn",
		// The ssf scenario's receivers listen on plain http on loopback.
		"SSF_ALLOW_HTTP=true", "SSF_ALLOW_PRIVATE_NETWORKS=true",
		// The fleet scenario's simulated gateways leave between its rounds.
		"GATEWAY_SILENCE_TIMEOUT=3s",
	))
	if err != nil {
		return err
	}
	return e.waitOK(ctx, e.api+"/readyz", e.sessiond)
}

func (e *benchEnv) startGateway(ctx context.Context, name string, env ...string) (*gateway, error) {
	ports, err := proc.FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	proxy, control, debug := ports[0], ports[1], ports[2]
	p, err := e.spawn(ctx, name, append([]string{
		"JWKS_URL=" + e.api + "/.well-known/jwks.json", "NATS_URL=" + e.natsURL, "GATEWAY_UPSTREAM=" + e.upURL,
		"GATEWAY_ADDR=" + proxy, "GATEWAY_CONTROL_ADDR=" + control, "ISSUER=" + issuer, "LOG_LEVEL=warn", "DEBUG_ADDR=" + debug,
		"GATEWAY_NAME=" + name,
	}, env...))
	if err != nil {
		return nil, err
	}
	g := &gateway{proc: p, proxy: "http://" + proxy, control: "http://" + control, debug: "http://" + debug}
	return g, e.waitOK(ctx, g.control+"/readyz", p)
}

// startBare runs this binary as a bare server: "ok" answers 200, "proxy"
// is a bare httputil.ReverseProxy to upstream, "upstream" answers 512 bytes.
func (e *benchEnv) startBare(ctx context.Context, mode, upstream string, args ...string) (*proc.Proc, string, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := e.spawn(ctx, "bare-"+mode, nil, append([]string{"bare", "-mode", mode, "-addr", addr, "-upstream", upstream}, args...)...)
	if err != nil {
		return nil, "", err
	}
	u := "http://" + addr
	return p, u, e.waitOK(ctx, u+"/healthz", p)
}

func (e *benchEnv) waitOK(ctx context.Context, url string, p *proc.Proc) error {
	wait := 60 * time.Second
	if e.readyWait > 0 {
		wait = e.readyWait
	}
	return p.WaitHTTP(ctx, e.client, url, wait)
}

func (e *benchEnv) close() {
	e.stopGateways()
	e.upstream.Stop()
	e.sessiond.Stop()
	if e.pool != nil {
		e.pool.Close()
	}
	for _, l := range e.leaves {
		l.proc.Stop()
	}
	e.natsProc.Stop()
	if e.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = e.pg.Stop(ctx)
		cancel()
	}
	if !e.keep {
		_ = os.RemoveAll(e.dir)
	}
}

// call makes a JSON request to sessiond.
func (e *benchEnv) call(ctx context.Context, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, e.api+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// check asks a gateway's forward-auth endpoint about a token.
func (e *benchEnv) check(ctx context.Context, g *gateway, token string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", g.control+"/v1/check", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// fixture is a batch of live sessions with signed access tokens.
type fixture struct {
	org      string
	users    []string
	sessions []string
	tokens   []string
}

// makeSessions creates users x perUser live sessions directly in
// PostgreSQL and signs an access token for each with sessiond's own key:
// logging in a hundred thousand times would only measure argon2id.
func (e *benchEnv) makeSessions(ctx context.Context, users, perUser int) (*fixture, error) {
	f := &fixture{org: uuid.NewString()}
	// Org names are unique (case-insensitively): one per batch.
	if _, err := e.pool.Exec(ctx, "INSERT INTO orgs (id, name) VALUES ($1, $2)", f.org, "bench-"+f.org[:8]); err != nil {
		return nil, err
	}
	for i := 0; i < users; i++ {
		f.users = append(f.users, uuid.NewString())
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO users (id, org_id, email, role)
		SELECT u, $2, 'bench-' || u::text || '@example.com', 'user' FROM unnest($1::uuid[]) AS u`, f.users, f.org); err != nil {
		return nil, err
	}
	rows, err := e.pool.Query(ctx, `INSERT INTO sessions (id, user_id, org_id, device_type, user_agent, ip, last_active_at, expires_at)
		SELECT gen_random_uuid(), u, $2, 'web', 'revokebench', '127.0.0.1', now() - random() * interval '1 day', now() + interval '30 days'
		FROM unnest($1::uuid[]) AS u, generate_series(1, $3)
		RETURNING id, user_id`, f.users, f.org, perUser)
	if err != nil {
		return nil, err
	}
	ks := e.keys.Current()
	signer := tokens.Signer{Issuer: issuer, Audience: "api"}
	now := time.Now()
	for rows.Next() {
		var sid, uid string
		if err := rows.Scan(&sid, &uid); err != nil {
			return nil, err
		}
		tok, _, err := signer.Sign(ks, tokens.Grant{Subject: uid, SessionID: sid, Org: f.org, Role: "user", Now: now, TTL: 5 * time.Minute, ID: uuid.NewString()})
		if err != nil {
			return nil, err
		}
		f.sessions, f.tokens = append(f.sessions, sid), append(f.tokens, tok)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(f.tokens) == 0 {
		return nil, errors.New("no sessions created")
	}
	return f, nil
}

// warm presents each token twice at every gateway, as a client in use
// would: a gateway caches a token's verification from its second use on
// (the first only passes the doorkeeper).
func (e *benchEnv) warm(ctx context.Context, toks []string) error {
	for _, g := range slices.Concat(e.gateways, e.gateways) {
		errs := parallel(ctx, len(toks), 16, func(i int) error {
			code, err := e.check(ctx, g, toks[i])
			if err == nil && code != 200 {
				err = fmt.Errorf("gateway refused a fresh token: %d", code)
			}
			return err
		})
		if errs != nil {
			return errs
		}
	}
	return nil
}

func machine() map[string]string {
	m := map[string]string{"go": runtime.Version(), "cpus": fmt.Sprint(runtime.NumCPU()), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return m
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// reportsHeard is sessiond's count of gateway reports (its metrics).
func (e *benchEnv) reportsHeard(ctx context.Context) float64 {
	req, _ := http.NewRequestWithContext(ctx, "GET", e.api+"/metrics", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "sessiond_gateway_reports_total "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
