package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestOrgRuleAtEveryVerifier: POST /v1/revocations with an org and a role
// becomes one rule; with Prefer: wait it answers once every gateway has it,
// and then every token of the org's users signed in before it is refused
// by both gateways, the Go middleware and sessiond, while a session signed
// in right after it, and the org's admin, work everywhere. A verifier that
// knows only the contract (auth_time as a float, auth_before as RFC 3339)
// decides the same.
func TestOrgRuleAtEveryVerifier(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 2)
	mw := s.middleware()
	cv := s.contractVerifier()
	org := s.org("ruled")
	s.member(org, "user", "ana@ruled.example")
	s.member(org, "user", "bo@ruled.example")
	s.member(org, "org_admin", "boss@ruled.example")
	covered := []pair{s.login("ana@ruled.example", "password-1"), s.login("bo@ruled.example", "password-1"), s.login("ana@ruled.example", "password-1")}
	boss := s.login("boss@ruled.example", "password-1")

	code, res, status := s.bulkRevoke(map[string]any{"org_id": org, "role": "user", "reason_text": "SSO compromised"}, 5)
	if code != http.StatusCreated || res.RevokedSessions != 3 || status != "enforced" {
		t.Fatalf("bulk revoke: %d %+v %s", code, res, status)
	}
	after := s.login("bo@ruled.example", "password-1")
	authBefore := cv.authBefore(org)

	for _, p := range covered {
		for _, g := range s.gateways {
			if code := check(t, g, p.AccessToken); code != http.StatusUnauthorized {
				t.Errorf("gateway %s accepts a covered token: %d", g.control, code)
			}
		}
		if code := mw(p.AccessToken); code != http.StatusUnauthorized {
			t.Errorf("the middleware accepts a covered token: %d", code)
		}
		if code := s.sessiondSays(p.AccessToken); code != http.StatusUnauthorized {
			t.Errorf("sessiond accepts a covered token: %d", code)
		}
		if at := cv.authTime(p.AccessToken); !(at < authBefore) {
			t.Errorf("the contract's reading: auth_time %f is not before %f", at, authBefore)
		}
	}
	for name, p := range map[string]pair{"signed in after the rule": after, "the org's admin": boss} {
		for _, g := range s.gateways {
			if code := check(t, g, p.AccessToken); code != http.StatusOK {
				t.Errorf("%s: gateway %s answers %d", name, g.control, code)
			}
		}
		if code := mw(p.AccessToken); code != http.StatusOK {
			t.Errorf("%s: the middleware answers %d", name, code)
		}
		if code := s.sessiondSays(p.AccessToken); code != http.StatusOK {
			t.Errorf("%s: sessiond answers %d", name, code)
		}
	}
	if at := cv.authTime(after.AccessToken); !(at >= authBefore) {
		t.Errorf("the contract's reading: the later sign-in's auth_time %f is before %f", at, authBefore)
	}
}

// authTime is a token's auth_time, read as a JSON number.
func (c *contractVerifier) authTime(token string) float64 {
	c.t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		c.t.Fatal(err)
	}
	var claims struct {
		AuthTime float64 `json:"auth_time"`
	}
	if err := json.Unmarshal(b, &claims); err != nil || claims.AuthTime == 0 {
		c.t.Fatalf("no auth_time in %s (%v)", b, err)
	}
	return claims.AuthTime
}

// authBefore waits for org's rule in REVOCATIONS and returns its
// auth_before, as seconds.
func (c *contractVerifier) authBefore(org string) float64 {
	c.t.Helper()
	var out float64
	waitFor(c.t, func() bool {
		cons, err := c.js.OrderedConsumer(c.t.Context(), events.StreamRevocations, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectOrgRevoked}})
		if err != nil {
			return false
		}
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			var ev struct {
				Org        string `json:"org"`
				AuthBefore string `json:"auth_before"`
			}
			if json.Unmarshal(m.Data(), &ev) != nil || ev.Org != org {
				continue
			}
			tm, err := time.Parse(time.RFC3339Nano, ev.AuthBefore)
			if err != nil {
				c.t.Fatal(err)
			}
			out = float64(tm.UnixMicro()) / 1e6
			return true
		}
		return false
	}, "the org's rule never reached the stream")
	return out
}

