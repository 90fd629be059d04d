package main

import (
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/testenv"
)

// Two sessiond replicas (real processes) share one database and one NATS:
// each test kills one of them (SIGKILL) in the middle of a piece of work
// the replicas share, and the other carries it to the end, nothing lost,
// nothing done twice that must be done once.

// balancer stands in front of the replicas as a health-checked load
// balancer would: each new connection goes to the first replica that takes
// it, so traffic stays on one until it dies, then moves to the next.
type balancer struct {
	ln      net.Listener
	targets []string
	mu      sync.Mutex
	conns   []net.Conn
}

func newBalancer(t testing.TB, targets ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, targets: targets}
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *balancer) serve(c net.Conn) {
	for _, target := range b.targets {
		up, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, c, up)
		b.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		_, _ = io.Copy(c, up)
		c.Close()
		return
	}
	c.Close()
}

// replica is one sessiond process and its own address.
type replica struct {
	*process
	addr, api string
}

// replicas starts n sessiond processes against s, each on an address of
// its own, behind a balancer that becomes s.api (and s.apiLn, where
// http://sessiond.test resolves), and signs the admin in.
func (s *system) replicas(t *testing.T, n int, extra map[string]string) []replica {
	t.Helper()
	var out []replica
	var addrs []string
	for range n {
		r := s.replicasOne(t, extra)
		out, addrs = append(out, r), append(addrs, r.addr)
	}
	s.apiLn = newBalancer(t, addrs...).ln.Addr().String()
	s.api = "http://" + s.apiLn
	s.admin = s.login("admin@example.com", "admin-password").AccessToken
	return out
}

// TestReplicasShareTheRelay: revocations stream into the first replica; it
// is killed with rows committed and not yet published (a relay batch in
// flight). The other replica's relay publishes them: every confirmed
// revocation is refused at every gateway, the outbox drains, and the
// stream holds each event once.
func TestReplicasShareTheRelay(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 0, systemOptions{noSessiond: true})
	reps := s.replicas(t, 2, nil)
	s.startGateway()
	s.startGateway()
	out := &outcomes{}
	vs, bystanders := s.victims(40)
	out.addBystander(bystanders...)
	tr1 := s.startTraffic(vs[:20], 2*time.Millisecond, out)
	tr2 := s.startTraffic(vs[20:], 2*time.Millisecond, out)
	tr1.waitConfirmed(t, 5)
	reps[0].kill(t)
	t.Logf("the first replica killed after %d confirmed revocations", tr1.confirmed()+tr2.confirmed())
	tr1.wait(t)
	tr2.wait(t)
	s.checkInvariant(s.gateways, out)
}

