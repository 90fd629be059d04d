package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/testenv"
)

// TestProxyStreamsResponses: a server-sent event reaches the client before
// the upstream writes the next one.
func TestProxyStreamsResponses(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	next := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			_, _ = io.WriteString(rw, "data: tick\n\n")
			rw.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
	}))
	defer upstream.Close()
	u, _ := urlParse(upstream.URL)
	proxy := httptest.NewServer(w.gw.Proxy(u, NewTransport(), testLog()))
	defer proxy.Close()
	req, _ := http.NewRequest("GET", proxy.URL+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+w.is.sign(t, newGrant()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := rd.ReadString('\n')
		if err != nil || line != "data: tick\n" {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		_, _ = rd.ReadString('\n')
		next <- struct{}{} // the upstream writes the next event only now
	}
}

// TestProxyPassesWebSocketUpgrades: an upgraded connection carries bytes
// both ways; without a valid token the upgrade is refused.
func TestProxyPassesWebSocketUpgrades(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Auth-User") == "" {
			http.Error(rw, "want an authenticated upgrade", 400)
			return
		}
		conn, buf, err := rw.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = buf.Flush()
		line, _ := buf.ReadString('\n')
		_, _ = conn.Write([]byte("echo " + line))
	}))
	defer upstream.Close()
	u, _ := urlParse(upstream.URL)
	proxy := httptest.NewServer(w.gw.Proxy(u, NewTransport(), testLog()))
	defer proxy.Close()

	dial := func(token string) (net.Conn, *bufio.Reader, string) {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(proxy.URL, "http://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer "+token+"\r\n\r\n")
		rd := bufio.NewReader(conn)
		status, _ := rd.ReadString('\n')
		for {
			l, err := rd.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		return conn, rd, status
	}
	conn, rd, status := dial(w.is.sign(t, newGrant()))
	defer conn.Close()
	if !strings.Contains(status, "101") {
		t.Fatalf("upgrade answered %q", status)
	}
	_, _ = io.WriteString(conn, "hello\n")
	if got, _ := rd.ReadString('\n'); got != "echo hello\n" {
		t.Fatalf("read %q through the upgraded connection", got)
	}
	bad, _, status := dial("garbage")
	defer bad.Close()
	if !strings.Contains(status, "401") {
		t.Fatalf("upgrade without a valid token answered %q", status)
	}
}

// TestMiddlewareInAGoService embeds the gateway in a Go service with Start.
func TestMiddlewareInAGoService(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	nc, err := nats.Connect(w.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	g, err := Start(context.Background(), Config{JWKSURL: w.is.jwks.URL, MaxStaleness: 10 * time.Second, Issuer: testIssuer, Audience: testAudience, Leeway: 5 * time.Second},
		nc, prometheus.NewRegistry(), testLog())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	app := g.Middleware(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		id, ok := IdentityFrom(r.Context())
		if !ok || r.Header.Get(HeaderSession) != id.Session {
			t.Error("identity missing from the request")
		}
		_, _ = io.WriteString(rw, id.Subject)
	}))
	srv := httptest.NewServer(app)
	defer srv.Close()
	gr := newGrant()
	tok := w.is.sign(t, gr)
	get := func() (int, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { code, _ := get(); return code == 200 }, "middleware never let a valid token through")
	if _, body := get(); body != gr.sub {
		t.Fatalf("handler saw %q", body)
	}
	w.publish(revokeSession(gr))
	testenv.Eventually(t, 10*time.Second, func() bool { code, _ := get(); return code == 401 }, "middleware never refused the revoked token")
}
