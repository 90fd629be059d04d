package gateway

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/internal/tokens"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	testIssuer   = "http://sessiond.test"
	testAudience = "api"
)

func testLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// issuer plays sessiond's part for the gateway: it signs tokens and serves
// the JWKS.
type issuer struct {
	key  tokens.Key
	ks   *tokens.KeySet
	jwks *httptest.Server
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	key, err := tokens.NewKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := tokens.NewKeySet([]tokens.Key{key})
	is := &issuer{key: key, ks: ks}
	is.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(is.ks.JWKS())
	}))
	t.Cleanup(is.jwks.Close)
	return is
}

type grant struct {
	sub, sid, org, jti string
	iat                time.Time
	authTime           time.Time // zero: no auth_time
	role               string    // "": user
}

func newGrant() grant {
	return grant{sub: uuid.NewString(), sid: uuid.NewString(), org: uuid.NewString(), jti: uuid.NewString(), iat: time.Now()}
}

func (is *issuer) sign(t testing.TB, g grant) string {
	t.Helper()
	role := g.role
	if role == "" {
		role = tokens.RoleUser
	}
	tok, _, err := tokens.Signer{Issuer: testIssuer, Audience: testAudience}.Sign(is.ks, tokens.Grant{
		Subject: g.sub, SessionID: g.sid, Org: g.org, Role: role, Now: g.iat, AuthTime: g.authTime, TTL: 5 * time.Minute, ID: g.jti,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// world is a gateway wired to a real NATS JetStream server.
type world struct {
	t     testing.TB
	is    *issuer
	nats  *testenv.NATSServer
	nc    *nats.Conn
	js    jetstream.JetStream
	bl    *Blocklist
	feed  *Feed
	gw    *Gateway
	keys  *KeySource
	stop  context.CancelFunc
	done  chan struct{}
	stale time.Duration
}

func newWorld(t testing.TB, staleness time.Duration) *world {
	t.Helper()
	w := &world{t: t, is: newIssuer(t), nats: testenv.StartNATS(t), stale: staleness}
	var err error
	if w.nc, err = natsx.Connect(w.nats.URL(), "test-publisher", testLog()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.nc.Close)
	w.js, _ = jetstream.New(w.nc)
	if err := natsx.EnsureStreams(context.Background(), w.js, 1, events.RevocationsStream(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	return w
}

// start (re)starts the gateway process: a fresh blocklist and feed.
func (w *world) start() {
	w.t.Helper()
	w.stopGateway()
	nc, err := natsx.Connect(w.nats.URL(), "gateway", testLog())
	if err != nil {
		w.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	m := NewMetrics(prometheus.NewRegistry())
	w.keys = NewKeySource(w.is.jwks.URL, http.DefaultClient, 100*time.Millisecond, testLog())
	if err := w.keys.Fetch(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	v, err := NewVerifier(w.keys, testIssuer, testAudience, 5*time.Second, 1<<16)
	if err != nil {
		w.t.Fatal(err)
	}
	w.bl = NewBlocklist()
	w.feed = NewFeed(js, w.bl, w.stale, m, testLog())
	w.gw = New(v, w.bl, w.feed, nil, m, testLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.feed.Run(ctx) }()
	w.stop = func() { cancel(); <-done; v.Close(); nc.Close() }
	w.done = done
	w.t.Cleanup(w.stopGateway)
}

func (w *world) stopGateway() {
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

func (w *world) waitReady() {
	w.t.Helper()
	testenv.Eventually(w.t, 10*time.Second, func() bool { return w.feed.Current() }, "gateway never became current")
}

func (w *world) decide(tok string) Decision {
	return w.gw.Decide(context.Background(), "Bearer "+tok, time.Now())
}

// publish sends a revocation event as sessiond's relay would.
func (w *world) publish(ev events.Event) { w.t.Helper(); w.publishWith(ev, nil) }

// publishWith publishes ev with headers.
func (w *world) publishWith(ev events.Event, header nats.Header) {
	w.t.Helper()
	data, err := events.Encode(ev)
	if err != nil {
		w.t.Fatal(err)
	}
	msg := nats.NewMsg(ev.Subject())
	msg.Data = data
	for k, v := range header {
		msg.Header[k] = v
	}
	if _, err := w.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(ev.ID())); err != nil {
		w.t.Fatal(err)
	}
}

func revokeSession(g grant) events.SessionRevoked {
	now := time.Now().UTC()
	return events.SessionRevoked{EventID: uuid.NewString(), SID: g.sid, Sub: g.sub, Org: g.org, Reason: events.ReasonAdminRevoke, RevokedAt: now, ExpiresAt: now.Add(6 * time.Minute)}
}

func (w *world) waitDenied(tok string) {
	w.t.Helper()
	testenv.Eventually(w.t, 10*time.Second, func() bool { return w.decide(tok).Outcome == Deny }, "token never refused")
}

func urlParse(s string) (*url.URL, error) { return url.Parse(s) }

func b64decode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
