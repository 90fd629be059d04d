package main

// The fault matrix (issue 7): each test breaks one part of the running
// system while revocations go on, lets it recover, and then checks the one
// invariant that matters (checkInvariant): every revocation the API
// confirmed is refused at every gateway, every token nothing revoked is
// still accepted, and each revocation event reached the stream exactly once.
//
// Nothing here sleeps to synchronise: every wait polls with a deadline. The
// only timers pace the background traffic, as real clients would.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/pgserver"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/testenv"
)

// recovery bounds every wait for the system to heal after a fault: a NATS
// leader election alone may take 9 s, and the relay backs off up to 5 s.
const recovery = 45 * time.Second

// Fault 1: the NATS server goes away and comes back (same port, same
// store) while the API keeps revoking. The API must not notice, the outbox
// must hold the events, and a gateway with a short staleness bound must fail
// closed meanwhile and recover by itself.
func TestFaultNATSRestart(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 2)
	strict := s.startGatewayWith(gwOptions{maxStaleness: time.Second})
	vs, bystanders := s.victims(36)
	out := &outcomes{bystanders: bystanders}

	// One stream of revocations runs into the outage, a second one across
	// the restart.
	tr := s.startTraffic(vs[:24], 40*time.Millisecond, out)
	tr.waitConfirmed(t, 6)
	s.nats.Stop()
	down := tr.confirmed()
	// While NATS is away: the gateway whose bound is 1 s fails closed, the
	// API still revokes and still logs people in.
	testenv.Eventually(t, 15*time.Second, func() bool {
		code, err := probe(strict, bystanders[0])
		return err == nil && code == http.StatusServiceUnavailable
	}, "a gateway that cannot reach NATS never failed closed")
	tr.waitConfirmed(t, down+6)
	_, late := s.user()
	out.addBystander(late.AccessToken)
	if unsent := s.unsentOutbox(); unsent == 0 {
		t.Fatal("NATS is down, yet the outbox holds nothing unsent")
	}
	tr2 := s.startTraffic(vs[24:], 40*time.Millisecond, out)
	tr2.waitConfirmed(t, 2)
	s.nats.Start()
	t.Logf("NATS restarted after %d confirmed revocations, %d of them while it was down; %d to go",
		tr.confirmed()+tr2.confirmed(), tr.confirmed()+tr2.confirmed()-down, tr.remaining.Load()+tr2.remaining.Load())
	tr.wait(t)
	tr2.wait(t)
	if n := out.count(); n.retried > 0 || n.unknown > 0 {
		t.Errorf("the API faltered while only NATS was down: %+v", n)
	}
	s.checkInvariant(s.gateways, out)
}

// Fault 2: the relay crashes. sessiond runs as a real process and is killed
// with SIGKILL (a) while committed revocations wait in the outbox because
// NATS is down, and (b) in the middle of a steady stream of revocations.
// Each time it is started again; nothing confirmed may be lost.
func TestFaultRelayCrash(t *testing.T) {
	t.Parallel()
	bin := goBuild(t, "sessiond")
	s := newSystemWith(t, 0, systemOptions{noSessiond: true})
	env := map[string]string{"SESSIOND_ADDR": s.apiLn, "LOG_LEVEL": "debug"}
	maps.Copy(env, s.env)
	sessiond := startProcess(t, bin, env)
	s.stopAPI = func() { sessiond.stop() }
	s.waitOK(s.api + "/readyz")
	s.startGateway()
	s.startGateway()
	s.admin = s.login("admin@example.com", "admin-password").AccessToken
	out := &outcomes{}

	ok := t.Run("killed with a backlog in the outbox", func(t *testing.T) {
		s := s.in(t)
		vs, bystanders := s.victims(13)
		out.addBystander(bystanders...)
		published, vs := vs[:3], vs[3:]
		for _, v := range published {
			out.record(v, s.attempt(v))
		}
		testenv.Eventually(t, recovery, func() bool { return s.unsentOutbox() == 0 }, "the outbox never drained")
		s.nats.Stop()
		for _, v := range vs {
			out.record(v, s.attempt(v))
		}
		if n := s.unsentOutbox(); n < len(vs) {
			t.Fatalf("%d revocations confirmed while NATS was down, but only %d unsent outbox rows", len(vs), n)
		}
		sessiond.kill(t)
		// Say the crash also cut the relay off between JetStream's acks and
		// its commit of "sent": the rows it had published stay unsent (the
		// rolled-back mark). They must be published again, and JetStream
		// must drop the copies (checkStreamMatchesOutbox counts them).
		tag, err := s.faultPool().Exec(t.Context(), `UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL AND subject LIKE 'revocations.%'`)
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() < int64(len(published)) {
			t.Fatalf("only %d published rows to mark unsent again", tag.RowsAffected())
		}
		s.nats.Start()
		// Nobody relays while sessiond is dead: the rows wait.
		if n := s.unsentOutbox(); n < len(vs)+len(published) {
			t.Fatalf("only %d unsent outbox rows left after the crash", n)
		}
		sessiond.start(t)
		s.waitOK(s.api + "/readyz")
		s.checkInvariant(s.gateways, out)
	})
	if !ok {
		return // the system may be left broken
	}

	t.Run("killed in the middle of a stream of revocations", func(t *testing.T) {
		s := s.in(t)
		vs, bystanders := s.victims(30)
		out.addBystander(bystanders...)
		// Two dense streams, so that the kill likely cuts requests (and a
		// relay batch) off in flight.
		tr1 := s.startTraffic(vs[:15], 3*time.Millisecond, out)
		tr2 := s.startTraffic(vs[15:], 3*time.Millisecond, out)
		tr1.waitConfirmed(t, 4)
		sessiond.kill(t)
		t.Logf("sessiond killed after %d confirmed revocations", tr1.confirmed()+tr2.confirmed())
		// The traffic finds sessiond gone (connection refused) and keeps
		// knocking until it is back.
		sessiond.start(t)
		s.waitOK(s.api + "/readyz")
		tr1.wait(t)
		tr2.wait(t)
		s.checkInvariant(s.gateways, out)
	})
}

