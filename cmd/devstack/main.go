// Command devstack runs the whole system in one process for development: a
// private PostgreSQL (when DATABASE_URL is unset), an embedded NATS
// JetStream server (when NATS_URL is unset), the migrations, a bootstrap
// global admin, and sessiond. It prints a short curl walkthrough at start.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/sessionguard/revoke/services/sessions/sessiond"

	"github.com/sessionguard/revoke/internal/demo"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/pgserver"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/services/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		return fmt.Errorf("unexpected arguments %q: devstack is configured by environment variables (see the README)", args[1:])
	}
	dir := getenv("DEVSTACK_DIR")
	if dir == "" {
		dir = ".devstack"
	}
	// 0755: when run as root the private PostgreSQL runs as another user,
	// which must be able to reach its own directory inside this one.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	logFile, err := os.OpenFile(filepath.Join(dir, "devstack.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// JSON logs go to the log file and to stderr; the walkthrough to stdout.
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(logFile, stderr), nil))
	env := map[string]string{}
	lookup := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return getenv(k)
	}

	if getenv("DATABASE_URL") == "" {
		fmt.Fprintln(stdout, "starting a private PostgreSQL in", filepath.Join(dir, "pg"), "(Unix socket only; port 5432 is left alone)")
		pg, err := pgserver.Start(ctx, filepath.Join(dir, "pg"), pgserver.Options{})
		if err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := pg.Stop(stopCtx); err != nil {
				log.Error("stopping PostgreSQL", "error", err.Error())
			}
		}()
		if err := postgres.CreateDatabase(ctx, pg.URL("postgres"), "revoke", "", true); err != nil {
			return err
		}
		env["DATABASE_URL"] = pg.URL("revoke")
	}
	if getenv("NATS_URL") == "" {
		ns, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: -1, StoreDir: filepath.Join(dir, "nats")})
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		env["NATS_URL"] = ns.ClientURL()
	}
	if getenv("KEY_ENCRYPTION_KEY") == "" {
		kek, err := readOrCreate(filepath.Join(dir, "key-encryption-key"), func() string {
			var b [32]byte
			_, _ = rand.Read(b[:])
			return base64.StdEncoding.EncodeToString(b[:])
		})
		if err != nil {
			return err
		}
		env["KEY_ENCRYPTION_KEY"] = kek
	}
	passwordRef := "$BOOTSTRAP_ADMIN_PASSWORD"
	if getenv("BOOTSTRAP_ADMIN_EMAIL") == "" {
		env["BOOTSTRAP_ADMIN_EMAIL"] = "admin@example.com"
		if getenv("BOOTSTRAP_ADMIN_PASSWORD") == "" {
			path := filepath.Join(dir, "admin-password")
			_, statErr := os.Stat(path)
			pw, err := readOrCreate(path, rand.Text)
			if err != nil {
				return err
			}
			env["BOOTSTRAP_ADMIN_PASSWORD"] = pw
			passwordRef = "$(cat " + path + ")"
			if errors.Is(statErr, os.ErrNotExist) {
				fmt.Fprintf(stdout, "generated the bootstrap admin's password (shown once, kept in %s): %s\n", path, pw)
			}
		}
	}
	if getenv("PORTAL_COOKIE_SECURE") == "" {
		// The dev stack serves plain http on localhost, where a browser
		// would not send Secure cookies back.
		env["PORTAL_COOKIE_SECURE"] = "false"
	}
	for _, k := range []string{"SSF_ALLOW_HTTP", "SSF_ALLOW_PRIVATE_NETWORKS"} {
		if getenv(k) == "" {
			// A Shared Signals receiver tried out beside the dev stack
			// listens on localhost, on plain http too.
			env[k] = "true"
		}
	}
	cfg, err := sessiond.ConfigFromEnv(lookup)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	cfg.Migrate = true
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("sessiond: listen on %s: %w (set SESSIOND_ADDR to use another address)", cfg.Addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- sessiond.Serve(ctx, cfg, ln, log.With("service", "sessiond")) }()

	base := "http://" + loopback(ln.Addr().String())
	if err := waitReady(ctx, base+"/readyz", errc); err != nil {
		return err
	}

	// The demo upstream, and gatewayd in front of it.
	upAddr := getenv("DEMO_UPSTREAM_ADDR")
	if upAddr == "" {
		upAddr = ":8082"
	}
	upLn, err := net.Listen("tcp", upAddr)
	if err != nil {
		return fmt.Errorf("demo upstream: listen on %s: %w (set DEMO_UPSTREAM_ADDR to use another address)", upAddr, err)
	}
	upstream := &http.Server{Handler: demo.Upstream(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upstream.Serve(upLn) }()
	defer upstream.Close()
	upURL := "http://" + loopback(upLn.Addr().String())
	if getenv("JWKS_URL") == "" {
		env["JWKS_URL"] = base + "/.well-known/jwks.json"
	}
	if getenv("GATEWAY_UPSTREAM") == "" {
		env["GATEWAY_UPSTREAM"] = upURL
	}
	if getenv("ISSUER") == "" {
		env["ISSUER"] = cfg.Service.Issuer
	}
	gcfg, err := gateway.ConfigFromEnv(lookup)
	if err != nil {
		return fmt.Errorf("gateway configuration:\n%w", err)
	}
	var lns gateway.Listeners
	if lns.Proxy, err = net.Listen("tcp", gcfg.Addr); err != nil {
		return fmt.Errorf("gatewayd: listen on %s: %w (set GATEWAY_ADDR to use another address)", gcfg.Addr, err)
	}
	if lns.Control, err = net.Listen("tcp", gcfg.ControlAddr); err != nil {
		return fmt.Errorf("gatewayd: listen on %s: %w (set GATEWAY_CONTROL_ADDR to use another address)", gcfg.ControlAddr, err)
	}
	gerrc := make(chan error, 1)
	go func() { gerrc <- gateway.Serve(ctx, gcfg, lns, log.With("service", "gatewayd")) }()
	gwBase := "http://" + loopback(lns.Proxy.Addr().String())
	ctlBase := "http://" + loopback(lns.Control.Addr().String())
	if err := waitReady(ctx, ctlBase+"/readyz", gerrc); err != nil {
		return err
	}
	fmt.Fprint(stdout, walkthrough(walk{Base: base, Gateway: gwBase, Control: ctlBase, Upstream: upURL,
		Email: cfg.BootstrapEmail, Password: passwordRef, NATS: cfg.NATSURL, DB: cfg.DatabaseURL}))

	select {
	case err := <-errc:
		cancel()
		<-gerrc
		return err
	case err := <-gerrc:
		cancel()
		<-errc
		return err
	case <-ctx.Done():
		return errors.Join(<-errc, <-gerrc)
	}
}

