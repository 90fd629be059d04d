package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
)

// Tests for the holes of the security review of 2026-12-01 that the gateway
// owns: a quiet stream, identity headers through the proxy, events from the
// far future, and a leeway that outlives the blocklist.

// TestQuietStreamIsCurrent: when every message of REVOCATIONS has left the
// stream (its last sequence is above zero, it holds none), a gateway that
// starts is ready and stays current past its staleness bound.
func TestQuietStreamIsCurrent(t *testing.T) {
	t.Parallel()
	const staleness = 500 * time.Millisecond
	w := newWorld(t, staleness)
	for i := 0; i < 3; i++ {
		w.publish(revokeSession(newGrant()))
	}
	// Purging leaves the stream as aging out does: no messages, last
	// sequence 3.
	stream, err := w.js.Stream(t.Context(), events.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(t.Context()); err != nil || info.State.Msgs != 0 || info.State.LastSeq != 3 {
		t.Fatalf("stream state %+v %v, want empty with last sequence 3", info.State, err)
	}
	w.start()
	w.waitReady()
	tok := w.is.sign(t, newGrant())
	// Four staleness bounds later the gateway still decides.
	deadline := time.Now().Add(4 * staleness)
	for time.Now().Before(deadline) {
		if d := w.decide(tok); d.Outcome != Allow {
			t.Fatalf("a gateway on a quiet stream answered %v (%s)", d.Outcome, d.Reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// and a revocation published now still reaches it
	g := newGrant()
	revoked := w.is.sign(t, g)
	w.publish(revokeSession(g))
	w.waitDenied(revoked)
}

// TestProxyDeliversExactlyTheIdentityHeaders: whatever a client sends, the
// upstream receives exactly the four X-Auth-* headers the gateway sets, and
// nothing an upstream could read as one of them.
func TestProxyDeliversExactlyTheIdentityHeaders(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	seen := make(chan http.Header, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		rw.WriteHeader(200)
	}))
	defer upstream.Close()
	u, _ := urlParse(upstream.URL)
	proxy := httptest.NewServer(w.gw.Proxy(u, NewTransport(), testLog()))
	defer proxy.Close()
	g := newGrant()
	tok := w.is.sign(t, g)

	for name, extra := range map[string]string{
		"Connection names the identity headers": "Connection: keep-alive, X-Auth-User, X-Auth-Role, X-Auth-Org, X-Auth-Session\r\n",
		"underscore spellings":                  "X_Auth_Role: global_admin\r\nx_auth_user: someone-else\r\nX-AUTH_ORG: other\r\nX_AUTH_SESSION: s\r\n",
		"forged headers":                        "X-Auth-User: forged\r\nX-Auth-Role: global_admin\r\nx-auth-org: other\r\n",
		"all of it at once":                     "Connection: X-Auth-User\r\nX_Auth_Role: global_admin\r\nX-Auth-Role: global_admin\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			// A raw request: Go's client would not send these headers as written.
			conn, err := net.Dial("tcp", strings.TrimPrefix(proxy.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /orders HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer %s\r\n%s\r\n", tok, extra)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			h := <-seen
			want := map[string]string{HeaderUser: g.sub, HeaderOrg: g.org, HeaderSession: g.sid, HeaderRole: "user"}
			for k, v := range want {
				if got := h.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s: upstream got %q, want exactly %q", k, got, v)
				}
			}
			for k := range h {
				if isIdentityHeader(k) && want[k] == "" {
					t.Errorf("upstream got %s: %q, which reads as an identity header", k, h.Values(k))
				}
			}
		})
	}
}

func TestIdentityHeaderNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"X-Auth-User": true, "x-auth-user": true, "X_Auth_User": true, "X_AUTH_ROLE": true, "x-auth_org": true, "X-Auth-Session": true,
		"X-Auth-Users": false, "X-Auth": false, "X-Auth-Token": false, "Authorization": false, "XAuthUser-": false,
	} {
		if got := isIdentityHeader(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

// TestFarFutureEventsAreBounded: an event whose expires_at lies far beyond
// the longest token life applies only until its message leaves the stream
// (revoked_at plus the stream's max age), at a gateway that saw it live and
// at one that replayed it alike.
func TestFarFutureEventsAreBounded(t *testing.T) {
	t.Parallel()
	const maxAge = 3 * time.Second
	w := &world{t: t, is: newIssuer(t), nats: testenv.StartNATS(t), stale: 10 * time.Second}
	var err error
	if w.nc, err = natsx.Connect(w.nats.URL(), "test-publisher", testLog()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.nc.Close)
	w.js, _ = jetstream.New(w.nc)
	cfg := natsx.StreamConfig(events.Stream{Name: events.StreamRevocations, Subjects: []string{"revocations.v1.>"}, MaxAge: maxAge}, 1)
	cfg.Duplicates = time.Second // at most the max age
	if _, err := w.js.CreateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	w.start()
	w.waitReady()
	live := w.gw
	liveBL := w.bl

	g := newGrant()
	tok := w.is.sign(t, g)
	now := time.Now().UTC()
	far := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	w.publish(events.UserRevoked{EventID: uuid.NewString(), Sub: g.sub, Org: g.org, NotBefore: now.Add(time.Second), Reason: events.ReasonUserDisabled, RevokedAt: now, ExpiresAt: far})
	w.waitDenied(tok)
	if n := counterValue(t, w.feed.metrics.clamped); n != 1 {
		t.Fatalf("clamped events %v, want 1", n)
	}
	// A second gateway replays the same message and holds the same entry.
	other := &world{t: t, is: w.is, nats: w.nats, nc: w.nc, js: w.js, stale: w.stale}
	other.start()
	other.waitReady()
	sub, _ := ParseID(g.sub)
	entry := func(bl *Blocklist) userEntry {
		s := bl.shard(sub)
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.users[sub]
	}
	want := now.Add(maxAge).UnixNano()
	if e1, e2 := entry(liveBL), entry(other.bl); e1.expires != want || e2.expires != want {
		t.Fatalf("entry expires at %d (live) and %d (replayed), want both %d: revoked_at plus the stream's max age", e1.expires, e2.expires, want)
	}
	if d := other.decide(tok); d.Outcome != Deny {
		t.Fatalf("the replaying gateway accepts the token: %v", d.Outcome)
	}
	// Once the bound has passed, both accept the token again (the user was
	// not locked out until 2200), and a sweep leaves no entry behind.
	testenv.Eventually(t, 10*time.Second, func() bool {
		return live.Decide(context.Background(), "Bearer "+tok, time.Now()).Outcome == Allow
	}, "the far-future revocation still applies after its bound")
	liveBL.Sweep(time.Now())
	if liveBL.Len() != 0 {
		t.Fatalf("%d entries left after the sweep", liveBL.Len())
	}
}

func TestBoundClampsOnlyBeyondTheStreamsMaxAge(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	maxAge := 6 * time.Minute
	for _, tc := range []struct {
		name                  string
		revoked, pub, expires time.Time
		want                  time.Time
		clamped               bool
	}{
		{"an ordinary revocation", now, now.Add(time.Millisecond), now.Add(maxAge), now.Add(maxAge), false},
		{"published late (NATS was down)", now, now.Add(time.Hour), now.Add(maxAge), now.Add(maxAge), false},
		{"expires in 2200", now, now, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), now.Add(maxAge), true},
		{"revoked_at in the future too", now.Add(100 * 365 * 24 * time.Hour), now, now.Add(200 * 365 * 24 * time.Hour), now.Add(maxAge), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := events.SessionRevoked{EventID: uuid.NewString(), SID: uuid.NewString(), Sub: uuid.NewString(), Org: uuid.NewString(),
				Reason: events.ReasonAdminRevoke, RevokedAt: tc.revoked, ExpiresAt: tc.expires}
			got, clamped := bound(ev, tc.pub, maxAge)
			if clamped != tc.clamped || !got.(events.SessionRevoked).ExpiresAt.Equal(tc.want) {
				t.Fatalf("expires %v clamped %v, want %v %v", got.(events.SessionRevoked).ExpiresAt, clamped, tc.want, tc.clamped)
			}
		})
	}
}