// Fault 3: a gateway (a real gatewayd process) is killed with SIGKILL,
// revocations happen while it is dead, and it is started again. From its
// first answer on it must never accept a revoked token: it is not ready (503)
// until it has replayed the stream, and then refuses everything revoked
// before and during its death at once.
func TestFaultGatewayKilled(t *testing.T) {
	t.Parallel()
	bin := goBuild(t, "gatewayd")
	s := newSystem(t, 1) // the in-process gateway shows what the stream holds
	gatewayd, g := s.gatewaydProcess(t, bin, map[string]string{"LOG_LEVEL": "debug"})
	s.waitOK(g.control + "/readyz")
	gws := []*gw{s.gateways[0], g}
	out := &outcomes{}

	before, bystanders := s.victims(8)
	out.addBystander(bystanders...)
	for _, v := range before {
		out.record(v, s.attempt(v))
	}
	s.checkInvariant(gws, out)

	gatewayd.kill(t)
	if _, err := probe(g, bystanders[0]); err == nil {
		t.Fatal("the killed gateway still answers")
	}
	during, _ := s.victims(8)
	for _, v := range during {
		out.record(v, s.attempt(v))
	}
	// Wait until the stream holds them all: the live gateway refuses them.
	for _, tok := range out.snapshot().confirmed {
		testenv.Eventually(t, recovery, func() bool { return check(t, s.gateways[0], tok) == http.StatusUnauthorized },
			"the live gateway never refused a token revoked while the other was dead")
	}
	revoked := out.snapshot().confirmed

	// Revocations keep coming while it starts up again.
	racing, _ := s.victims(5)
	tr := s.startTraffic(racing, 30*time.Millisecond, out)
	gatewayd.start(t)
	var answers, unready int
	testenv.Eventually(t, recovery, func() bool {
		for i, tok := range revoked {
			code, err := probe(g, tok)
			if err != nil {
				return false // not listening yet
			}
			answers++
			switch code {
			case http.StatusServiceUnavailable:
				unready++
			case http.StatusOK:
				t.Fatalf("the restarted gateway accepted token %d, revoked before it started", i)
			}
		}
		code, err := probe(g, bystanders[1])
		if err == nil && code == http.StatusUnauthorized {
			t.Fatal("the restarted gateway refused a token nothing revoked")
		}
		return readyz(g) == http.StatusOK
	}, "the restarted gateway never became ready")
	t.Logf("restarted gateway: %d answers about revoked tokens while it started, %d of them 503 (not ready), none 200", answers, unready)
	// Ready means replayed: every token revoked before its restart is
	// refused now, without waiting.
	for i, tok := range revoked {
		if code, err := probe(g, tok); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("ready, yet token %d (revoked before the restart) gets %d, %v", i, code, err)
		}
	}
	tr.wait(t)
	s.checkInvariant(gws, out)
}