func readOrCreate(path string, make func() string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	v := make()
	return v, os.WriteFile(path, []byte(v+"\n"), 0o600)
}

func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func waitReady(ctx context.Context, url string, errc <-chan error) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

type walk struct {
	Base, Gateway, Control, Upstream, Email, Password, NATS, DB string
}

func walkthrough(w walk) string {
	var b strings.Builder
	_ = walkTemplate.Execute(&b, w)
	return b.String()
}

var walkTemplate = template.Must(template.New("walk").Parse(`
dev stack ready
  sessiond        {{.Base}}      (OpenAPI: {{.Base}}/openapi.json)
  admin portal    {{.Base}}/admin/      (sign in as {{.Email}}; your own sessions: {{.Base}}/account/sessions)
  gatewayd proxy  {{.Gateway}}      (forward-auth: {{.Control}}/v1/check)
  demo upstream   {{.Upstream}}
  NATS            {{.NATS}}

walkthrough (needs curl and jq):
  # 1. log in as the bootstrap admin
  TOKEN=$(curl -s {{.Base}}/v1/auth/login -H 'content-type: application/json' \
    -d '{"email":"{{.Email}}","password":"'"{{.Password}}"'","device":{"type":"web","name":"laptop"}}' | jq -r .access_token)
  # 2. a request through the gateway reaches the upstream with X-Auth-* headers
  curl -s {{.Gateway}}/hello -H "authorization: Bearer $TOKEN" | jq
  # 3. list the active sessions and revoke yours (the one marked current)
  curl -s {{.Base}}/v1/sessions -H "authorization: Bearer $TOKEN" | jq
  SID=$(curl -s {{.Base}}/v1/me/sessions -H "authorization: Bearer $TOKEN" | jq -r '.sessions[] | select(.current) | .id')
  curl -s -X DELETE {{.Base}}/v1/sessions/$SID -H "authorization: Bearer $TOKEN" -w '%{http_code}\n'
  # 4. the same token is now refused at the gateway, within milliseconds
  curl -s -i {{.Gateway}}/hello -H "authorization: Bearer $TOKEN" | head -5
  # 5. the revocation in the audit log
  psql '{{.DB}}' -c 'SELECT at, action, reason, session_id FROM audit_log ORDER BY id DESC LIMIT 5'

the operator's CLI (revokectl) on this stack's database:
  export DATABASE_URL='{{.DB}}'
  go run ./cmd/revokectl user list

press Ctrl-C to stop
`))
