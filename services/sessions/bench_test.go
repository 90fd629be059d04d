package sessions_test

// Benchmarks of the session API's performance goals; see BENCHMARKS.md for
// the commands, the targets and the recorded results. They measure durable
// commits only when the private PostgreSQL server runs with fsync on:
//
//	REVOKE_TEST_PG_FSYNC=on go test -run '^$' -bench 'Refresh|Revoke' -benchtime 5s -count 5 ./services/sessions/
//	REVOKE_TEST_PG_FSYNC=on REVOKE_BENCH_LARGE=1 go test -run '^$' -bench Listing -benchtime 2000x -count 5 -timeout 60m ./services/sessions/
//
// All the set-up runs inside the Benchmark functions, so `go test` without
// -bench pays nothing for them. They assert nothing about time.

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/internal/telemetry"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// benchPoolSizes are the connection pool sizes the throughput benchmarks run
// with: 0 is pgxpool's default (max(4, GOMAXPROCS), what sessiond gets unless
// DATABASE_URL sets pool_max_conns), 16 keeps more commits in flight for the
// WAL flush to group.
var benchPoolSizes = []int{0, 16}

// benchEnv is newEnv for a benchmark: it logs whether the server makes its
// commits durable, since the numbers mean little otherwise.
func benchEnv(b *testing.B) *sessionstest.Env {
	b.Helper()
	e := sessionstest.New(b)
	var fsync, syncCommit, version string
	if err := e.Pool.QueryRow(context.Background(), `SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('server_version')`).
		Scan(&fsync, &syncCommit, &version); err != nil {
		b.Fatal(err)
	}
	b.Logf("PostgreSQL %s: fsync=%s synchronous_commit=%s, GOMAXPROCS=%d", version, fsync, syncCommit, runtime.GOMAXPROCS(0))
	if fsync != "on" {
		b.Logf("WARNING: fsync is off; set REVOKE_TEST_PG_FSYNC=on to measure durable commits")
	}
	return e
}

// benchService returns a service on e's database with a pool of its own of
// maxConns connections (0: pgxpool's default), sharing e's signing keys,
// and an outbox relay publishing to a JetStream server of its own, as in
// sessiond: the relay's work is part of what a revocation costs.
func benchService(b *testing.B, e *sessionstest.Env, maxConns int) (*sessions.Service, *pgxpool.Pool) {
	b.Helper()
	return benchServiceTraced(b, e, maxConns, nil)
}

