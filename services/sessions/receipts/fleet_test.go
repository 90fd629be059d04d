package receipts

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func report(id string, applied uint64, started time.Time) events.GatewayApplied {
	return events.GatewayApplied{GatewayID: id, Name: id, StartedAt: started, AppliedSeq: applied, State: events.GatewayCurrent}
}

// TestAGatewaysClockIsMovedOntoOurs: a gateway whose clock runs ahead
// reports a start after a revocation it was there for; its started_at is
// moved onto sessiond's clock by the offset its reports show, so it is
// still expected to enforce it, and one behind is not expected for one
// published before it really started.
func TestAGatewaysClockIsMovedOntoOurs(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	f := NewFleet(30*time.Second, c.now, prometheus.NewRegistry())
	// A report of a gateway that says it started at startedThere and whose
	// clock runs skew from ours, sent a millisecond ago.
	skewed := func(id string, startedThere time.Time, skew time.Duration) events.GatewayApplied {
		r := report(id, 0, startedThere)
		r.At = c.t.Add(skew - time.Millisecond)
		return r
	}
	started := c.t
	aheadStart, behindStart := started.Add(20*time.Second), started.Add(2*time.Second).Add(-20*time.Second)
	f.Report(skewed("ahead", aheadStart, 20*time.Second))
	c.t = c.t.Add(2 * time.Second)
	f.Report(skewed("behind", behindStart, -20*time.Second))
	published := started.Add(time.Second) // after ahead started, before behind did
	e := f.enforcement(5, published, false)
	if e.Expected != 1 || len(e.Pending) != 1 || e.Pending[0] != "ahead" {
		t.Fatalf("%+v: want only ahead expected (and pending)", e)
	}
	// A later step of its clock forward moves its start earlier, never later.
	c.t = started.Add(3 * time.Second)
	f.Report(skewed("behind", behindStart, -19*time.Second))
	f.Report(skewed("behind", behindStart, -25*time.Second))
	if got := f.List(); len(got) != 2 || !got[1].StartedAt.Before(started.Add(2*time.Second)) || got[1].StartedAt.Before(started.Add(time.Second)) {
		t.Fatalf("fleet %+v: behind's start is not near %v", got, started.Add(2*time.Second))
	}
}

// TestEnforcementFollowsTheWatermarks: a revocation is enforced once every
// gateway started by its publish has applied its sequence; gateways started
// later are not waited for; a silent one leaves and is named.
func TestEnforcementFollowsTheWatermarks(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	f := NewFleet(30*time.Second, c.now, prometheus.NewRegistry())
	early := c.t.Add(-time.Hour)
	f.Report(report("a", 10, early))
	f.Report(report("b", 12, early))
	published := c.t

	e := f.enforcement(12, published, true)
	if e.Expected != 2 || e.Enforced != 1 || len(e.Pending) != 1 || e.Pending[0] != "a" {
		t.Fatalf("%+v, want a pending", e)
	}
	// A gateway that starts after the publish replays; it is not expected.
	f.Report(report("late", 0, c.t.Add(time.Second)))
	if e := f.enforcement(12, published, true); e.Expected != 2 {
		t.Fatalf("%+v: the late gateway is expected", e)
	}
	c.t = c.t.Add(5 * time.Millisecond)
	f.Report(report("a", 12, early))
	e = f.enforcement(12, published, true)
	if len(e.Pending) != 0 || e.Enforced != 2 || !e.At.Equal(c.t) {
		t.Fatalf("%+v, want enforced at %v (when a's report came)", e, c.t)
	}
	// Watermarks never go back.
	f.Report(report("a", 3, early))
	if e := f.enforcement(12, published, false); len(e.Pending) != 0 {
		t.Fatalf("an older report moved a's watermark back: %+v", e)
	}
	// b stops reporting; past the silence it leaves, and a revocation it
	// did not apply no longer waits for it, but names it.
	f.Report(report("a", 20, early))
	c.t = c.t.Add(31 * time.Second)
	f.Report(report("a", 20, early))
	f.Report(report("late", 20, c.t))
	if left := f.Sweep(); !left {
		t.Fatal("b did not leave")
	}
	e = f.enforcement(20, published, true)
	if len(e.Pending) != 0 || e.Expected != 1 || len(e.Departed) != 1 || e.Departed[0] != "b" || !e.At.Equal(c.t) {
		t.Fatalf("%+v, want enforced with b departed", e)
	}
	if got := f.List(); len(got) != 2 || got[0].ID != "a" || got[1].ID != "late" {
		t.Fatalf("fleet %+v", got)
	}
	// A revocation published after b left never expected b: it is not named.
	c.t = c.t.Add(time.Second)
	if e := f.enforcement(21, c.t, false); len(e.Departed) != 0 || e.Expected != 2 {
		t.Fatalf("%+v: a gateway gone before the publish is named", e)
	}
}

// TestReachedReadsTheHistory: when a gateway reached a sequence is told from
// its recent watermarks.
func TestReachedReadsTheHistory(t *testing.T) {
	m := &member{}
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := 1; i <= history+10; i++ {
		at := base.Add(time.Duration(i) * time.Millisecond)
		if len(m.points) < history {
			m.points = append(m.points, point{uint64(i * 2), at})
		} else {
			m.points[m.next] = point{uint64(i * 2), at}
			m.next = (m.next + 1) % history
		}
		m.AppliedSeq, m.LastSeenAt = uint64(i*2), at
	}
	if at, ok := m.reached(2001); !ok || !at.Equal(base.Add(1001*time.Millisecond)) {
		t.Fatalf("reached 2001 at %v %v", at, ok)
	}
	if _, ok := m.reached(uint64(2*(history+10) + 1)); ok {
		t.Fatal("reached a sequence beyond the watermark")
	}
	if at, _ := m.reached(1); !at.Equal(base.Add(11 * time.Millisecond)) { // older than the history: its oldest point
		t.Fatalf("reached 1 at %v", at)
	}
}
