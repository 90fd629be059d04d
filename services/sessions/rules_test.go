package sessions_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestRevocationByRule: a filter of an org, a role and a sign-in bound
// commits one rule and one revocations.v1.org event, whatever the number of
// sessions. From the call's return the covered sessions are not listed,
// cannot refresh, cannot be addressed and their tokens are refused, while a
// session signed in a microsecond after the bound, or of another role or
// org, lives on; the marker then marks every covered row, with its audit
// row, and marks the rule done.
func TestRevocationByRule(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	ctx := context.Background()
	org, other := e.Org("A"), e.Org("B")
	_, ana := e.User(org, "user")
	_, bo := e.User(org, "user")
	_, boss := e.User(org, "org_admin")
	_, stranger := e.User(other, "user")
	base := time.Now().UTC().Truncate(time.Second).Add(2 * time.Second) // the admin's token stays valid
	e.Clock.Set(base)
	covered := []sessions.TokenPair{e.Login(ana, "password-1"), e.Login(bo, "password-1")}
	e.Clock.Set(base.Add(time.Second - time.Microsecond))
	covered = append(covered, e.Login(ana, "password-1")) // a µs before the bound
	e.Clock.Set(base.Add(time.Second))
	atBound := e.Login(bo, "password-1") // signed in at the bound: after it
	admin := e.Login(boss, "password-1") // another role
	e.Clock.Set(base.Add(-10 * time.Second))
	elsewhere := e.Login(stranger, "password-1")
	e.Clock.Set(base.Add(2 * time.Second))
	outboxBefore := e.Count("outbox")

	bound := base.Add(time.Second)
	root, err := e.Svc.Authenticate(ctx, e.Admin.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Svc.RevokeByFilter(ctx, root,
		sessions.BulkFilter{OrgID: org, Role: "user", SignedInBefore: &bound, ReasonText: "SSO compromised"}, sessions.ClientMeta{})
	if err != nil || res.RevokedSessions != 3 || res.RevokedUsers != 2 || res.RevocationID == "" {
		t.Fatalf("%+v %v", res, err)
	}
	if n := e.Count("outbox") - outboxBefore; n != 1 || e.Count("outbox WHERE subject = '"+events.SubjectOrgRevoked+"'") != 1 {
		t.Fatalf("%d outbox rows, want the one rule event", n)
	}
	if e.Count("sessions WHERE revoked_at IS NOT NULL") != 0 {
		t.Fatal("the rule's transaction marked session rows: it must stay small")
	}
	live := map[string]bool{}
	var list struct{ Sessions []struct{ ID string } }
	if code := e.Call("GET", "/v1/sessions?org_id="+org, e.Admin.AccessToken, nil, &list); code != 200 {
		t.Fatalf("list: %d", code)
	}
	for _, s := range list.Sessions {
		live[s.ID] = true
	}
	for _, p := range covered {
		if live[p.SessionID] {
			t.Errorf("covered session %s is listed", p.SessionID)
		}
		if code := e.Refresh(p.RefreshToken, nil); code != 401 {
			t.Errorf("covered session refreshed: %d", code)
		}
		if code := e.Call("GET", "/v1/me/sessions", p.AccessToken, nil, nil); code != 401 {
			t.Errorf("a covered session's token is accepted: %d", code)
		}
		if code := e.Call("DELETE", "/v1/sessions/"+p.SessionID, e.Admin.AccessToken, nil, nil); code != 404 {
			t.Errorf("a covered session can be addressed: %d", code)
		}
	}
	for name, p := range map[string]sessions.TokenPair{"signed in at the bound": atBound, "an org admin": admin} {
		if !live[p.SessionID] {
			t.Errorf("%s: not listed", name)
		}
		if code := e.Call("GET", "/v1/me/sessions", p.AccessToken, nil, nil); code != 200 {
			t.Errorf("%s: its token is refused: %d", name, code)
		}
	}
	if code := e.Call("GET", "/v1/me/sessions", elsewhere.AccessToken, nil, nil); code != 200 {
		t.Errorf("another org's session: %d", code)
	}

	// The marker: nothing left to mark only once the rule has settled.
	markAll(t, e)
	if n := e.Count("sessions WHERE revoked_reason = 'admin_bulk_revoke'"); n != 3 {
		t.Fatalf("%d session rows marked, want 3", n)
	}
	if n := e.Count("audit_log WHERE action = 'session_revoked' AND reason = 'admin_bulk_revoke'"); n != 3 {
		t.Fatalf("%d per-session audit rows, want 3", n)
	}
	if e.Count("refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE revoked_reason = 'admin_bulk_revoke')") != 0 {
		t.Fatal("a covered session kept its refresh tokens")
	}
	if e.Count("revocation_rules WHERE marked_at IS NOT NULL") != 1 {
		t.Fatal("the rule is not marked done")
	}
	if e.Count("audit_log WHERE action = 'bulk_revoke' AND (detail->>'revoked_sessions')::int = 3 AND detail->>'reason_text' = 'SSO compromised'") != 1 {
		t.Fatal("the rule's own audit entry is missing, or lacks its count or reason")
	}
	// A lost stream gets the live rule again.
	if _, err := e.Svc.Republish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n := e.Count("outbox WHERE subject = '" + events.SubjectOrgRevoked + "'"); n != 2 {
		t.Fatalf("%d rule events after a republish, want the first and its copy", n)
	}
}

// markAll runs the marker until it has nothing to do, past the settling
// time.
func markAll(t *testing.T, e *sessionstest.Env) {
	t.Helper()
	e.Clock.Advance(6 * time.Second)
	for range 1000 {
		if _, err := e.Svc.MarkRules(context.Background()); errors.Is(err, sessions.ErrNoRuleToMark) {
			return
		} else if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("the marker never finished")
}

// TestRuleMarkingSurvivesRestartsAndReplicas: 12,000 covered sessions are
// marked once each, with one audit row each, by a marker that stops after
// one batch and by two replicas sharing the rest.
func TestRuleMarkingSurvivesRestartsAndReplicas(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	ctx := context.Background()
	org := e.Org("A")
	uid, _ := e.User(org, "user")
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	if _, err := e.Pool.Exec(ctx, `INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
		SELECT gen_random_uuid(), $1, $2, 'web', $3::timestamptz, $3::timestamptz, $3::timestamptz + interval '30 days' FROM generate_series(1, 12000)`, uid, org, base); err != nil {
		t.Fatal(err)
	}
	e.Clock.Set(base.Add(time.Minute))
	res, err := e.Svc.RevokeByFilter(ctx, sessions.SystemPrincipal, sessions.BulkFilter{OrgID: org}, sessions.ClientMeta{})
	if err != nil || res.RevokedSessions != 12000 {
		t.Fatalf("%+v %v", res, err)
	}
	e.Clock.Advance(10 * time.Second)
	if n, err := e.Svc.MarkRules(ctx); err != nil || n != 5000 {
		t.Fatalf("first batch: %d %v", n, err)
	} // ... and the process stops here; two replicas take over
	cfg := sessionstest.Config()
	cfg.Now = e.Clock.Now
	replica, err := sessions.NewService(e.Pool, e.Keys, e.KEK, cfg, sessions.NewMetrics(prometheus.NewRegistry()), nil, e.Log)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, svc := range []*sessions.Service{e.Svc, replica} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := svc.MarkRules(ctx); err != nil {
					if !errors.Is(err, sessions.ErrNoRuleToMark) {
						t.Error(err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := e.Count("sessions WHERE revoked_reason = 'admin_bulk_revoke'"); n != 12000 {
		t.Fatalf("%d of 12000 marked", n)
	}
	if n := e.Count("audit_log WHERE action = 'session_revoked' AND reason = 'admin_bulk_revoke'"); n != 12000 {
		t.Fatalf("%d audit rows for 12000 sessions", n)
	}
	if e.Count("revocation_rules WHERE marked_at IS NOT NULL") != 1 {
		t.Fatal("the rule is not marked done")
	}
}

// TestARuleWaitingToSettleHoldsUpNoOther: a rule with no rows left that
// has not settled yet is passed over, and the next rule's rows are marked
// at once; once settled, both are marked done.
func TestARuleWaitingToSettleHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	ctx := context.Background()
	first, second := e.Org("A"), e.Org("B")
	_, ana := e.User(first, "user")
	uid, _ := e.User(second, "user")
	e.Login(ana, "password-1")
	e.Clock.Advance(time.Second)
	if _, err := e.Svc.RevokeByFilter(ctx, sessions.SystemPrincipal, sessions.BulkFilter{OrgID: first}, sessions.ClientMeta{}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Svc.MarkRules(ctx); n != 1 || err != nil {
		t.Fatalf("the first rule's row: %d %v", n, err)
	}
	// The first rule has nothing left but has not settled; a second comes.
	if _, err := e.Pool.Exec(ctx, `INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
		SELECT gen_random_uuid(), $1, $2, 'web', $3::timestamptz, $3::timestamptz, $3::timestamptz + interval '30 days' FROM generate_series(1, 3)`,
		uid, second, e.Clock.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(time.Second)
	if _, err := e.Svc.RevokeByFilter(ctx, sessions.SystemPrincipal, sessions.BulkFilter{OrgID: second}, sessions.ClientMeta{}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Svc.MarkRules(ctx); n != 3 || err != nil {
		t.Fatalf("the second rule waited behind the first: %d %v", n, err)
	}
	if _, err := e.Svc.MarkRules(ctx); !errors.Is(err, sessions.ErrNoRuleToMark) || e.Count("revocation_rules WHERE marked_at IS NULL") != 2 {
		t.Fatalf("before settling: %v, %d unmarked", err, e.Count("revocation_rules WHERE marked_at IS NULL"))
	}
	markAll(t, e)
	if n := e.Count("revocation_rules WHERE marked_at IS NULL"); n != 0 {
		t.Fatalf("%d rules not marked done after settling", n)
	}
}