// TestReplicasShareTheErasureConsumer: erasure requests for users with
// hundreds of sessions each go to the replicas' shared durable consumer;
// one replica is killed after the first confirmation, with requests in
// its hands. The other one gets them again (after the ack wait) and every
// request is confirmed, at most once per delivery, with nothing of any
// user left.
func TestReplicasShareTheErasureConsumer(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 0, systemOptions{noSessiond: true})
	reps := s.replicas(t, 2, nil)
	s.startGateway()
	p := newPipeline(t, s.natsURL)
	pool := s.pool()
	type victim struct{ id, org, token, request string }
	var users []victim
	for range 12 {
		id, pr := s.user()
		var org string
		if err := pool.QueryRow(t.Context(), `SELECT org_id::text FROM users WHERE id = $1`, id).Scan(&org); err != nil {
			t.Fatal(err)
		}
		// Hundreds of sessions (inserted: a login each would only measure
		// argon2id), so that an erasure takes a while.
		if _, err := pool.Exec(t.Context(), `INSERT INTO sessions (id, user_id, org_id, device_type, user_agent, ip, expires_at)
			SELECT gen_random_uuid(), $1, $2, 'web', 'replica test', '203.0.113.7', now() + interval '30 days' FROM generate_series(1, 400)`, id, org); err != nil {
			t.Fatal(err)
		}
		users = append(users, victim{id: id, org: org, token: pr.AccessToken})
	}
	for i := range users {
		users[i].request = p.request(users[i].id, users[i].org)
	}
	// Confirmations by request, each counted once by its own event id: the
	// subscription sees every publish, and a relay that died between
	// JetStream's ack and marking its row sent publishes it again (the
	// stream drops the copy; a core subscriber sees both).
	confirmed := map[string]int{}
	seen := map[string]bool{}
	read := func(m []byte, subject string) {
		ev, err := events.Decode(subject, m)
		if err != nil {
			t.Fatalf("bad confirmation: %v", err)
		}
		c := ev.(events.UserErased)
		if !seen[c.EventID] {
			seen[c.EventID] = true
			confirmed[c.RequestEventID]++
		}
	}
	select {
	case m := <-p.msgs:
		read(m.Data, m.Subject)
	case <-time.After(recovery):
		t.Fatal("no erasure confirmed")
	}
	reps[0].kill(t)
	before := len(confirmed)
	deadline := time.After(2 * recovery) // the killed replica's requests come back after the 30 s ack wait
	for len(confirmed) < len(users) {
		select {
		case m := <-p.msgs:
			read(m.Data, m.Subject)
		case <-deadline:
			t.Fatalf("%d of %d erasure requests confirmed", len(confirmed), len(users))
		}
	}
	time.Sleep(time.Second) // a late second confirmation would show now
	for len(p.msgs) > 0 {
		m := <-p.msgs
		read(m.Data, m.Subject)
	}
	twice := 0
	for _, u := range users {
		switch n := confirmed[u.request]; {
		case n == 2:
			twice++ // delivered to the killed replica and again to the other
		case n > 2:
			t.Errorf("request %s confirmed %d times", u.request, n)
		}
		var left int
		if err := pool.QueryRow(t.Context(), `SELECT
			(SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL) +
			(SELECT count(*) FROM refresh_tokens rt JOIN sessions x ON x.id = rt.session_id WHERE x.user_id = $1) +
			(SELECT count(*) FROM sessions WHERE user_id = $1 AND (ip IS NOT NULL OR user_agent IS NOT NULL OR device_name IS NOT NULL))`, u.id).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("user %s: %d things left after the erasure", u.id, left)
		}
		if code, _ := probe(s.gateways[0], u.token); code != http.StatusUnauthorized {
			t.Errorf("user %s's token at the gateway: %d, want 401", u.id, code)
		}
	}
	if n := s.countWhere(pool, `audit_log WHERE action = 'user_erased'`); n < len(users) {
		t.Errorf("%d user_erased audit rows for %d users", n, len(users))
	}
	t.Logf("%d confirmed before the kill, %d after; %d confirmed twice (redelivered)", before, len(users)-before, twice)
}

// TestReplicasShareTheReceipts: revocations made through one replica,
// which is killed as soon as they are answered; the other answers their
// receipts (GET /v1/revocations/{id}) and sees each one enforced.
func TestReplicasShareTheReceipts(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 0, systemOptions{noSessiond: true})
	reps := s.replicas(t, 2, nil)
	s.startGateway()
	s.startGateway()
	acct := s.newAccount()
	var ids []string
	for range 15 {
		p := s.loginAs(acct)
		code, h, _, err := call(http.MethodDelete, reps[0].api+"/v1/sessions/"+p.SessionID, s.admin, nil)
		if err != nil || code != http.StatusNoContent || h.Get("Revocation-Id") == "" {
			t.Fatalf("revoke through the first replica: %d %v", code, err)
		}
		ids = append(ids, h.Get("Revocation-Id"))
	}
	reps[0].kill(t)
	for _, id := range ids {
		var r struct {
			Status string `json:"status"`
		}
		testenv.Eventually(t, recovery, func() bool {
			code, _, b, err := call(http.MethodGet, reps[1].api+"/v1/revocations/"+id, s.admin, nil)
			return err == nil && code == http.StatusOK && json.Unmarshal(b, &r) == nil && r.Status == "enforced"
		}, "receipt %s, made through the killed replica, never enforced at the other (last %q)", id, r.Status)
	}
}

