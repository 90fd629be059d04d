// Package testenv gives tests real infrastructure: a PostgreSQL database of
// their own (on DATABASE_URL's server when set, else on a private server that
// this process starts) and an embedded NATS JetStream server. Everything is
// cleaned up with t.Cleanup, so tests may run in parallel.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/pgserver"
	"github.com/sessionguard/revoke/internal/postgres"
)

var (
	once     sync.Once
	onceErr  error
	pgServer *pgserver.Server
	adminURL string // a URL whose database may be replaced per test
	template string
)

// Main runs the tests of a package and stops the private PostgreSQL server,
// if one was started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if pgServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = pgServer.Stop(ctx)
		cancel()
		_ = os.RemoveAll(pgServer.Dir())
	}
	os.Exit(code)
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adminURL = os.Getenv("DATABASE_URL")
	if adminURL == "" {
		dir, err := os.MkdirTemp("", "revoke-pg-")
		if err != nil {
			return err
		}
		// fsync is off for speed, unless REVOKE_TEST_PG_FSYNC=on (benchmarks
		// that must measure durable commits).
		durable := os.Getenv("REVOKE_TEST_PG_FSYNC") == "on"
		pgServer, err = pgserver.Start(ctx, dir, pgserver.Options{NoSync: !durable})
		if err != nil {
			_ = os.RemoveAll(dir)
			return err
		}
		adminURL = pgServer.URL("postgres")
	}
	template = "revoke_tmpl_" + randomName()
	if err := postgres.CreateDatabase(ctx, adminURL, template, "", false); err != nil {
		return fmt.Errorf("testenv: template: %w", err)
	}
	pool, err := postgres.Connect(ctx, withDatabase(adminURL, template))
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return err
	}
	return nil
}

// DatabaseURL creates a fresh, migrated database for t and returns its URL.
// The database is dropped when t ends.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	return database(t, true)
}

// EmptyDatabaseURL creates a fresh database without the schema (no
// migration applied) for t and returns its URL; dropped when t ends.
func EmptyDatabaseURL(t testing.TB) string {
	t.Helper()
	return database(t, false)
}

// database creates a fresh database for t, migrated or not.
func database(t testing.TB, migrated bool) string {
	t.Helper()
	once.Do(func() { onceErr = setup() })
	if onceErr != nil {
		t.Fatalf("testenv: PostgreSQL: %v", onceErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "revoke_t_" + randomName()
	from := "" // template1, empty
	if migrated {
		from = template
	}
	if err := postgres.CreateDatabase(ctx, adminURL, name, from, false); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, adminURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	return withDatabase(adminURL, name)
}

// Postgres returns a pool on a fresh, migrated database of t's own.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := DatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := postgres.Connect(ctx, u)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func withDatabase(raw, db string) string {
	if u, err := url.Parse(raw); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + db
		return u.String()
	}
	// keyword/value form
	var parts []string
	for _, f := range strings.Fields(raw) {
		if !strings.HasPrefix(f, "dbname=") {
			parts = append(parts, f)
		}
	}
	return strings.Join(append(parts, "dbname="+db), " ")
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Eventually polls cond every few milliseconds until it returns true or the
// timeout passes, then fails t with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// NATS starts an embedded NATS JetStream server for t on a free port and
// returns its client URL. It shuts down when t ends.
func NATS(t testing.TB) string {
	t.Helper()
	return StartNATS(t).URL()
}

// JetStream connects to the NATS server at url for t (a test client: it
// reconnects for ever and logs nothing) and returns the connection and its
// JetStream context. The connection closes when t ends.
func JetStream(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := natsx.Connect(url, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// NATSServer is an embedded NATS JetStream server that a test can stop and
// start again on the same port with the same store, to play an outage.
type NATSServer struct {
	t    testing.TB
	mu   sync.Mutex
	port int
	dir  string
	opts natsx.EmbeddedOptions
	ns   *server.Server
}

// StartNATS starts a restartable embedded server for t.
func StartNATS(t testing.TB) *NATSServer {
	t.Helper()
	return StartNATSWith(t, natsx.EmbeddedOptions{})
}

// StartNATSWith is StartNATS with o's name, JetStream domain and leaf node
// settings (a hub, or a point of presence's leaf node); its port and store
// are the server's own.
func StartNATSWith(t testing.TB, o natsx.EmbeddedOptions) *NATSServer {
	t.Helper()
	s := &NATSServer{t: t, port: FreePort(t), dir: t.TempDir(), opts: o}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// FreePort is a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// URL is the client URL; it stays the same across restarts.
func (s *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Start starts the server (again).
func (s *NATSServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return
	}
	o := s.opts
	o.Port, o.StoreDir = s.port, s.dir
	ns, err := natsx.StartEmbedded(o)
	if err != nil {
		s.t.Fatalf("testenv: %v", err)
	}
	s.ns = ns
}

// Stop shuts the server down; its JetStream store stays for the next Start.
func (s *NATSServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}