// TestBulkRevocationInBatchesAtEveryGateway: a device-type filter over more
// sessions than one batch revokes them session by session in several
// transactions under one receipt; with Prefer: wait the answer comes once
// every gateway has applied the last batch, and then every covered token
// is refused at both gateways while a session of another device type, and
// one signed in after the call, work everywhere.
func TestBulkRevocationInBatchesAtEveryGateway(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 2)
	org := s.org("batched")
	s.member(org, "user", "ana@batched.example")
	s.member(org, "user", "bo@batched.example")
	phones := []pair{s.device("ana@batched.example", "app", "android", "Pixel"), s.device("bo@batched.example", "app", "android", "Galaxy"),
		s.device("ana@batched.example", "app", "android", "Pixel 2")}
	laptop := s.device("bo@batched.example", "Mozilla/5.0", "web", "")
	// Enough sessions more for three transactions (of 2,000).
	const extra = 4100
	if _, err := s.pool().Exec(t.Context(), `INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
		SELECT gen_random_uuid(), u.id, u.org_id, 'android', now() - interval '1 hour', now() - interval '1 hour', now() + interval '1 day'
		FROM users u, generate_series(1, $2 / 2) WHERE u.org_id = $1`, org, extra); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(phones, laptop) {
		for _, g := range s.gateways {
			if code := check(t, g, p.AccessToken); code != http.StatusOK {
				t.Fatalf("a fresh token: gateway %s answers %d", g.control, code)
			}
		}
	}

	code, res, status := s.bulkRevoke(map[string]any{"org_id": org, "device_type": "android", "reason_text": "lost phones"}, 10)
	if code != http.StatusCreated || res.RevokedSessions != extra+len(phones) || res.RevokedUsers != 2 || status != "enforced" {
		t.Fatalf("bulk revoke: %d %+v %s", code, res, status)
	}
	later := s.device("ana@batched.example", "app", "android", "Pixel 3")
	for _, p := range phones {
		for _, g := range s.gateways {
			if code := check(t, g, p.AccessToken); code != http.StatusUnauthorized {
				t.Errorf("gateway %s accepts a revoked phone's token: %d", g.control, code)
			}
		}
	}
	for name, p := range map[string]pair{"the laptop": laptop, "a phone signed in after the call": later} {
		for _, g := range s.gateways {
			if code := check(t, g, p.AccessToken); code != http.StatusOK {
				t.Errorf("%s: gateway %s answers %d", name, g.control, code)
			}
		}
	}
	var events, complete, txs int
	// Each transaction stamps its sessions with its own instant.
	if err := s.pool().QueryRow(t.Context(), `SELECT rr.events, rr.complete::int,
			(SELECT count(DISTINCT revoked_at) FROM sessions WHERE org_id = $2 AND revoked_reason = 'admin_bulk_revoke')
		FROM revocation_receipts rr WHERE rr.id = $1`, res.RevocationID, org).Scan(&events, &complete, &txs); err != nil {
		t.Fatal(err)
	}
	if events != res.RevokedSessions || complete != 1 || txs != 3 {
		t.Fatalf("receipt: %d events (want %d), complete %d, written by %d transactions (want 3)", events, res.RevokedSessions, complete, txs)
	}
}