// benchServiceTraced is benchService with the service and its relay traced
// by tp (nil: not traced).
func benchServiceTraced(b *testing.B, e *sessionstest.Env, maxConns int, tp trace.TracerProvider) (*sessions.Service, *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(e.Pool.Config().ConnString())
	if err != nil {
		b.Fatal(err)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
		cfg.MinConns = int32(maxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, js := testenv.JetStream(b, testenv.NATS(b))
	if err := natsx.EnsureStreams(ctx, js, 1, events.RevocationsStream(sessionstest.Config().AccessTTL)); err != nil {
		b.Fatal(err)
	}
	relayCfg := outbox.DefaultConfig()
	relayCfg.Tracer = tp
	relay := outbox.New(pool, js, relayCfg, prometheus.NewRegistry(), quiet)
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); _ = relay.Run(relayCtx) }()
	b.Cleanup(func() { stopRelay(); <-relayDone })
	kek := make([]byte, 32)
	svcCfg := sessionstest.Config()
	svcCfg.Tracer = tp
	svc, err := sessions.NewService(pool, e.Keys, kek, svcCfg, sessions.NewMetrics(prometheus.NewRegistry()), relay, quiet)
	if err != nil {
		b.Fatal(err)
	}
	// Open every connection before the timer starts.
	conns := make([]*pgxpool.Conn, 0, cfg.MaxConns)
	for range cfg.MaxConns {
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	return svc, pool
}

func poolName(maxConns int) string {
	if maxConns == 0 {
		return "conns=default"
	}
	return fmt.Sprintf("conns=%d", maxConns)
}

// runThroughput runs op b.N times over goroutines (2 per pool connection,
// at least 8) and reports ops/s. op gets the goroutine's index, counted from
// 0; a failing op fails the benchmark.
func runThroughput(b *testing.B, pool *pgxpool.Pool, op func(ctx context.Context, g int) error) {
	b.Helper()
	par := goroutinesFor(pool)
	b.SetParallelism(par / runtime.GOMAXPROCS(0))
	var next atomic.Int64
	go0, pg0, pgOK0 := cpuTimes(pool)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		g := int(next.Add(1) - 1)
		for pb.Next() {
			if err := op(ctx, g); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if b.Failed() {
		return
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	// CPU per operation, this process (service, pgx, benchmark) and the
	// PostgreSQL server: with 2 cores, 1/(sum) bounds ops/s when CPU-bound.
	go1, pg1, pgOK1 := cpuTimes(pool)
	b.ReportMetric(float64((go1-go0).Microseconds())/float64(b.N), "go-cpu-us/op")
	if pgOK0 && pgOK1 {
		b.ReportMetric(float64((pg1-pg0).Microseconds())/float64(b.N), "pg-cpu-us/op")
	}
}

// cpuTimes returns the CPU time (user+system) of this process and, when the
// PostgreSQL server runs on this Linux host and tells its data directory, of
// the server (postmaster and children; ok reports whether it could).
func cpuTimes(pool *pgxpool.Pool) (self, server time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var dataDir string
	if err := pool.QueryRow(context.Background(), `SELECT current_setting('data_directory')`).Scan(&dataDir); err != nil {
		return self, 0, false
	}
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return self, 0, false
	}
	postmaster, _, _ := strings.Cut(string(pidFile), "\n")
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return self, 0, false
	}
	var ticks int64
	for _, p := range procs {
		stat, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime stime: fields 4, 14 and 15
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 || (p.Name() != postmaster && f[1] != postmaster) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + k
	}
	// USER_HZ is 100 on Linux
	return self, time.Duration(ticks) * 10 * time.Millisecond, ticks > 0
}

// goroutinesFor is how many goroutines runThroughput starts for pool: a
// multiple of GOMAXPROCS, as b.SetParallelism gives.
func goroutinesFor(pool *pgxpool.Pool) int {
	procs := runtime.GOMAXPROCS(0)
	want := max(8, 2*int(pool.Config().MaxConns))
	return (want + procs - 1) / procs * procs
}

// BenchmarkRefresh measures refresh-token rotation through Service.Refresh:
// every goroutine rotates the chain of a session of its own (refresh, then
// refresh the returned token, ...), each session of a user of its own, so no
// two transactions wait for the same row. Goal: 2,000/s or more.
func BenchmarkRefresh(b *testing.B) {
	e := benchEnv(b)
	org := e.Org("bench refresh")
	for _, conns := range benchPoolSizes {
		b.Run(poolName(conns), func(b *testing.B) {
			svc, pool := benchService(b, e, conns)
			toks := seedRefreshSessions(b, pool, org, goroutinesFor(pool))
			runThroughput(b, pool, func(ctx context.Context, g int) error {
				p, err := svc.Refresh(ctx, toks[g], sessions.ClientMeta{})
				if err != nil {
					return err
				}
				toks[g] = p.RefreshToken
				return nil
			})
		})
	}
}

// seedRefreshSessions creates n users of org, one live session each with a
// refresh token as Login makes them, and returns the refresh tokens.
func seedRefreshSessions(b *testing.B, pool *pgxpool.Pool, org string, n int) []string {
	b.Helper()
	users, sids, rtIDs, hashes := make([]string, n), make([]string, n), make([]string, n), make([][]byte, n)
	toks := make([]string, n)
	for i := range n {
		users[i], sids[i], rtIDs[i] = uuid.NewString(), uuid.NewString(), uuid.NewString()
		toks[i] = sessions.NewRefreshToken()
		hashes[i] = sessions.HashToken(toks[i])
	}
	ctx := context.Background()
	now := time.Now()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, org_id, email, role)
			SELECT u, $2, 'bench-' || u || '@example.com', 'user' FROM unnest($1::uuid[]) AS u`, users, org); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
			SELECT s, u, $3, 'web', $4, $4, $5 FROM unnest($1::uuid[], $2::uuid[]) AS x(s, u)`,
			sids, users, org, now, now.Add(sessionstest.Config().RefreshTTL)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
			SELECT r, s, h, $4, $5 FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS x(r, s, h)`,
			rtIDs, sids, hashes, now, now.Add(sessionstest.Config().RefreshTTL))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return toks
}

// BenchmarkRevokeSession measures an org admin revoking one distinct live
// session per operation (Service.RevokeSession: one statement that marks the
// session, deletes its refresh tokens and writes the revocation, outbox and
// audit rows, then the relay's publish of the event and, batched, its mark
// as sent). Goal: 3,000/s or more.
func BenchmarkRevokeSession(b *testing.B) { _ = benchRevokeSession(b, "bench revoke", nil) }

// BenchmarkRevokeSessionTracing is BenchmarkRevokeSession (16 connections)
// untraced, and traced: every revocation a sampled trace (the request's
// span, the transaction's, the publish's, ended at the ack) exported in
// batches to an exporter that drops them, so that what is measured is what
// the service pays, not a collector. Compare the two with benchstat:
//
//	go test -run '^$' -bench 'RevokeSessionTracing' -count 6 ./services/sessions/ | tee tracing.txt
func BenchmarkRevokeSessionTracing(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	org := e.Org("bench tracing")
	adminID, _ := e.User(org, "org_admin")
	admin := sessions.Principal{UserID: adminID, OrgID: org, Role: "org_admin", SessionID: uuid.NewString()}
	if _, err := e.Pool.Exec(ctx, `INSERT INTO users (id, org_id, email, role)
		SELECT gen_random_uuid(), $1, 'bench-tracing-' || g || '@example.com', 'user' FROM generate_series(1, 1000) g`, org); err != nil {
		b.Fatal(err)
	}
	on := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = on.Shutdown(context.Background()) })
	for _, tc := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"tracing=off", nil}, {"tracing=on", on}} {
		b.Run(tc.name, func(b *testing.B) {
			svc, pool := benchServiceTraced(b, e, 16, tc.tp)
			ids := seedLiveSessions(b, pool, org, b.N)
			tracer := telemetry.Tracer(tc.tp)
			var next atomic.Int64
			runThroughput(b, pool, func(ctx context.Context, _ int) error {
				if tc.tp != nil { // the request's span, as sessiond's router makes it
					var span trace.Span
					ctx, span = tracer.Start(ctx, "DELETE /v1/sessions/{id}", trace.WithSpanKind(trace.SpanKindServer))
					defer span.End()
				}
				_, err := svc.RevokeSession(ctx, admin, ids[next.Add(1)-1], sessions.ClientMeta{})
				return err
			})
		})
	}
}

// BenchmarkRevokeSessionWithSignals is BenchmarkRevokeSession in an org
// that a Shared Signals stream listens to: each revocation also writes its
// signal (events.SessionsSignal) in the same statement.
func BenchmarkRevokeSessionWithSignals(b *testing.B) {
	e := benchRevokeSession(b, "bench revoke signals", func(e *sessionstest.Env, org string) {
		client := uuid.NewString()
		if _, err := e.Pool.Exec(context.Background(), `WITH c AS (INSERT INTO api_clients (id, name, org_id, scopes, secret_hash) VALUES ($1, 'bench', $2, '{ssf.manage}', '\x00') RETURNING id)
			INSERT INTO ssf_streams (id, client_id, org_id, aud, events_requested, delivery_method, created_at, updated_at)
			SELECT gen_random_uuid(), id, $2, id::text, '{}', 'urn:ietf:rfc:8936', now(), now() FROM c`, client, org); err != nil {
			b.Fatal(err)
		}
	})
	var signals int
	if err := e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE subject LIKE 'signals.v1.org.%'`).Scan(&signals); err != nil || signals == 0 {
		b.Fatalf("no signal was written (%d, %v)", signals, err)
	}
}

