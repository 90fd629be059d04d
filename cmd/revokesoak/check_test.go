package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// hist builds a synthetic history: times in ms from t0, line numbers in
// order of addition.
type hist struct {
	t0  time.Time
	ops []Op
}

func newHist() *hist { return &hist{t0: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} }

func (h *hist) at(ms int) time.Time { return h.t0.Add(time.Duration(ms) * time.Millisecond) }

func (h *hist) add(op Op) Op {
	op.Line = len(h.ops) + 2 // the header is line 1
	h.ops = append(h.ops, op)
	return op
}

// login adds a session of user u signed in over [ms, ms+10].
func (h *hist) login(ms int, u, s, jti string) {
	h.add(Op{Kind: opLogin, Start: h.at(ms), End: h.at(ms + 10), Status: 200, Target: "sessiond-1", User: u, Session: s, Token: jti, Exp: h.at(300_000)})
}

func (h *hist) check(ms int, jti string, status int) {
	h.add(Op{Kind: opCheck, Start: h.at(ms), End: h.at(ms + 1), Status: status, Target: "gateway-1", Token: jti})
}

// finals adds the end-of-run facts of a clean run where revoked is what
// the database holds revoked (and audited).
func (h *hist) finals(revoked ...string) {
	end := h.at(600_000)
	for _, f := range []Op{
		{Detail: "outbox_unsent"},
		{Detail: "revoked_sessions", List: revoked},
		{Detail: "audited_sessions", List: revoked},
		{Detail: "audited_users"},
		{Detail: "erased_users_audited"},
		{Detail: "refresh_heads"},
	} {
		f.Kind, f.Start, f.End = opFinal, end, end
		h.add(f)
	}
}

func (h *hist) fact(name string) *Op {
	for i := range h.ops {
		if h.ops[i].Kind == opFinal && h.ops[i].Detail == name {
			return &h.ops[i]
		}
	}
	return nil
}

var testHeader = Header{Kind: opHeader, Seed: 42, Staleness: 3 * time.Second, Propagation: 500 * time.Millisecond, Grace: 5 * time.Second}

// base is a clean history: two sessions of u1, one revoked by an admin and
// refused after, one live and accepted.
func base() *hist {
	h := newHist()
	h.login(0, "u1", "s1", "t1")
	h.login(20, "u1", "s2", "t2")
	h.check(100, "t1", 200)
	h.add(Op{Kind: opRevokeAdmin, Start: h.at(1000), End: h.at(1010), Status: 204, Target: "sessiond-2", Session: "s1", User: "u1"})
	h.check(1011, "t1", 200) // within the allowance: not yet required
	h.check(1100, "t1", 401)
	h.check(1200, "t2", 200)
	h.finals("s1")
	return h
}

func invariantsOf(vs []violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Invariant)
	}
	return out
}

func TestACleanHistoryHasNoViolations(t *testing.T) {
	h := base()
	if vs := check(testHeader, h.ops); len(vs) != 0 {
		var b bytes.Buffer
		report(&b, 42, vs)
		t.Fatalf("a clean history:\n%s", b.String())
	}
}