// Fault 4: PostgreSQL restarts under sessiond. The test runs a private
// server of its own so it can stop it. While it is down the API answers 503
// problem+json with Retry-After and writes nothing; after it is back sessiond
// recovers without a restart.
func TestFaultPostgresRestart(t *testing.T) {
	t.Parallel()
	pg := startPrivatePostgres(t)
	s := newSystemWith(t, 2, systemOptions{dbURL: pg.URL("revoke")})
	vs, bystanders := s.victims(20)
	out := &outcomes{bystanders: bystanders}
	refusedDuringOutage, _ := s.victims(5)
	after, _ := s.victims(4)
	disabled := s.newAccount()
	disabledToken := s.loginAs(disabled).AccessToken

	// A steady stream of revocations runs into the outage; a client retries
	// a 503 as Retry-After says.
	tr := s.startTraffic(vs, 30*time.Millisecond, out)
	tr.waitConfirmed(t, 3)
	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	if err := pg.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	cancel()
	t.Logf("PostgreSQL stopped after %d confirmed revocations", tr.confirmed())

	// PostgreSQL is down: every answer that needs it is a clean 503.
	unavailable := func(what string, code int, h http.Header, body []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s while PostgreSQL is down: %v", what, err)
		}
		var p struct {
			Type, Title, Detail string
			Status              int
		}
		_ = json.Unmarshal(body, &p)
		ra, raErr := strconv.Atoi(h.Get("Retry-After"))
		ct := h.Get("Content-Type")
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(ct, "application/problem+json") || raErr != nil || ra < 1 ||
			p.Status != 503 || p.Type == "" || p.Title == "" {
			t.Fatalf("%s while PostgreSQL is down: %d, Content-Type %q, Retry-After %q, body %s", what, code, ct, h.Get("Retry-After"), body)
		}
		for _, leak := range []string{"SQLSTATE", "dial", "PGSQL", "pgx", "postgres", "goroutine"} {
			if bytes.Contains(body, []byte(leak)) {
				t.Fatalf("%s: the 503 leaks internals (%q): %s", what, leak, body)
			}
		}
	}
	code, h, body, err := call(http.MethodPost, s.api+"/v1/auth/login", "", map[string]string{"email": "admin@example.com", "password": "admin-password"})
	unavailable("login", code, h, body, err)
	for _, v := range refusedDuringOutage {
		code, h, body, err := v.revoke()
		unavailable("revocation ("+v.kind+")", code, h, body, err)
		out.record(v, attemptResult{notApplied: true})
	}
	code, h, body, err = call(http.MethodPatch, s.api+"/v1/users/"+disabled.id, s.admin, map[string]bool{"disabled": true})
	unavailable("disabling a user", code, h, body, err)
	out.addBystander(disabledToken)
	if code, _, _, _ := call(http.MethodGet, s.api+"/readyz", "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while PostgreSQL is down: %d, want 503", code)
	}
	if code, _, _, _ := call(http.MethodGet, s.api+"/healthz", "", nil); code != http.StatusOK {
		t.Errorf("/healthz (liveness) while PostgreSQL is down: %d, want 200", code)
	}
	// The edge does not need PostgreSQL.
	for _, g := range s.gateways {
		if code := check(t, g, bystanders[0]); code != http.StatusOK {
			t.Errorf("gateway %s refuses a live token while PostgreSQL is down: %d", g.control, code)
		}
	}

	// The stream of revocations has run into the outage (and keeps retrying).
	testenv.Eventually(t, recovery, func() bool { return tr.retries.Load() >= 3 }, "the traffic never met the outage")
	startCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	if _, err := pgserver.Start(startCtx, pg.Dir(), pgserver.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	cancel()
	// sessiond recovers by itself: no restart.
	s.waitOKWithin(s.api+"/readyz", recovery)
	testenv.Eventually(t, recovery, func() bool {
		code, _, _, _ := call(http.MethodPost, s.api+"/v1/auth/login", "", map[string]string{"email": "admin@example.com", "password": "admin-password"})
		return code == http.StatusOK
	}, "logins never worked again after PostgreSQL came back")
	t.Logf("PostgreSQL back; %d revocations confirmed so far", tr.confirmed())
	tr.wait(t)
	for _, v := range after {
		r := s.attempt(v)
		if !r.confirmed {
			t.Fatalf("a revocation after PostgreSQL came back: %+v", r)
		}
		out.record(v, r)
	}
	s.checkInvariant(s.gateways, out)
}

// Fault 5: a three-node JetStream cluster with R3 streams loses the leader
// of the REVOCATIONS stream while revocations go on.
func TestFaultNATSClusterLosesLeader(t *testing.T) {
	t.Parallel()
	cluster := startNATSCluster(t, 3)
	s := newSystemWith(t, 2, systemOptions{natsURL: cluster.urls(), env: map[string]string{"NATS_STREAM_REPLICAS": "3"}})
	vs, bystanders := s.victims(30)
	out := &outcomes{bystanders: bystanders}

	leader := cluster.streamLeader(t, events.StreamRevocations)
	tr := s.startTraffic(vs, 40*time.Millisecond, out)
	tr.waitConfirmed(t, 8)
	cluster.shutdown(leader)
	down := time.Now()
	t.Logf("stream leader %s shut down after %d confirmed revocations", leader, tr.confirmed())
	tr.wait(t)
	s.checkInvariant(s.gateways, out)
	t.Logf("recovered %s after the shutdown; the stream is now led by %s", time.Since(down).Round(time.Millisecond),
		cluster.streamLeader(t, events.StreamRevocations))
}