// benchRevokeSession times single-session revocations by an org admin in
// an org named name of 1,000 users, after prepare (when set) has run on
// it, and returns the service it measured.
func benchRevokeSession(b *testing.B, name string, prepare func(e *sessionstest.Env, org string)) *sessionstest.Env {
	e := benchEnv(b)
	ctx := context.Background()
	org := e.Org(name)
	adminID, _ := e.User(org, "org_admin")
	admin := sessions.Principal{UserID: adminID, OrgID: org, Role: "org_admin", SessionID: uuid.NewString()}
	if _, err := e.Pool.Exec(ctx, `INSERT INTO users (id, org_id, email, role)
		SELECT gen_random_uuid(), $1, $2 || '-' || g || '@example.com', 'user' FROM generate_series(1, 1000) g`, org, strings.ReplaceAll(name, " ", "-")); err != nil {
		b.Fatal(err)
	}
	if prepare != nil {
		prepare(e, org)
	}
	for _, conns := range benchPoolSizes {
		b.Run(poolName(conns), func(b *testing.B) {
			svc, pool := benchService(b, e, conns)
			ids := seedLiveSessions(b, pool, org, b.N)
			var next atomic.Int64
			runThroughput(b, pool, func(ctx context.Context, _ int) error {
				_, err := svc.RevokeSession(ctx, admin, ids[next.Add(1)-1], sessions.ClientMeta{})
				return err
			})
		})
	}
	return e
}