// TestAJWKSURLThatIsNoURLIsRefused: gatewayd says so at start, instead of
// failing every key fetch later.
func TestAJWKSURLThatIsNoURLIsRefused(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"notaurl", "sessiond:8080/jwks", "ftp://x/jwks"} {
		env := map[string]string{"JWKS_URL": bad, "NATS_URL": "nats://x", "GATEWAY_UPSTREAM": "http://x"}
		if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "JWKS_URL: ") {
			t.Errorf("JWKS_URL=%s: %v", bad, err)
		}
	}
}

func TestLeewayBeyondTheRevocationLeewayIsRefused(t *testing.T) {
	t.Parallel()
	env := map[string]string{"JWKS_URL": "http://x/jwks", "NATS_URL": "nats://x", "GATEWAY_UPSTREAM": "http://x", "TOKEN_LEEWAY": "2m"}
	_, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "TOKEN_LEEWAY (2m0s) must not exceed the revocation leeway (1m0s)") {
		t.Fatalf("error %v", err)
	}
	env["TOKEN_LEEWAY"] = "1m"
	if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatalf("a leeway equal to the revocation leeway is refused: %v", err)
	}
	if _, err := Start(t.Context(), Config{JWKSURL: "http://x", Leeway: 90 * time.Second}, nil, nil, testLog()); err == nil || !strings.Contains(err.Error(), "TOKEN_LEEWAY") {
		t.Fatalf("Start with a 90s leeway: %v", err)
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