// Fault 6: the gateways' clocks are 30 s ahead of and behind sessiond's.
// Fresh tokens are accepted and revoked ones refused, and a token issued
// right after a user-level revocation of its user is accepted (usually it is
// the same second, and its iat is a microsecond after the revocation's not_before).
func TestFaultClockSkew(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 0)
	for _, skew := range []time.Duration{30 * time.Second, -30 * time.Second} {
		s.startGatewayWith(gwOptions{now: func() time.Time { return time.Now().Add(skew) }})
	}
	vs, bystanders := s.victims(10)
	out := &outcomes{bystanders: bystanders}
	for _, g := range s.gateways {
		for _, v := range vs {
			for _, tok := range v.tokens {
				if code := check(t, g, tok); code != http.StatusOK {
					t.Fatalf("a skewed gateway refuses a fresh token: %d", code)
				}
			}
		}
	}
	for _, v := range vs {
		out.record(v, s.attempt(v))
	}
	// Log in again right after a user-level revocation: the new token is not
	// revoked by it, whatever the gateway's clock says.
	a := s.newAccount()
	old := s.loginAs(a)
	if code := s.do(http.MethodDelete, "/v1/users/"+a.id+"/sessions", s.admin, nil, nil); code != http.StatusOK {
		t.Fatalf("revoke all sessions: %d", code)
	}
	out.record(victim{kind: "user_revoke_all", tokens: []string{old.AccessToken}}, attemptResult{confirmed: true})
	out.addBystander(s.loginAs(a).AccessToken)
	s.checkInvariant(s.gateways, out)
}

// --- the invariant -------------------------------------------------------

// outcomes is what the API answered to every revocation a test attempted.
type outcomes struct {
	mu sync.Mutex
	// confirmed: the API answered 2xx; the tokens must be refused everywhere.
	confirmed []string
	// notApplied: the revocation certainly never took effect (refused
	// before reaching the database); the tokens must still be accepted.
	notApplied []string
	// unknown: the answer was lost (sessiond died mid-request, or 503 was
	// followed by "already gone"); sessiond's own view decides, and every
	// gateway must agree with it.
	unknown []string
	// bystanders: tokens nothing revoked; they must be accepted everywhere.
	bystanders []string
	unexpected []string
	retried    int
}

type attemptResult struct {
	confirmed, notApplied, unknown bool
	unexpected                     string
	retried                        int
}

func (o *outcomes) record(v victim, r attemptResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retried += r.retried
	switch {
	case r.confirmed:
		o.confirmed = append(o.confirmed, v.tokens...)
	case r.notApplied:
		o.notApplied = append(o.notApplied, v.tokens...)
	case r.unknown:
		o.unknown = append(o.unknown, v.tokens...)
	default:
		o.unexpected = append(o.unexpected, v.kind+": "+r.unexpected)
	}
}

func (o *outcomes) addBystander(tokens ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bystanders = append(o.bystanders, tokens...)
}

type outcomeCounts struct{ confirmed, notApplied, unknown, bystanders, unexpected, retried int }

func (o *outcomes) count() outcomeCounts {
	o.mu.Lock()
	defer o.mu.Unlock()
	return outcomeCounts{len(o.confirmed), len(o.notApplied), len(o.unknown), len(o.bystanders), len(o.unexpected), o.retried}
}

func (o *outcomes) snapshot() outcomes {
	o.mu.Lock()
	defer o.mu.Unlock()
	return outcomes{
		confirmed: append([]string(nil), o.confirmed...), notApplied: append([]string(nil), o.notApplied...),
		unknown: append([]string(nil), o.unknown...), bystanders: append([]string(nil), o.bystanders...),
		unexpected: append([]string(nil), o.unexpected...), retried: o.retried,
	}
}