// seedLiveSessions creates n live sessions of org's users, each with one
// refresh token, and returns their ids.
func seedLiveSessions(b *testing.B, pool *pgxpool.Pool, org string, n int) []string {
	b.Helper()
	rows, err := pool.Query(context.Background(), `
		WITH u AS (SELECT array_agg(id) AS ids FROM users WHERE org_id = $1 AND role = 'user'),
		s AS (
			INSERT INTO sessions (id, user_id, org_id, device_type, device_name, user_agent, ip, created_at, last_active_at, expires_at)
			SELECT gen_random_uuid(), u.ids[1 + g % cardinality(u.ids)], $1, 'web', 'bench', 'Mozilla/5.0 (bench)', '192.0.2.1',
				now() - interval '1 day', now() - g * interval '1 ms', now() + interval '29 days'
			FROM generate_series(1, $2::int) g, u
			RETURNING id, expires_at)
		INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
		SELECT gen_random_uuid(), id, sha256(convert_to(id::text, 'UTF8')), now(), expires_at FROM s
		RETURNING session_id::text`, org, n)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		b.Fatal(err)
	}
	if len(ids) != n {
		b.Fatalf("seeded %d sessions, want %d", len(ids), n)
	}
	// Statistics as a long-running database has them, so that the planner
	// picks the primary key for the revocation's UPDATE.
	if _, err := pool.Exec(context.Background(), `ANALYZE sessions, refresh_tokens`); err != nil {
		b.Fatal(err)
	}
	return ids
}

// Listing data set: benchTotalSessions sessions, benchOrgSessions of them in
// one org, the rest over 99 other orgs; last activity spread over the 29
// days before now, 2% revoked.
const (
	benchTotalSessions = 1_000_000
	benchOrgSessions   = 100_000
	benchOrgUsers      = 5_000
	benchOtherUsers    = 45_000
	benchOtherOrgs     = 99
)

