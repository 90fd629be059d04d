package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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

	resp, err := http.Post("http://"+addr+"/v1/auth/login", "application/json", strings.NewReader(`{"email":"boot@example.com","password":"boot-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bootstrap admin login: %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`sessiond_logins_total{result="success"} 1`, `sessiond_http_requests_total{code="200",method="POST",route="/v1/auth/login"} 1`} {
		if !strings.Contains(metrics.String(), m) {
			t.Fatalf("metrics lack %q", m)
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
		return map[string]string{"ACCESS_TOKEN_TTL": "soon", "LOGIN_RATE_LIMIT": "ten"}[k]
	}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("run accepted an empty configuration")
	}
	for _, want := range []string{"DATABASE_URL is required", "NATS_URL is required", "KEY_ENCRYPTION_KEY is required", "ACCESS_TOKEN_TTL", "LOGIN_RATE_LIMIT"} {
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