// checkInvariant waits for the system to settle after a fault and checks,
// at sessiond and at every one of gws: every confirmed revocation is
// refused; every token nothing revoked (bystanders, and revocations that
// certainly failed) is accepted; a revocation whose answer was lost is
// enforced exactly when sessiond says it took effect. Then every revocation
// event is in the stream exactly once.
func (s *system) checkInvariant(gws []*gw, o *outcomes) {
	t := s.t
	t.Helper()
	snap := o.snapshot()
	if len(snap.unexpected) > 0 {
		t.Fatalf("unexpected answers to revocations: %v", snap.unexpected)
	}
	revoked := snap.confirmed
	live := append(append([]string(nil), snap.bystanders...), snap.notApplied...)
	for _, tok := range revoked {
		if code := s.sessiondSays(tok); code != http.StatusUnauthorized {
			t.Fatalf("sessiond accepts a token whose revocation it confirmed: %d", code)
		}
	}
	for _, tok := range live {
		if code := s.sessiondSays(tok); code != http.StatusOK {
			t.Fatalf("sessiond refuses a token nothing revoked: %d", code)
		}
	}
	for _, tok := range snap.unknown {
		if s.sessiondSays(tok) == http.StatusUnauthorized {
			revoked = append(revoked, tok)
		} else {
			live = append(live, tok)
		}
	}
	for _, g := range gws {
		s.waitOKWithin(g.control+"/readyz", recovery)
		for i, tok := range revoked {
			testenv.Eventually(t, recovery, func() bool {
				code, err := probe(g, tok)
				return err == nil && code == http.StatusUnauthorized
			}, "gateway %s still accepts revoked token %d of %d", g.control, i, len(revoked))
		}
		for i, tok := range live {
			var code int
			testenv.Eventually(t, recovery, func() bool {
				var err error
				code, err = probe(g, tok)
				return err == nil && code != http.StatusServiceUnavailable
			}, "gateway %s never answered", g.control)
			if code != http.StatusOK {
				t.Fatalf("gateway %s refuses token %d of %d that nothing revoked: %d", g.control, i, len(live), code)
			}
		}
	}
	s.checkStreamMatchesOutbox()
	t.Logf("invariant holds at %d gateways: %d tokens revoked (%d confirmed), %d live (%d bystanders, %d failed revocations), %d whose revocation's answer was lost; %d retries (sessiond unreachable or 503)",
		len(gws), len(revoked), len(snap.confirmed), len(live), len(snap.bystanders), len(snap.notApplied), len(snap.unknown), snap.retried)
}

// sessiondSays is sessiond's own verdict on a token (200 or 401): it checks
// the database on every request.
func (s *system) sessiondSays(token string) int {
	s.t.Helper()
	var code int
	testenv.Eventually(s.t, recovery, func() bool {
		var err error
		code, _, _, err = call(http.MethodGet, s.api+"/v1/me/sessions", token, nil)
		return err == nil && (code == http.StatusOK || code == http.StatusUnauthorized)
	}, "sessiond gives no verdict (200 or 401) on a token")
	return code
}

