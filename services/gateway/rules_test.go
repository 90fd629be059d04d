package gateway

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/events"
)

// TestOrgRuleIsExactToTheMicrosecond: a rule refuses the tokens of its org
// (and role) whose session signed in before its auth_before, by a
// microsecond or more, and no token signed in at or after it, whatever
// second they share; other orgs and roles are untouched; a token without
// auth_time counts as signed in before every rule; the rule ends at its
// expiry.
func TestOrgRuleIsExactToTheMicrosecond(t *testing.T) {
	b := NewBlocklist()
	now := time.Date(2026, 12, 1, 9, 0, 0, 500_000_000, time.UTC)
	org, other := randomID(), randomID()
	before := now.Add(-time.Second).Add(123456789 * time.Nanosecond) // not on a µs: 09:00:00.623456789
	b.AddOrgRule(org, "", before, now.Add(6*time.Minute), now)
	b.AddOrgRule(other, "org_admin", before, now.Add(6*time.Minute), now)
	ns := now.UnixNano()
	us := func(t time.Time) int64 { return t.UnixMicro() }
	for _, tc := range []struct {
		name     string
		org      ID
		role     string
		authTime int64
		revoked  bool
	}{
		{"signed in a µs before", org, "user", us(before) - 1, true},
		{"signed in within the bound's µs", org, "user", us(before), true}, // 623456 < 623456.789
		{"signed in a µs after", org, "user", us(before) + 1, false},
		{"signed in long before, any role", org, "global_admin", us(before) - 3e6, true},
		{"no auth_time", org, "user", 0, true},
		{"the other org, another role", other, "user", us(before) - 1, false},
		{"the other org, its role", other, "org_admin", us(before) - 1, true},
		{"the other org, its role, after", other, "org_admin", us(before) + 1, false},
		{"an org without rules", randomID(), "user", 0, false},
	} {
		if got := b.RuleRevoked(tc.org, tc.role, tc.authTime, ns); got != tc.revoked {
			t.Errorf("%s: revoked %v, want %v", tc.name, got, tc.revoked)
		}
	}
	if b.RuleRevoked(org, "user", us(before)-1, now.Add(6*time.Minute).UnixNano()) {
		t.Error("a rule outlived its expiry")
	}
}

// TestOrgRulesMergeAndSweep: of two rules of one org and role the one that
// covers the other (a later bound that lasts as long) is the one kept,
// rules of other roles stay apart, and the sweep removes expired ones and
// their count.
func TestOrgRulesMergeAndSweep(t *testing.T) {
	b := NewBlocklist()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	org := randomID()
	b.AddOrgRule(org, "", now.Add(-time.Hour), now.Add(5*time.Minute), now)
	b.AddOrgRule(org, "", now, now.Add(6*time.Minute), now)                        // covers the first
	b.AddOrgRule(org, "", now.Add(-time.Minute), now.Add(6*time.Minute), now)      // covered by the second
	b.AddOrgRule(org, "user", now.Add(time.Minute), now.Add(7*time.Minute), now)   // another role
	b.AddOrgRule(org, "user", now.Add(-time.Minute), now.Add(10*time.Minute), now) // earlier bound, lasts longer: both kept
	b.AddOrgRule(randomID(), "", now, now.Add(-time.Second), now)                  // expired already: ignored
	if b.Len() != 3 || b.rules.Load() != 3 {
		t.Fatalf("Len %d, rules %d, want 3 and 3", b.Len(), b.rules.Load())
	}
	if !b.RuleRevoked(org, "org_admin", now.Add(-time.Second).UnixMicro(), now.UnixNano()) {
		t.Fatal("the kept every-role rule does not hold")
	}
	if n := b.Sweep(now.Add(8 * time.Minute)); n != 2 || b.rules.Load() != 1 || b.Len() != 1 {
		t.Fatalf("swept %d (rules %d, Len %d), want 2 gone and 1 left", n, b.rules.Load(), b.Len())
	}
	if !b.RuleRevoked(org, "user", now.Add(-2*time.Minute).UnixMicro(), now.Add(9*time.Minute).UnixNano()) {
		t.Fatal("the longest rule was swept")
	}
}

// TestOrgRuleAtTheGateway: an org rule published on REVOCATIONS refuses the
// org's tokens signed in before it and spares those signed in after, a
// token without auth_time included among the refused; a gateway that
// starts afterwards replays it.
func TestOrgRuleAtTheGateway(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	org := uuid.NewString()
	now := time.Now()
	rule := now.Add(-time.Minute).Truncate(time.Microsecond) // sessiond writes bounds and sign-ins to the µs
	mk := func(authTime time.Time, org string) string {
		g := newGrant()
		g.org, g.authTime = org, authTime
		return w.is.sign(t, g)
	}
	before, after, none := mk(rule.Add(-time.Microsecond), org), mk(rule, org), mk(time.Time{}, org)
	elsewhere := mk(rule.Add(-time.Hour), uuid.NewString())
	for _, tok := range []string{before, after, none, elsewhere} {
		if d := w.decide(tok); d.Outcome != Allow {
			t.Fatalf("before the rule a token is refused: %+v", d)
		}
	}
	w.publish(events.OrgRevoked{EventID: uuid.NewString(), Org: org, AuthBefore: rule, Reason: events.ReasonAdminBulkRevoke,
		RevokedAt: now.UTC(), ExpiresAt: now.Add(6 * time.Minute).UTC()})
	w.waitDenied(before)
	w.waitDenied(none)
	check := func() {
		t.Helper()
		if d := w.decide(before); d.Outcome != Deny || d.Reason != "org rule" {
			t.Fatalf("signed in before the rule: %+v", d)
		}
		if d := w.decide(after); d.Outcome != Allow {
			t.Fatalf("signed in at the rule's instant: %+v", d)
		}
		if d := w.decide(elsewhere); d.Outcome != Allow {
			t.Fatalf("another org: %+v", d)
		}
	}
	check()
	w.stopGateway()
	w.start()
	w.waitReady()
	check()
}