// TestReplicasShareTheRetentionPurge: the purge of a large backlog is
// killed in the middle (the replica holding its advisory lock dies); the
// other replica takes the lock once PostgreSQL releases it and purges the
// rest.
func TestReplicasShareTheRetentionPurge(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 0, systemOptions{noSessiond: true})
	pool := s.pool()
	env := map[string]string{"RETENTION_INTERVAL": "1s"}
	acct := struct{ id, org string }{}
	// The backlog: sessions revoked a month ago, past the 7-day retention.
	if err := pool.QueryRow(t.Context(), `WITH o AS (INSERT INTO orgs (id, name) VALUES (gen_random_uuid(), 'purged') RETURNING id),
		u AS (INSERT INTO users (id, org_id, email, role) SELECT gen_random_uuid(), id, 'purged@example.com', 'user' FROM o RETURNING id, org_id)
		SELECT id::text, org_id::text FROM u`).Scan(&acct.id, &acct.org); err != nil {
		t.Fatal(err)
	}
	const backlog = 150_000
	if _, err := pool.Exec(t.Context(), `INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at, revoked_at, revoked_reason)
		SELECT gen_random_uuid(), $1, $2, 'web', now() - interval '40 days', now() - interval '40 days', now() + interval '1 day', now() - interval '30 days', 'logout'
		FROM generate_series(1, $3)`, acct.id, acct.org, backlog); err != nil {
		t.Fatal(err)
	}
	left := func() int { return s.countWhere(pool, `sessions WHERE user_id = '`+acct.id+`'`) }
	// The first replica alone, so that it is the one in the middle of it.
	first := s.replicasOne(t, env)
	testenv.Eventually(t, recovery, func() bool { n := left(); return n < backlog && n > 0 }, "the purge never started (or finished before it could be cut)")
	first.kill(t)
	cut := left()
	if cut == 0 {
		t.Skip("the purge finished before the kill")
	}
	s.replicasOne(t, env)
	testenv.Eventually(t, recovery, func() bool { return left() == 0 }, "the second replica never purged the rest")
	t.Logf("the first replica was killed with %d of %d rows left; the second purged them", cut, backlog)
}

// replicasOne starts one more sessiond process against s.
func (s *system) replicasOne(t *testing.T, extra map[string]string) replica {
	t.Helper()
	bin := goBuild(t, "sessiond")
	addr := freeAddr(t)
	env := maps.Clone(s.env)
	env["SESSIOND_ADDR"] = addr
	maps.Copy(env, extra)
	r := replica{process: startProcess(t, bin, env), addr: addr, api: "http://" + addr}
	s.waitOK(r.api + "/readyz")
	return r
}

// countWhere counts the rows of "table WHERE ...".
func (s *system) countWhere(pool *pgxpool.Pool, from string) int {
	s.t.Helper()
	var n int
	if err := pool.QueryRow(s.t.Context(), "SELECT count(*) FROM "+from).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// TestReplicasShareSharedSignalsDelivery: the first replica started holds
// the transmitter's lock and pushes the SETs; it is killed while they flow.
// The second takes the lock once PostgreSQL releases it and goes on from
// where the first stopped: the receiver gets every session revocation, in
// order (a SET in flight at the kill may be pushed twice; the receiver
// keeps it once, by jti).
func TestReplicasShareSharedSignalsDelivery(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 0, systemOptions{noSessiond: true, env: map[string]string{"SSF_ALLOW_HTTP": "true", "SSF_ALLOW_PRIVATE_NETWORKS": "true"}})
	reps := s.replicas(t, 2, nil)
	if n := s.countWhere(s.pool(), `pg_locks WHERE locktype = 'advisory' AND granted`); n < 1 {
		t.Fatalf("%d advisory locks held: no replica leads the transmitter", n)
	}
	org := s.org("ssf replicas")
	rc := newReceiver(t, s, org)
	rc.createPush(caepSessionRevoked)
	var sessions []pair
	for range 24 {
		_, _, p := s.signedIn(org)
		sessions = append(sessions, p)
	}
	var sids []string
	for i, p := range sessions {
		if i == 8 {
			rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == sids[7] }, "the first eight SETs")
			reps[0].kill(t)
		}
		lost := false // an attempt whose answer was lost may have revoked it
		testenv.Eventually(t, recovery, func() bool {
			code, _, _, err := call(http.MethodDelete, s.api+"/v1/sessions/"+p.SessionID, s.admin, nil)
			lost = lost || err != nil
			return err == nil && (code == http.StatusNoContent || lost && code == http.StatusNotFound)
		}, "revoke session %d", i)
		sids = append(sids, p.SessionID)
	}
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == sids[len(sids)-1] }, "the SETs after the kill")
	if got := rc.revokedSessions(); !slices.Equal(got, sids) {
		t.Fatalf("received %v, want every revocation in order %v", got, sids)
	}
	rc.noProblems()
	rc.mu.Lock()
	pushed := rc.requests
	rc.mu.Unlock()
	t.Logf("%d SETs in %d pushes across the kill", len(sids), pushed)
}