// checkStreamMatchesOutbox waits until the outbox is drained and checks that
// the REVOCATIONS stream holds exactly one message per revocation event:
// none lost, none duplicated by a republish after a crash.
func (s *system) checkStreamMatchesOutbox() {
	t := s.t
	t.Helper()
	testenv.Eventually(t, recovery, func() bool { return s.unsentOutbox() == 0 }, "the outbox never drained")
	var rows uint64
	if err := s.faultPool().QueryRow(t.Context(), `SELECT count(*) FROM outbox WHERE subject LIKE 'revocations.%'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var msgs uint64
	testenv.Eventually(t, recovery, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, events.StreamRevocations)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil {
			return false
		}
		msgs = info.State.Msgs
		return true
	}, "no information on the %s stream", events.StreamRevocations)
	if msgs != rows {
		t.Fatalf("the %s stream holds %d messages for %d revocation events in the outbox", events.StreamRevocations, msgs, rows)
	}
}

func (s *system) unsentOutbox() int {
	s.t.Helper()
	var n int
	testenv.Eventually(s.t, recovery, func() bool {
		ctx, cancel := context.WithTimeout(s.t.Context(), 2*time.Second)
		defer cancel()
		return s.faultPool().QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n) == nil
	}, "cannot count the outbox")
	return n
}

// faultPool is one pool per system (or subtest) for the checks above; pgx
// replaces broken connections, so it survives a PostgreSQL restart.
func (s *system) faultPool() *pgxpool.Pool {
	if s.checks == nil {
		s.checks = s.pool()
	}
	return s.checks
}

// in returns s for a subtest: failures and cleanups belong to t.
func (s *system) in(t testing.TB) *system {
	c := *s
	c.t, c.checks = t, nil
	return &c
}

// --- victims and traffic -----------------------------------------------

// victim is a revocation to perform: the API call and the access tokens it
// must stop.
type victim struct {
	kind   string
	tokens []string
	revoke func() (int, http.Header, []byte, error)
}

type account struct{ id, email string }

// newAccount creates a user (in an org of its own) without logging in.
func (s *system) newAccount() account {
	s.t.Helper()
	var org, u struct{ ID string }
	if code := s.do(http.MethodPost, "/v1/orgs", s.admin, map[string]string{"name": fmt.Sprintf("fault %d", time.Now().UnixNano())}, &org); code != http.StatusCreated {
		s.t.Fatalf("create org: %d", code)
	}
	email := fmt.Sprintf("f%d@example.com", time.Now().UnixNano())
	if code := s.do(http.MethodPost, "/v1/users", s.admin, map[string]string{"org_id": org.ID, "email": email, "password": "password-1", "role": "user"}, &u); code != http.StatusCreated {
		s.t.Fatalf("create user: %d", code)
	}
	return account{id: u.ID, email: email}
}

func (s *system) loginAs(a account) pair { s.t.Helper(); return s.login(a.email, "password-1") }

// victims logs in and returns n revocations of every kind the API has — an
// admin revoking a session, a logout, a user ending their own session, an
// admin ending every session of a user, an admin disabling a user — and two
// bystander tokens nothing will revoke: a sibling session of the sessions
// revoked one by one, and another user's.
func (s *system) victims(n int) ([]victim, []string) {
	s.t.Helper()
	shared := s.newAccount()
	var vs []victim
	for i := range n {
		switch i % 10 {
		case 7: // every session of a user: a user-level event
			a := s.newAccount()
			toks := []string{s.loginAs(a).AccessToken, s.loginAs(a).AccessToken}
			vs = append(vs, victim{kind: "user_revoke_all", tokens: toks, revoke: func() (int, http.Header, []byte, error) {
				return call(http.MethodDelete, s.api+"/v1/users/"+a.id+"/sessions", s.admin, nil)
			}})
		case 9:
			a := s.newAccount()
			vs = append(vs, victim{kind: "user_disabled", tokens: []string{s.loginAs(a).AccessToken}, revoke: func() (int, http.Header, []byte, error) {
				return call(http.MethodPatch, s.api+"/v1/users/"+a.id, s.admin, map[string]bool{"disabled": true})
			}})
		default:
			p := s.loginAs(shared)
			v := victim{tokens: []string{p.AccessToken}}
			switch i % 3 {
			case 0:
				v.kind = "admin_revoke"
				v.revoke = func() (int, http.Header, []byte, error) {
					return call(http.MethodDelete, s.api+"/v1/sessions/"+p.SessionID, s.admin, nil)
				}
			case 1:
				v.kind = "logout"
				v.revoke = func() (int, http.Header, []byte, error) {
					return call(http.MethodPost, s.api+"/v1/auth/logout", p.AccessToken, nil)
				}
			default:
				v.kind = "self_revoke"
				v.revoke = func() (int, http.Header, []byte, error) {
					return call(http.MethodDelete, s.api+"/v1/me/sessions/"+p.SessionID, p.AccessToken, nil)
				}
			}
			vs = append(vs, v)
		}
	}
	_, other := s.user()
	return vs, []string{s.loginAs(shared).AccessToken, other.AccessToken}
}

// attempt performs one revocation as a careful client would: it retries
// while sessiond cannot be reached or answers 503, for a while.
func (s *system) attempt(v victim) attemptResult {
	return attemptUntil(v, nil, nil)
}

// attemptUntil is attempt that gives up when stop is closed; it counts its
// retries in retries, when not nil, as they happen.
func attemptUntil(v victim, stop <-chan struct{}, retries *atomic.Int64) attemptResult {
	var r attemptResult
	ambiguous := false // an earlier attempt may have taken effect
	deadline := time.Now().Add(recovery)
	for {
		code, _, _, err := v.revoke()
		switch {
		case err == nil && code/100 == 2:
			r.confirmed = true
			return r
		case err != nil && errors.Is(err, syscall.ECONNREFUSED):
			// sessiond is down: the request never reached it.
		case err != nil:
			ambiguous = true // sessiond died with the request in flight
		case code == http.StatusServiceUnavailable:
			ambiguous = true // the commit itself may have been cut off
		case ambiguous && (code == http.StatusNotFound || code == http.StatusUnauthorized):
			r.unknown = true // already revoked, by the attempt whose answer was lost
			return r
		default:
			r.unexpected = fmt.Sprintf("status %d", code)
			return r
		}
		if time.Now().After(deadline) {
			r.unknown, r.notApplied = ambiguous, !ambiguous
			return r
		}
		r.retried++
		if retries != nil {
			retries.Add(1)
		}
		select {
		case <-stop:
			r.unknown, r.notApplied = ambiguous, !ambiguous
			return r
		case <-time.After(50 * time.Millisecond): // Retry-After, scaled down
		}
	}
}

// traffic is a steady stream of revocations in the background.
type traffic struct {
	out       *outcomes
	n         atomic.Int64 // confirmed revocations
	retries   atomic.Int64 // attempts repeated because sessiond was away or answered 503
	done      chan struct{}
	stop      chan struct{}
	stopOnce  sync.Once
	remaining atomic.Int64
}

// startTraffic revokes vs one after another, one every pace, recording the
// answers in out.
func (s *system) startTraffic(vs []victim, pace time.Duration, out *outcomes) *traffic {
	tr := &traffic{out: out, done: make(chan struct{}), stop: make(chan struct{})}
	tr.remaining.Store(int64(len(vs)))
	go func() {
		defer close(tr.done)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for _, v := range vs {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			r := attemptUntil(v, tr.stop, &tr.retries)
			out.record(v, r)
			if r.confirmed {
				tr.n.Add(1)
			}
			tr.remaining.Add(-1)
		}
	}()
	s.t.Cleanup(func() { tr.stopOnce.Do(func() { close(tr.stop) }); <-tr.done })
	return tr
}

func (tr *traffic) confirmed() int { return int(tr.n.Load()) }

// waitConfirmed waits until n revocations of the stream are confirmed.
func (tr *traffic) waitConfirmed(t testing.TB, n int) {
	t.Helper()
	testenv.Eventually(t, recovery, func() bool { return tr.confirmed() >= n || tr.finished() },
		"fewer than %d revocations confirmed", n)
	if tr.confirmed() < n {
		t.Fatalf("the traffic ended with %d revocations confirmed, fewer than %d", tr.confirmed(), n)
	}
}

func (tr *traffic) finished() bool {
	select {
	case <-tr.done:
		return true
	default:
		return false
	}
}

// wait waits for the stream to finish.
func (tr *traffic) wait(t testing.TB) {
	t.Helper()
	testenv.Eventually(t, 2*recovery, tr.finished, "the traffic never finished")
}

// --- HTTP without failing the test -------------------------------------

// call makes one API request; errors are returned, not fatal, because fault
// tests expect them. It gives up after 10 s.
func call(method, url, token string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// probe asks a gateway's forward-auth endpoint about a token.
func probe(g *gw, token string) (int, error) {
	code, _, _, err := call(http.MethodGet, g.control+"/v1/check", token, nil)
	return code, err
}

func readyz(g *gw) int {
	code, _, _, _ := call(http.MethodGet, g.control+"/readyz", "", nil)
	return code
}

func (s *system) waitOKWithin(u string, d time.Duration) {
	s.t.Helper()
	testenv.Eventually(s.t, d, func() bool {
		code, _, _, err := call(http.MethodGet, u, "", nil)
		return err == nil && code == http.StatusOK
	}, "%s never answered 200", u)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	return ln.Addr().String()
}

// --- real processes -----------------------------------------------------

// goBuild builds ./cmd/<name> into a directory of the test's own, with the
// race detector when the test binary has it (so the build reuses the
// packages the test build compiled).
func goBuild(t *testing.T, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build %s: %v", name, err)
	}
	bin := filepath.Join(t.TempDir(), name)
	args := []string{"build", "-o", bin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, st := range bi.Settings {
			if st.Key == "-race" && st.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, goBin, append(args, "github.com/sessionguard/revoke/cmd/"+name)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	t.Logf("built %s in %s", name, time.Since(start).Round(time.Millisecond))
	return bin
}

// process is a command of the product run as a real process, so a test can
// SIGKILL it and start it again with the same environment.
type process struct {
	bin  string
	env  []string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

func startProcess(t testing.TB, bin string, env map[string]string) *process {
	t.Helper()
	p := &process{bin: bin, log: filepath.Join(t.TempDir(), filepath.Base(bin)+".log")}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	t.Cleanup(func() {
		p.stop()
		b, _ := os.ReadFile(p.log)
		if bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s reported a data race:\n%s", filepath.Base(bin), b)
		} else if t.Failed() {
			t.Logf("%s log (tail):\n%s", filepath.Base(bin), lastLines(b, 40))
		}
	})
	p.start(t)
	return p
}

// start starts the process (again); its output goes to its log.
func (p *process) start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("%s is already running", p.bin)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "--- start at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exit) }()
	p.cmd, p.exit = cmd, exit
}

// kill sends SIGKILL and waits until the process is gone.
func (p *process) kill(t testing.TB) {
	t.Helper()
	if !p.stop() {
		t.Fatalf("%s was not running", p.bin)
	}
	// Keep-alive connections to the dead process must not be reused.
	http.DefaultClient.CloseIdleConnections()
}

// gatewaydProcess starts the gatewayd binary bin as a process of its own
// against s, on free ports, with extra settings added.
func (s *system) gatewaydProcess(t *testing.T, bin string, extra map[string]string) (*process, *gw) {
	t.Helper()
	proxy, control := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"JWKS_URL": s.api + "/.well-known/jwks.json", "NATS_URL": s.natsURL, "GATEWAY_UPSTREAM": s.upstream.URL,
		"GATEWAY_ADDR": proxy, "GATEWAY_CONTROL_ADDR": control, "ISSUER": "http://sessiond.test",
	}
	maps.Copy(env, extra)
	return startProcess(t, bin, env), &gw{proxy: "http://" + proxy, control: "http://" + control}
}

// signal sends sig to the running process.
func (p *process) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		t.Fatalf("%s is not running", p.bin)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (p *process) stop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exit // SIGKILL cannot be caught: the wait is short
	p.cmd = nil
	return true
}

func lastLines(b []byte, lines int) string {
	var all []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// --- a private PostgreSQL -----------------------------------------------

// startPrivatePostgres starts a PostgreSQL server of the test's own, in a
// short temporary directory (its socket path must fit in sun_path), with a
// migrated database "revoke".
func startPrivatePostgres(t testing.TB) *pgserver.Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgf")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, dir, pgserver.Options{NoSync: true})
	if err != nil {
		os.RemoveAll(dir)
		if errors.Is(err, pgserver.ErrNoBinaries) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Stop(ctx) // it may be stopped already
		os.RemoveAll(dir)
	})
	if err := postgres.CreateDatabase(ctx, srv.URL("postgres"), "revoke", "", false); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(ctx, srv.URL("revoke"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return srv
}

// --- a NATS JetStream cluster -------------------------------------------

// natsCluster is a JetStream cluster of embedded servers in this process.
type natsCluster struct {
	t       testing.TB
	mu      sync.Mutex
	servers map[string]*server.Server // by server name; shut-down ones removed
	clients []string
}

// startNATSCluster starts n clustered JetStream servers on free loopback
// ports and waits until they have elected a meta leader.
func startNATSCluster(t testing.TB, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, servers: map[string]*server.Server{}}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for name := range c.servers {
			c.shutdownLocked(name)
		}
	})
	// Route ports are chosen up front so every node can name the others.
	routes := make([]string, n)
	for i := range routes {
		routes[i] = "nats://" + freeAddr(t)
	}
	for i := range n {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, r)
			}
		}
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(routes[i], "nats://"))
		p, _ := strconv.Atoi(port)
		name := fmt.Sprintf("fault-n%d", i+1)
		ns, err := server.NewServer(&server.Options{
			ServerName: name, Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "fault", Host: "127.0.0.1", Port: p},
			Routes:  server.RoutesFromStr(strings.Join(others, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		c.mu.Lock()
		c.servers[name] = ns
		c.mu.Unlock()
	}
	for _, ns := range c.servers {
		if !ns.ReadyForConnections(30 * time.Second) {
			t.Fatalf("NATS %s never became ready", ns.Name())
		}
		c.clients = append(c.clients, ns.ClientURL())
	}
	testenv.Eventually(t, recovery, func() bool {
		leader := false
		for _, ns := range c.servers {
			leader = leader || ns.JetStreamIsLeader()
			if !ns.JetStreamIsCurrent() {
				return false
			}
		}
		return leader
	}, "the JetStream cluster never elected a meta leader")
	return c
}

// urls is the comma-separated client URL list of every node.
func (c *natsCluster) urls() string { return strings.Join(c.clients, ",") }

// streamLeader waits until stream, replicated on every node, has a leader
// with every live replica current, and names it.
func (c *natsCluster) streamLeader(t testing.TB, stream string) string {
	t.Helper()
	nc, err := nats.Connect(c.urls())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var leader string
	testenv.Eventually(t, recovery, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			return false
		}
		if info.Config.Replicas != len(c.clients) {
			t.Fatalf("stream %s has %d replicas, want %d", stream, info.Config.Replicas, len(c.clients))
		}
		c.mu.Lock()
		_, alive := c.servers[info.Cluster.Leader]
		c.mu.Unlock()
		if !alive {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			c.mu.Lock()
			_, alive := c.servers[r.Name]
			c.mu.Unlock()
			if alive && !r.Current {
				return false
			}
		}
		leader = info.Cluster.Leader
		return true
	}, "stream %s has no leader", stream)
	return leader
}

// shutdown stops one node for good.
func (c *natsCluster) shutdown(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.servers[name]; !ok {
		c.t.Fatalf("no running NATS node %s", name)
	}
	c.shutdownLocked(name)
}

func (c *natsCluster) shutdownLocked(name string) {
	ns := c.servers[name]
	ns.Shutdown()
	ns.WaitForShutdown()
	delete(c.servers, name)
}