// TestTheCheckerCatchesEachViolation: each change to the clean history
// breaks exactly the invariant it should, and each change that a fault or
// an unknown outcome excuses breaks none.
func TestTheCheckerCatchesEachViolation(t *testing.T) {
	cases := []struct {
		name   string
		change func(h *hist)
		want   []string
	}{
		{"a revoked token accepted past the allowance", func(h *hist) { h.check(4600, "t1", 200) }, []string{invRevokedAccepted}},
		{"a revoked token accepted past the allowance, a fault meanwhile", func(h *hist) {
			h.add(Op{Kind: opFault, Fault: faultKill, Target: "nats-1", Start: h.at(2000), End: h.at(3000), Healed: h.at(3500)})
			h.check(4600, "t1", 200) // the window ends at 8.5 s, the deadline 12 s
		}, nil},
		{"a revoked token accepted long after a fault", func(h *hist) {
			h.add(Op{Kind: opFault, Fault: faultKill, Target: "nats-1", Start: h.at(2000), End: h.at(3000), Healed: h.at(3500)})
			h.check(12100, "t1", 200)
		}, []string{invRevokedAccepted}},
		{"a token nothing revoked refused", func(h *hist) { h.check(1300, "t2", 401) }, []string{invLiveRefused}},
		{"a token refused after an unanswered revocation", func(h *hist) {
			h.add(Op{Kind: opRevokeSelf, Start: h.at(1250), End: h.at(1260), Err: "EOF", Target: "sessiond-1", Session: "s2", User: "u1"})
			h.check(1300, "t2", 401)
		}, []string{invNo5xx}}, // the unanswered call is the only problem
		{"a token of a user revoked in full refused", func(h *hist) {
			h.add(Op{Kind: opRevokeUser, Start: h.at(1250), End: h.at(1270), Status: 200, Target: "sessiond-1", User: "u1"})
			h.check(1300, "t2", 401)
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
			h.fact("audited_users").List = []string{"u1"}
		}, nil},
		{"a user's revocation not refused", func(h *hist) {
			h.add(Op{Kind: opRevokeUser, Start: h.at(1250), End: h.at(1270), Status: 200, Target: "sessiond-1", User: "u1"})
			h.check(5000, "t2", 200)
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
			h.fact("audited_users").List = []string{"u1"}
		}, []string{invRevokedAccepted}},
		{"a session signed in during a user's revocation may go either way", func(h *hist) {
			h.add(Op{Kind: opRevokeUser, Start: h.at(1250), End: h.at(1270), Status: 200, Target: "sessiond-1", User: "u1"})
			h.login(1260, "u1", "s3", "t3")
			h.check(5000, "t3", 200)
			h.check(5001, "t3", 401)
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
			h.fact("audited_users").List = []string{"u1"}
		}, nil},
		{"no audit row", func(h *hist) { h.fact("audited_sessions").List = nil }, []string{invAudit}},
		{"not revoked in the database", func(h *hist) { h.fact("revoked_sessions").List = nil }, []string{invRevokedInDB}},
		{"the outbox never drained", func(h *hist) { h.fact("outbox_unsent").N = 3 }, []string{invOutbox}},
		{"two live refresh heads", func(h *hist) { h.fact("refresh_heads").List = []string{"s2"} }, []string{invRefreshHeads}},
		{"a 503 with no fault", func(h *hist) { h.check(1400, "t2", 503) }, []string{invNo5xx}},
		{"a 503 during a fault's grace", func(h *hist) {
			h.add(Op{Kind: opFault, Fault: faultPause, Target: "gateway-1", Start: h.at(1300), End: h.at(1500), Healed: h.at(1600)})
			h.check(6000, "t2", 503)
		}, nil},
		{"a 503 while a gateway's clock is stepped", func(h *hist) {
			h.add(Op{Kind: opFault, Fault: faultClock, Target: "gateway-1", Start: h.at(1300), End: h.at(1500), Healed: h.at(1600)})
			h.check(1400, "t2", 503)
		}, []string{invNo5xx}},
		{"a revoked token accepted past the allowance while a clock is stepped", func(h *hist) {
			h.add(Op{Kind: opFault, Fault: faultClock, Target: "gateway-1", Start: h.at(2000), End: h.at(3000), Healed: h.at(3500)})
			h.check(4600, "t1", 200)
		}, []string{invRevokedAccepted}},
		{"a clock step that never healed", func(h *hist) {
			h.add(Op{Kind: opFault, Fault: faultClock, Target: "gateway-1", Start: h.at(1300), End: h.at(1500)})
		}, []string{invRecovered}},
		{"a fault that never healed", func(h *hist) {
			h.add(Op{Kind: opFault, Fault: faultKill, Target: "sessiond-1", Start: h.at(1300), End: h.at(1500)})
		}, []string{invRecovered}},
		{"a reused refresh token accepted", func(h *hist) {
			h.add(Op{Kind: opReuse, Start: h.at(1300), End: h.at(1310), Status: 200, Target: "sessiond-1", Session: "s2", User: "u1"})
		}, []string{invReuse}},
		{"a reused refresh token refused revokes the session", func(h *hist) {
			h.add(Op{Kind: opReuse, Start: h.at(1300), End: h.at(1310), Status: 401, Target: "sessiond-1", Session: "s2", User: "u1"})
			h.check(5000, "t2", 401)
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
			h.fact("audited_sessions").List = []string{"s1", "s2"}
		}, nil},
		{"a live session could not refresh", func(h *hist) {
			h.add(Op{Kind: opRefresh, Start: h.at(1300), End: h.at(1310), Status: 401, Target: "sessiond-1", Session: "s2", User: "u1"})
		}, []string{invLiveRefused}},
		{"an erasure never confirmed", func(h *hist) {
			h.add(Op{Kind: opErase, Start: h.at(1300), End: h.at(1310), Status: 200, Target: "nats", User: "u1", Event: "e1"})
		}, []string{invErasure}},
		{"an erasure confirmed and carried out", func(h *hist) {
			h.add(Op{Kind: opErase, Start: h.at(1300), End: h.at(1310), Status: 200, Target: "nats", User: "u1", Event: "e1"})
			h.add(Op{Kind: opErased, Start: h.at(1400), End: h.at(1400), User: "u1", Event: "e1"})
			h.check(5000, "t2", 401)
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
			h.fact("erased_users_audited").List = []string{"u1"}
			h.add(Op{Kind: opFinal, Detail: "erased_user_left", User: "u1", Start: h.at(600_000), End: h.at(600_000)})
		}, nil},
		{"an erasure confirmed twice with no fault", func(h *hist) {
			h.add(Op{Kind: opErase, Start: h.at(1300), End: h.at(1310), Status: 200, Target: "nats", User: "u1", Event: "e1"})
			h.add(Op{Kind: opErased, Start: h.at(1400), End: h.at(1400), User: "u1", Event: "e1"})
			h.add(Op{Kind: opErased, Start: h.at(1500), End: h.at(1500), User: "u1", Event: "e1"})
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
			h.fact("erased_users_audited").List = []string{"u1"}
		}, []string{invErasure}},
		{"an erased user with things left and signed in again", func(h *hist) {
			h.add(Op{Kind: opErase, Start: h.at(1300), End: h.at(1310), Status: 200, Target: "nats", User: "u1", Event: "e1"})
			h.add(Op{Kind: opErased, Start: h.at(1400), End: h.at(1400), User: "u1", Event: "e1"})
			h.login(2000, "u1", "s9", "t9")
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
			h.fact("erased_users_audited").List = []string{"u1"}
			h.add(Op{Kind: opFinal, Detail: "erased_user_left", User: "u1", N: 2, Start: h.at(600_000), End: h.at(600_000)})
		}, []string{invErasure, invErasure}},
		{"an erasure without its audit row", func(h *hist) {
			h.add(Op{Kind: opErase, Start: h.at(1300), End: h.at(1310), Status: 200, Target: "nats", User: "u1", Event: "e1"})
			h.add(Op{Kind: opErased, Start: h.at(1400), End: h.at(1400), User: "u1", Event: "e1"})
			h.fact("revoked_sessions").List = []string{"s1", "s2"}
		}, []string{invAudit}},
		{"a run that did not finish", func(h *hist) {
			h.ops = h.ops[:len(h.ops)-6] // no final facts
		}, []string{invOutbox, invOutbox, invOutbox, invOutbox, invOutbox, invOutbox}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := base()
			c.change(h)
			got := invariantsOf(check(testHeader, h.ops))
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("violations %q, want %q", got, c.want)
			}
		})
	}
}