// BenchmarkListing measures the latency of Service.ListSessions (limit 50)
// on 1,000,000 sessions: p50 and p99 in ms, for an org admin's first page and
// deep pages (cursors spread over its 100,000 sessions) and a global admin's
// first and deep pages without a filter. Seeding takes a minute or more, so
// it runs only with REVOKE_BENCH_LARGE=1.
func BenchmarkListing(b *testing.B) {
	if os.Getenv("REVOKE_BENCH_LARGE") != "1" {
		b.Skip("set REVOKE_BENCH_LARGE=1 to seed 1,000,000 sessions and run this benchmark")
	}
	e := benchEnv(b)
	ctx := context.Background()
	start := time.Now()
	bigOrg := seedListing(b, e.Pool)
	b.Logf("seeded %d sessions in %s", benchTotalSessions, time.Since(start).Round(time.Second))

	orgAdmin := sessions.Principal{UserID: uuid.NewString(), OrgID: bigOrg, Role: "org_admin", SessionID: uuid.NewString()}
	globalAdmin := sessions.Principal{UserID: e.AdminID, OrgID: e.OrgP, Role: "global_admin", SessionID: uuid.NewString()}
	orgCursors := keysetCursors(b, e.Pool, bigOrg, 200)
	globalCursors := keysetCursors(b, e.Pool, "", 200)

	cases := []struct {
		name    string
		p       sessions.Principal
		cursors []string // cycled through; nil: first page
	}{
		{"org/first", orgAdmin, nil},
		{"org/deep", orgAdmin, orgCursors},
		{"global/first", globalAdmin, nil},
		{"global/deep", globalAdmin, globalCursors},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchList(b, e.Svc, c.p, c.cursors, 50) })
	}

	// An expired session is not marked revoked: it stays in the partial
	// indexes (WHERE revoked_at IS NULL), after every live session in keyset
	// order (expires_at follows last_active_at), until the retention purge
	// deletes it (RetentionConfig.Sessions, 7 days by default after expiry).
	// A last page scans past all of them: add 100,000 sessions that expired
	// within those 7 days to the big org and list its last page (the cursor
	// 10 live rows before the end).
	if _, err := e.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
		SELECT gen_random_uuid(), md5('user' || s %% %d)::uuid, $1, 'web', x.at - interval '1 day', x.at, x.at + interval '30 days'
		FROM generate_series(1, %d) s, LATERAL (SELECT now() - interval '30 days 1 minute' - random() * interval '7 days' AS at) x`, benchOrgUsers, benchOrgSessions), bigOrg); err != nil {
		b.Fatal(err)
	}
	if _, err := e.Pool.Exec(ctx, `ANALYZE sessions`); err != nil {
		b.Fatal(err)
	}
	var lastAt time.Time
	var lastID string
	if err := e.Pool.QueryRow(ctx, `SELECT last_active_at, id::text FROM sessions
		WHERE org_id = $1 AND revoked_at IS NULL AND expires_at > now()
		ORDER BY last_active_at, id OFFSET 10 LIMIT 1`, bigOrg).Scan(&lastAt, &lastID); err != nil {
		b.Fatal(err)
	}
	b.Run("org/last+100k-expired-7d", func(b *testing.B) {
		benchList(b, e.Svc, orgAdmin, []string{sessions.EncodeCursor(lastAt, lastID)}, 10)
	})
}

// benchList lists b.N pages (limit 50) as p, cycling through cursors (nil:
// the first page), checks each page has want sessions, and reports the p50
// and p99 latencies in ms.
func benchList(b *testing.B, svc *sessions.Service, p sessions.Principal, cursors []string, want int) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		q := sessions.SessionQuery{Limit: 50}
		if cursors != nil {
			q.Cursor = cursors[i%len(cursors)]
		}
		t0 := time.Now()
		page, err := svc.ListSessions(ctx, p, q)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Sessions) != want {
			b.Fatalf("page of %d sessions, want %d", len(page.Sessions), want)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the q-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// seedListing fills the listing data set with SQL and returns the big org.
// Ids are derived from the row numbers (md5(...)::uuid), so sessions name
// their users and orgs without a join.
func seedListing(b *testing.B, pool *pgxpool.Pool) string {
	b.Helper()
	ctx := context.Background()
	stmts := []string{
		// org 0 is the big one
		fmt.Sprintf(`INSERT INTO orgs (id, name) SELECT md5('org' || o)::uuid, 'bench org ' || o FROM generate_series(0, %d) o`, benchOtherOrgs),
		// users 0..benchOrgUsers-1 are in org 0, the others spread over orgs 1..benchOtherOrgs
		fmt.Sprintf(`INSERT INTO users (id, org_id, email, role)
			SELECT md5('user' || u)::uuid,
				md5('org' || CASE WHEN u < %[1]d THEN 0 ELSE 1 + u %% %[2]d END)::uuid,
				'bench-list-' || u || '@example.com', 'user'
			FROM generate_series(0, %[3]d) u`, benchOrgUsers, benchOtherOrgs, benchOrgUsers+benchOtherUsers-1),
		// sessions 0..benchOrgSessions-1 belong to org 0's users
		fmt.Sprintf(`INSERT INTO sessions (id, user_id, org_id, device_type, device_name, user_agent, ip,
				created_at, last_active_at, expires_at, revoked_at, revoked_reason)
			SELECT gen_random_uuid(), md5('user' || x.u)::uuid,
				md5('org' || CASE WHEN x.u < %[1]d THEN 0 ELSE 1 + x.u %% %[2]d END)::uuid,
				(ARRAY['ios', 'android', 'web', 'desktop', 'other'])[1 + s %% 5], 'device ' || s %% 7,
				'Mozilla/5.0 (bench) ' || s %% 13, ('10.' || s %% 250 || '.' || s / 250 %% 250 || '.1')::inet,
				x.at - interval '1 day', x.at, x.at + interval '30 days',
				CASE WHEN s %% 50 = 0 THEN x.at END, CASE WHEN s %% 50 = 0 THEN 'logout' END
			FROM generate_series(0, %[3]d) s,
				LATERAL (SELECT CASE WHEN s < %[4]d THEN s %% %[1]d ELSE %[1]d + s %% %[5]d END AS u,
					now() - random() * interval '29 days' AS at) x`,
			benchOrgUsers, benchOtherOrgs, benchTotalSessions-1, benchOrgSessions, benchOtherUsers),
		`ANALYZE orgs`, `ANALYZE users`, `ANALYZE sessions`,
	}
	for _, q := range stmts {
		if _, err := pool.Exec(ctx, q); err != nil {
			b.Fatalf("seed: %v\n%s", err, q)
		}
	}
	var n, inOrg int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE org_id = md5('org0')::uuid) FROM sessions`).Scan(&n, &inOrg); err != nil {
		b.Fatal(err)
	}
	// +1 for the global admin's own session
	if n < benchTotalSessions || inOrg != benchOrgSessions {
		b.Fatalf("seeded %d sessions, %d in the big org", n, inOrg)
	}
	var org string
	if err := pool.QueryRow(ctx, `SELECT md5('org0')::uuid::text`).Scan(&org); err != nil {
		b.Fatal(err)
	}
	return org
}