// TestSessionPolicyAtTheGateways: an org's session policy ends sessions
// everywhere, not only in the database: a sign-in past a revoke_oldest cap
// ends the oldest session, and the refresh of a session idle past the
// timeout ends it; both are refused at every gateway, while the sessions
// the policy leaves work on. The gateways report no activity: the test
// makes a session idle by writing its last_active_at, which the report of
// its own check of that session at a gateway would otherwise undo.
func TestSessionPolicyAtTheGateways(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 2, systemOptions{noActivity: true})
	org := s.org("governed")
	s.member(org, "user", "ana@governed.example")
	if code := s.do("PUT", "/v1/orgs/"+org+"/policy", s.admin, map[string]any{"max_sessions_per_user": 2, "on_limit": "revoke_oldest", "idle_timeout": "10m"}, nil); code != http.StatusOK {
		t.Fatalf("policy: %d", code)
	}
	oldest := s.login("ana@governed.example", "password-1")
	idle := s.login("ana@governed.example", "password-1")
	newest := s.login("ana@governed.example", "password-1") // past the cap: the oldest ends
	s.waitRefusedEverywhere(oldest.AccessToken)
	if !s.acceptedEverywhere(idle.AccessToken) || !s.acceptedEverywhere(newest.AccessToken) {
		t.Fatal("a session the cap leaves is refused")
	}
	s.age(idle.SessionID, time.Hour, 11*time.Minute, "203.0.113.9")
	if code := s.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": idle.RefreshToken}, nil); code != http.StatusUnauthorized {
		t.Fatalf("refresh of an idle session: %d, want 401", code)
	}
	s.waitRefusedEverywhere(idle.AccessToken)
	if !s.acceptedEverywhere(newest.AccessToken) {
		t.Fatal("the active session is refused")
	}
}

// TestPolicySweepAtTheGateways: a session the policy ends that nobody
// refreshes is revoked by the sweep, and its access token refused at every
// gateway, within the sweep's interval.
func TestPolicySweepAtTheGateways(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 2, systemOptions{env: map[string]string{"POLICY_SWEEP_INTERVAL": "200ms"}})
	org := s.org("swept")
	s.member(org, "user", "bo@swept.example")
	quiet := s.login("bo@swept.example", "password-1")
	busy := s.login("bo@swept.example", "password-1")
	s.age(quiet.SessionID, time.Hour, 20*time.Minute, "203.0.113.10")
	if code := s.do("PUT", "/v1/orgs/"+org+"/policy", s.admin, map[string]any{"idle_timeout": "10m"}, nil); code != http.StatusOK {
		t.Fatalf("policy: %d", code)
	}
	// The sweep ends it first: a gateway asked about the quiet session's
	// token before that would report it active (it is, being used), and it
	// would no longer be idle.
	var reason string
	testenv.Eventually(t, 10*time.Second, func() bool {
		_ = s.pool().QueryRow(t.Context(), `SELECT coalesce(revoked_reason, '') FROM sessions WHERE id = $1`, quiet.SessionID).Scan(&reason)
		return reason != ""
	}, "the sweep never ended the idle session")
	if reason != "idle_timeout" {
		t.Fatalf("the swept session's reason: %q", reason)
	}
	s.waitRefusedEverywhere(quiet.AccessToken)
	if !s.acceptedEverywhere(busy.AccessToken) {
		t.Fatal("a session active a moment ago is refused")
	}
}

// bulkResult is the answer of POST /v1/revocations.
type bulkResult struct {
	RevocationID    string `json:"revocation_id"`
	RevokedSessions int    `json:"revoked_sessions"`
	RevokedUsers    int    `json:"revoked_users"`
}

// bulkRevoke sends POST /v1/revocations as the admin with Prefer: wait=N
// and returns the status, the answer and its Revocation-Status.
func (s *system) bulkRevoke(body map[string]any, wait int) (int, bulkResult, string) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.api+"/v1/revocations", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+s.admin)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", fmt.Sprintf("wait=%d", wait))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var res bulkResult
	_ = json.NewDecoder(resp.Body).Decode(&res)
	return resp.StatusCode, res, resp.Header.Get("Revocation-Status")
}