// TestAReportShowsTheSeedAndTheExcerpt: the failing run's seed, and the
// lines of the history that show each violation.
func TestAReportShowsTheSeedAndTheExcerpt(t *testing.T) {
	h := base()
	h.check(4600, "t1", 200)
	var b bytes.Buffer
	report(&b, 42, check(testHeader, h.ops))
	out := b.String()
	for _, want := range []string{"seed 42", "-seed 42", invRevokedAccepted, "line 2:", `"op":"revoke_admin"`, `"start":"2026-12-01T12:00:04.6Z"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	// The excerpt is the token's sign-in, the revocation and the check:
	// not the checks that were fine.
	if n := strings.Count(out, "   line "); n != 3 {
		t.Errorf("%d lines in the excerpt, want 3:\n%s", n, out)
	}
}

// TestThePlanFollowsTheSeed: the same seed gives the same schedule (and
// digest), another seed another; every kind of fault and every target
// comes up.
func TestThePlanFollowsTheSeed(t *testing.T) {
	a, b, c := plan(1, 500), plan(1, 500), plan(2, 500)
	if !reflect.DeepEqual(a, b) || digest(a) != digest(b) {
		t.Fatal("the same seed gave two schedules")
	}
	if reflect.DeepEqual(a, c) || digest(a) == digest(c) {
		t.Fatal("two seeds gave one schedule")
	}
	seen := map[string]bool{}
	for _, f := range a {
		seen[f.Kind+" "+f.Target] = true
		if f.Gap <= 0 || f.Hold <= 0 {
			t.Fatalf("a fault without a gap or a hold: %+v", f)
		}
	}
	for _, want := range []string{"kill sessiond-1", "pause sessiond-2", "kill gateway-4", "pause gateway-1", "kill nats-3", "pause nats-2", "restart_postgres postgres", "cut_leaf leaf-link"} {
		if !seen[want] {
			t.Errorf("500 faults and never %s", want)
		}
	}
}

// TestAHistoryReadsBackAsWritten: the recorder's file is the checker's
// input, header first, every op with its line.
func TestAHistoryReadsBackAsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	r, err := newRecorder(path, testHeader)
	if err != nil {
		t.Fatal(err)
	}
	h := base()
	for _, op := range h.ops {
		op.Line = 0
		r.add(op)
	}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hd, ops, err := readHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	if hd.Seed != 42 || hd.Staleness != 3*time.Second || len(ops) != len(h.ops) {
		t.Fatalf("header %+v, %d ops, want %d", hd, len(ops), len(h.ops))
	}
	for i := range ops {
		if !reflect.DeepEqual(ops[i], h.ops[i]) {
			t.Fatalf("op %d: %+v, want %+v", i, ops[i], h.ops[i])
		}
	}
	if _, _, err := readHistory(strings.NewReader(`{"op":"check"}` + "\n")); err == nil {
		t.Fatal("a history without its header was read")
	}
}
