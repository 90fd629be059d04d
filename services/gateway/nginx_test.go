package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionguard/revoke/internal/testenv"
)

// nginxBinary returns the path of an nginx binary, or "" when there is none.
func nginxBinary() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if fi, err := os.Stat("/usr/sbin/nginx"); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return "/usr/sbin/nginx"
	}
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int { return testenv.FreePort(t) }

// nginxConf is an nginx configuration that keeps every file it writes in
// dir, listens on 127.0.0.1:port, asks the gateway's forward-auth endpoint
// about each request (auth_request) and passes allowed ones to the upstream
// with the X-Auth-* headers from the gateway's answer, replacing any that the
// client sent.
func nginxConf(dir string, port int, checkAddr, upstreamAddr string) string {
	user := ""
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody and could not use dir.
		user = "user root;\n"
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	return fmt.Sprintf(`%sdaemon off;
master_process on;
worker_processes 1;
pid %s;
error_log %s info;

events {
    worker_connections 64;
}

http {
    access_log %s;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;

    server {
        listen 127.0.0.1:%d;

        location / {
            auth_request /_auth;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            auth_request_set $auth_org $upstream_http_x_auth_org;
            auth_request_set $auth_session $upstream_http_x_auth_session;
            auth_request_set $auth_role $upstream_http_x_auth_role;
            proxy_set_header X-Auth-User $auth_user;
            proxy_set_header X-Auth-Org $auth_org;
            proxy_set_header X-Auth-Session $auth_session;
            proxy_set_header X-Auth-Role $auth_role;
            proxy_pass http://%s;
        }

        location = /_auth {
            internal;
            proxy_pass http://%s/v1/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization $http_authorization;
        }
    }
}
`, user, p("nginx.pid"), p("error.log"), p("access.log"),
		p("client_body"), p("proxy"), p("fastcgi"), p("uwsgi"), p("scgi"),
		port, upstreamAddr, checkAddr)
}

// startNginx runs nginx with conf (a function of the listen port) in dir
// until t ends, and returns its base URL once it accepts connections.
func startNginx(t *testing.T, bin, dir string, conf func(port int) string) string {
	t.Helper()
	confPath := filepath.Join(dir, "nginx.conf")
	errLog := filepath.Join(dir, "error.log")
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		if err := os.WriteFile(confPath, []byte(conf(port)), 0o600); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		cmd := exec.Command(bin, "-p", dir+"/", "-c", confPath, "-e", errLog)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start nginx: %v", err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(exited) }()
		pid := cmd.Process.Pid
		t.Cleanup(func() {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // master and workers
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Errorf("nginx (pid %d) did not exit after SIGKILL", pid)
			}
		})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		testenv.Eventually(t, 15*time.Second, func() bool {
			select {
			case <-exited:
				return true
			default:
			}
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err != nil {
				return false
			}
			_ = c.Close()
			return true
		}, "nginx never listened on %s", addr)
		select {
		case <-exited:
			logs, _ := os.ReadFile(errLog)
			if attempt < 3 && strings.Contains(string(logs)+out.String(), "Address already in use") {
				continue // another test took the port in between; try another
			}
			t.Fatalf("nginx exited: %v\noutput:\n%s\nerror.log:\n%s", waitErr, out.String(), logs)
		default:
		}
		return "http://" + addr
	}
}

// TestNginxAuthRequest puts a real NGINX in front of an upstream, with
// auth_request to the gateway's forward-auth endpoint.
func TestNginxAuthRequest(t *testing.T) {
	t.Parallel()
	bin := nginxBinary()
	if bin == "" {
		t.Skip("nginx not found in PATH or at /usr/sbin/nginx; install it (apt-get install nginx-light) to run this test")
	}
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/check", w.gw.Check)
	control := httptest.NewServer(mux)
	t.Cleanup(control.Close)

	var (
		mu    sync.Mutex
		calls int
		seen  http.Header
	)
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		seen = r.Header.Clone()
		mu.Unlock()
		rw.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(upstream.Close)
	// reset forgets what the upstream saw; upstreamSaw reports it.
	reset := func() {
		mu.Lock()
		defer mu.Unlock()
		calls, seen = 0, nil
	}
	upstreamSaw := func() (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		return calls, seen
	}

	dir := t.TempDir()
	checkAddr := strings.TrimPrefix(control.URL, "http://")
	upstreamAddr := strings.TrimPrefix(upstream.URL, "http://")
	base := startNginx(t, bin, dir, func(port int) string { return nginxConf(dir, port, checkAddr, upstreamAddr) })

	client := &http.Client{Timeout: 10 * time.Second}
	get := func(authorization string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", base+"/anything?x=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		// Forged identity headers: nginx must replace them.
		req.Header.Set("X-Auth-User", "forged")
		req.Header.Set("X-Auth-Org", "forged-org")
		req.Header.Set("X-Auth-Session", "forged-session")
		req.Header.Set("X-Auth-Role", "global_admin")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	expectDenied := func(what, authorization string) {
		t.Helper()
		reset()
		resp := get(authorization)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401", what, resp.StatusCode)
		}
		if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer error="invalid_token"`) {
			t.Fatalf("%s: WWW-Authenticate %q", what, h)
		}
		if n, h := upstreamSaw(); n != 0 {
			t.Fatalf("%s: the upstream was called %d times, with %v", what, n, h)
		}
	}

	// (1) a valid token: through, with the gateway's identity headers only.
	g := newGrant()
	tok := w.is.sign(t, g)
	reset()
	if resp := get("Bearer " + tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("valid token: status %d, want 200", resp.StatusCode)
	}
	n, h := upstreamSaw()
	if n != 1 {
		t.Fatalf("valid token: the upstream was called %d times, want 1", n)
	}
	for k, want := range map[string]string{HeaderUser: g.sub, HeaderOrg: g.org, HeaderSession: g.sid, HeaderRole: "user"} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream saw %s = %q, want [%q]", k, got, want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// (2) no token, (3) a garbage token: refused before the upstream.
	expectDenied("no token", "")
	expectDenied("garbage token", "Bearer garbage")

	// (4) revoked through NATS: the same token is refused.
	w.publish(revokeSession(g))
	w.waitDenied(tok)
	expectDenied("revoked token", "Bearer "+tok)
}