// keysetCursors returns n cursors spread evenly over the live sessions'
// keyset (of org, or of all sessions when org is ""), each at least 50 rows
// before its end, as ListSessions would have returned them.
func keysetCursors(b *testing.B, pool *pgxpool.Pool, org string, n int) []string {
	b.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT last_active_at, id::text FROM (
			SELECT last_active_at, id, row_number() OVER (ORDER BY last_active_at DESC, id DESC) AS r, count(*) OVER () AS total
			FROM sessions WHERE revoked_at IS NULL AND expires_at > now() AND ($1::uuid IS NULL OR org_id = $1)) k
		WHERE r % ((total - 100) / $2) = 0 AND r < total - 100
		ORDER BY r`, sessions.Nullable(org), n)
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var at time.Time
		var id string
		if err := rows.Scan(&at, &id); err != nil {
			b.Fatal(err)
		}
		out = append(out, sessions.EncodeCursor(at, id))
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	if len(out) < n/2 {
		b.Fatalf("got %d cursors, want about %d", len(out), n)
	}
	return out
}

// BenchmarkUserDirectory measures Service.ListUsers (limit 50) over
// 1,000,000 users in 100 orgs, each with a live session: p50 and p99 in ms
// for a global admin's search of a rare part of an email (one user), of a
// part shared by about 1 in 100, of a part every email has, an org admin's
// search in its org, searches of two characters (spread over the order,
// matching none, all in one stretch of it), and the unfiltered
// directory's first and deep pages.
// Seeding takes a minute or more, so it runs only with REVOKE_BENCH_LARGE=1.
func BenchmarkUserDirectory(b *testing.B) {
	if os.Getenv("REVOKE_BENCH_LARGE") != "1" {
		b.Skip("set REVOKE_BENCH_LARGE=1 to seed 1,000,000 users and run this benchmark")
	}
	e := benchEnv(b)
	ctx := context.Background()
	start := time.Now()
	const users, orgs = 1_000_000, 100
	if _, err := e.Pool.Exec(ctx, `INSERT INTO orgs (id, name) SELECT md5('org' || o)::uuid, 'Org ' || o FROM generate_series(1, $1) o`, orgs); err != nil {
		b.Fatal(err)
	}
	// Emails such as "u123456.3f9a2c@org17.example": a user number, six
	// hex digits, the org.
	if _, err := e.Pool.Exec(ctx, `INSERT INTO users (id, org_id, email, role, created_at, last_login_at)
		SELECT md5('user' || n)::uuid, md5('org' || (n % $2 + 1))::uuid, 'u' || n || '.' || left(md5(n::text), 6) || '@org' || (n % $2 + 1) || '.example',
			'user', now() - interval '1 day', now() - interval '1 hour'
		FROM generate_series(1, $1) n`, users, orgs); err != nil {
		b.Fatal(err)
	}
	if _, err := e.Pool.Exec(ctx, `INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
		SELECT gen_random_uuid(), md5('user' || n)::uuid, md5('org' || (n % $2 + 1))::uuid, 'web', now() - interval '1 hour', now(), now() + interval '30 days'
		FROM generate_series(1, $1) n`, users, orgs); err != nil {
		b.Fatal(err)
	}
	for _, sql := range []string{`VACUUM ANALYZE users`, `ANALYZE sessions`} {
		if _, err := e.Pool.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("seeded %d users in %s", users, time.Since(start).Round(time.Second))
	global := sessions.Principal{UserID: e.AdminID, OrgID: e.OrgP, Role: "global_admin", SessionID: uuid.NewString()}
	org7 := sessions.Principal{UserID: uuid.NewString(), OrgID: uuidOf(ctx, b, e, "org7"), Role: "org_admin", SessionID: uuid.NewString()}
	var rare string // the six hex digits of one user
	if err := e.Pool.QueryRow(ctx, `SELECT left(md5('424242'), 6)`).Scan(&rare); err != nil {
		b.Fatal(err)
	}
	var rare7 string // a part of the email of one user of org7
	if err := e.Pool.QueryRow(ctx, `SELECT left(md5('424206'), 6)`).Scan(&rare7); err != nil {
		b.Fatal(err)
	}
	var deep string
	if err := e.Pool.QueryRow(ctx, `SELECT lower(email) FROM users ORDER BY lower(email) OFFSET 500000 LIMIT 1`).Scan(&deep); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		p    sessions.Principal
		q    sessions.UserQuery
		min  int // users the page must hold at least
	}{
		{"search/rare", global, sessions.UserQuery{Email: rare}, 1},
		{"search/1-in-100", global, sessions.UserQuery{Email: "@org42."}, 50},
		{"search/every", global, sessions.UserQuery{Email: ".example"}, 50},
		{"search/org-admin", org7, sessions.UserQuery{Email: "u7"}, 50},
		{"search/two-chars-spread", global, sessions.UserQuery{Email: "3f"}, 50},
		{"search/two-chars-none", global, sessions.UserQuery{Email: "qz"}, 0},
		// Every "u7" email is in one stretch of the email order (they all
		// start with it), past two thirds of it: the walk's worst case.
		{"search/two-chars-clustered", global, sessions.UserQuery{Email: "u7"}, 50},
		{"search/org-admin-rare", org7, sessions.UserQuery{Email: rare7}, 1},
		{"all/first", global, sessions.UserQuery{}, 50},
		{"all/deep", global, sessions.UserQuery{Cursor: base64.RawURLEncoding.EncodeToString([]byte(deep))}, 50},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for range b.N {
				c.q.Limit = 50
				t0 := time.Now()
				page, err := e.Svc.ListUsers(ctx, c.p, c.q)
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Users) < c.min {
					b.Fatalf("a page of %d users, want at least %d", len(page.Users), c.min)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
		})
	}
}

// uuidOf is md5(name)::uuid, as the seeds derive their ids.
func uuidOf(ctx context.Context, b *testing.B, e *sessionstest.Env, name string) string {
	var id string
	if err := e.Pool.QueryRow(ctx, `SELECT md5($1)::uuid::text`, name).Scan(&id); err != nil {
		b.Fatal(err)
	}
	return id
}

// BenchmarkPolicySweep measures SweepPolicies over 1,000,000 live sessions
// in 100 orgs, every org with an idle timeout and a lifetime bound that
// end none of them today: what each sweep (every 30 s in sessiond) costs
// PostgreSQL when there is nothing to revoke, and the time of one sweep.
// Runs only with REVOKE_BENCH_LARGE=1.
func BenchmarkPolicySweep(b *testing.B) {
	if os.Getenv("REVOKE_BENCH_LARGE") != "1" {
		b.Skip("set REVOKE_BENCH_LARGE=1 to seed 1,000,000 sessions and run this benchmark")
	}
	e := benchEnv(b)
	ctx := context.Background()
	for _, sql := range []string{
		`INSERT INTO orgs (id, name) SELECT md5('org' || o)::uuid, 'Org ' || o FROM generate_series(1, 100) o`,
		`INSERT INTO users (id, org_id, email, role) SELECT md5('user' || n)::uuid, md5('org' || (n % 100 + 1))::uuid, 'u' || n || '@example.com', 'user' FROM generate_series(1, 100000) n`,
		`INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
			SELECT gen_random_uuid(), md5('user' || (n % 100000 + 1))::uuid, md5('org' || (n % 100000 % 100 + 1))::uuid, 'web',
				now() - random() * interval '20 days', now() - random() * interval '10 days', now() + interval '30 days'
			FROM generate_series(1, 1000000) n`,
		`INSERT INTO org_policies (org_id, idle_timeout, max_session_lifetime) SELECT id, '30 days', '90 days' FROM orgs WHERE name LIKE 'Org %'`,
		`VACUUM ANALYZE sessions`,
	} {
		if _, err := e.Pool.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	svc, pool := benchService(b, e, 0)
	_, pg0, ok0 := cpuTimes(pool)
	b.ResetTimer()
	for range b.N {
		n, err := svc.SweepPolicies(ctx)
		if err != nil || n != 0 {
			b.Fatalf("sweep: %d %v", n, err)
		}
	}
	b.StopTimer()
	if _, pg1, ok1 := cpuTimes(pool); ok0 && ok1 {
		per := float64((pg1 - pg0).Microseconds()) / float64(b.N) / 1000
		b.ReportMetric(per, "pg-cpu-ms/sweep")
		b.ReportMetric(per*2/1000, "pg-cpu-s/min") // two sweeps a minute
	}
}

// BenchmarkLoginUnderCap compares a plain login with one under a
// revoke_oldest cap that every login reaches (so each ends the user's
// oldest session), alternating the two in one loop: the ratio is the cost
// of the policy. Hashing is the tests' cheap argon2id, so the database's
// work is most of a login.
func BenchmarkLoginUnderCap(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	svc, _ := benchService(b, e, 0)
	plainOrg, cappedOrg := e.Org("Plain"), e.Org("Capped")
	if _, err := svc.SetPolicy(ctx, sessions.SystemPrincipal, cappedOrg, sessions.Policy{MaxSessionsPerUser: 3, OnLimit: sessions.OnLimitRevokeOldest}, sessions.ClientMeta{}); err != nil {
		b.Fatal(err)
	}
	_, plain := e.User(plainOrg, "user")
	_, capped := e.User(cappedOrg, "user")
	login := func(email string) time.Duration {
		t0 := time.Now()
		if _, err := svc.Login(ctx, sessions.LoginInput{Email: email, Password: "password-1", DeviceType: "web"}); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	for range 5 { // the capped user is at its cap from here on
		login(plain)
		login(capped)
	}
	// The floor: a plain login, then the revocation of one session in a
	// transaction of its own (what revoke_oldest adds, and a commit more).
	_, floorUser := e.User(plainOrg, "user")
	floorP, err := svc.Authenticate(ctx, e.Login(floorUser, "password-1").AccessToken)
	if err != nil {
		b.Fatal(err)
	}
	floorP.Role = "global_admin"
	var tp, tc, tf []time.Duration
	b.ResetTimer()
	for range b.N {
		tp = append(tp, login(plain))
		tc = append(tc, login(capped))
		t0 := time.Now()
		pair, err := svc.Login(ctx, sessions.LoginInput{Email: floorUser, Password: "password-1", DeviceType: "web"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.RevokeSession(ctx, floorP, pair.SessionID, sessions.ClientMeta{}); err != nil {
			b.Fatal(err)
		}
		tf = append(tf, time.Since(t0))
	}
	b.StopTimer()
	for _, l := range [][]time.Duration{tp, tc, tf} {
		slices.Sort(l)
	}
	b.ReportMetric(ms(percentile(tp, 0.5)), "plain-p50-ms")
	b.ReportMetric(ms(percentile(tc, 0.5)), "capped-p50-ms")
	b.ReportMetric(ms(percentile(tf, 0.5)), "login+revoke-p50-ms")
	b.ReportMetric(float64(percentile(tc, 0.5))/float64(percentile(tp, 0.5)), "ratio")
	b.ReportMetric(float64(percentile(tf, 0.5))/float64(percentile(tp, 0.5)), "floor-ratio")
}
