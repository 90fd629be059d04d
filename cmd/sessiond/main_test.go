package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRunServesAndShutsDown(t *testing.T) {
	dbURL := testenv.DatabaseURL(t)
	pool, err := postgres.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	addr := freeAddr(t)
	env := map[string]string{
		"DATABASE_URL":             dbURL,
		"NATS_URL":                 testenv.NATS(t),
		"SESSIOND_ADDR":            addr,
		"KEY_ENCRYPTION_KEY":       base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		"BOOTSTRAP_ADMIN_EMAIL":    "boot@example.com",
		"BOOTSTRAP_ADMIN_PASSWORD": "boot-password",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"sessiond"}, func(k string) string { return env[k] }, &out, &out) }()

	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "sessiond never became ready; log:\n%s", out.String())
	// The container healthcheck: the binary asks its own /readyz.
	if err := run(ctx, []string{"sessiond", "healthcheck"}, func(k string) string { return env[k] }, io.Discard, io.Discard); err != nil {
		t.Fatalf("healthcheck of a ready sessiond: %v", err)
	}
	if err := run(ctx, []string{"sessiond", "healthcheck"}, func(k string) string { return map[string]string{"SESSIOND_ADDR": freeAddr(t)}[k] }, io.Discard, io.Discard); err == nil {
		t.Fatal("the healthcheck passes where nothing listens")
	}

	var login struct {
		AccessToken string `json:"access_token"`
		SessionID   string `json:"session_id"`
	}
	resp, err := http.Post("http://"+addr+"/v1/auth/login", "application/json", strings.NewReader(`{"email":"boot@example.com","password":"boot-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bootstrap admin login: %d", resp.StatusCode)
	}

	// A subscriber with a few lines of nats.go sees the contract's event
	// for a revocation made through the API.
	nc, err := nats.Connect(env["NATS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 10)
	sub, err := nc.ChanSubscribe("revocations.v1.>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil { // the server knows the subscription before the logout
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+login.AccessToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("logout: %v %v", resp, err)
	}
	select {
	case m := <-msgs:
		ev, err := events.Decode(m.Subject, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		sr, ok := ev.(events.SessionRevoked)
		if !ok || sr.SID != login.SessionID || sr.Reason != events.ReasonLogout || m.Header.Get("Nats-Msg-Id") != sr.EventID {
			t.Fatalf("unexpected event %s %+v (msg id %q)", m.Subject, ev, m.Header.Get("Nats-Msg-Id"))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no revocation event on NATS")
	}
	js, _ := jetstream.New(nc)
	for _, name := range []string{"REVOCATIONS", "IDENTITY", "SESSIONS"} {
		if _, err := js.Stream(t.Context(), name); err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
	}

	// The relay marks the row sent just after the ack, so poll.
	var metrics, missing string
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		metrics = b.String()
		for _, m := range []string{`sessiond_logins_total{result="success"} 1`, `sessiond_http_requests_total{code="200",method="POST",route="/v1/auth/login"} 1`,
			`outbox_published_total{subject="revocations.v1.session"} 1`, "outbox_depth 0", "outbox_commit_to_ack_seconds_bucket",
			// Series an alert needs exist before their first event.
			`sessiond_logins_total{result="rate_limited"} 0`, `sessiond_outbox_errors_total{kind="publish"} 0`,
			`sessiond_outbox_published_total{subject="signals.v1.org.*.sessions"} 0`, `sessiond_gateways{state="failing_closed"} 0`,
			`sessiond_erasure_requests_total{result="parked"} 0`, `sessiond_sessions_revoked_total{reason="erasure"} 0`,
			`sessiond_refreshes_total{result="reuse"} 0`, `sessiond_receipts_total{status="expired"} 0`, `sessiond_build_info{goversion="go`, `sessiond_retention_purged_total{kind="sessions"} 0`} {
			if !strings.Contains(metrics, m) {
				missing = m
				return false
			}
		}
		return true
	}, "metrics lack %s", lazy(func() string { return missing + " in:\n" + metrics }))
	// Every metric of sessiond's own carries its prefix; only the Go
	// runtime's and the process's come from the Prometheus client as they are.
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			name := strings.Fields(line)[2]
			if !strings.HasPrefix(name, "sessiond_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
				t.Errorf("metric %s lacks the sessiond_ prefix", name)
			}
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(out.String(), `"msg":"sessiond shutting down"`) {
		t.Fatalf("no shutdown log line:\n%s", out.String())
	}
}

func TestRunRefusesIncompleteConfiguration(t *testing.T) {
	err := run(context.Background(), []string{"sessiond"}, func(k string) string {
		return map[string]string{"ACCESS_TOKEN_TTL": "soon", "LOGIN_RATE_LIMIT": "ten", "LOG_LEVEL": "verbose"}[k]
	}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("run accepted an empty configuration")
	}
	for _, want := range []string{"DATABASE_URL is required", "NATS_URL is required", "KEY_ENCRYPTION_KEY is required", "ACCESS_TOKEN_TTL", "LOGIN_RATE_LIMIT", `LOG_LEVEL: "verbose" is not a log level`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestRunRefusesPendingMigrations(t *testing.T) {
	// a database without the schema: production must run `revokectl migrate` first
	dbURL := testenv.DatabaseURL(t)
	pool, err := postgres.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), "DELETE FROM goose_db_version WHERE version_id > 0"); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	env := map[string]string{
		"DATABASE_URL": dbURL, "NATS_URL": "nats://127.0.0.1:1", "SESSIOND_ADDR": freeAddr(t),
		"KEY_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
	}
	err = run(t.Context(), []string{"sessiond"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "revokectl migrate") {
		t.Fatalf("run with pending migrations: %v", err)
	}
}

// lazy is a message argument computed when the message is printed.
type lazy func() string

func (l lazy) String() string { return l() }

// TestAnUnreachableNATSIsNamed: sessiond started while NATS cannot be
// reached says, in its log, which address it tries and why it fails, not
// only that a deadline passed.
func TestAnUnreachableNATSIsNamed(t *testing.T) {
	natsAddr := freeAddr(t) // nothing listens there
	env := map[string]string{
		"DATABASE_URL": testenv.DatabaseURL(t), "NATS_URL": "nats://" + natsAddr, "SESSIOND_ADDR": freeAddr(t),
		"KEY_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"sessiond"}, func(k string) string { return env[k] }, &out, &out) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 15*time.Second, func() bool {
		return strings.Contains(out.String(), "not connected to nats://"+natsAddr) && strings.Contains(out.String(), "connection refused")
	}, "no log line names the NATS address and the failure:\n%s", lazy(out.String))
}
