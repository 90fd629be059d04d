package receipts

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/outbox"
)

// TestStoreIsWokenOnlyByTheReportThatCompletesAReceipt: receipts turn
// enforced, in sequence order, exactly when the last expected gateway's
// watermark reaches them, whatever order the reports come in; heartbeats and
// reports that complete nothing do not make the store look at its receipts
// (with thousands of gateways that look would cost a core), a gateway that
// starts after the publish is not waited for, and one that was there but
// reports for the first time only now is.
func TestStoreIsWokenOnlyByTheReportThatCompletesAReceipt(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	f := NewFleet(30*time.Second, c.now, prometheus.NewRegistry())
	s := NewStore(nil, f, c.now, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	wakes := 0
	f.changed = func() { wakes++; s.check() }
	early := c.t.Add(-time.Hour)
	for _, id := range []string{"a", "b", "c"} {
		f.Report(report(id, 4, early))
	}
	s.Acked(outbox.Message{EventID: "e1", Receipt: "r1", ReceiptEvents: 1}, 5, c.t)
	s.Acked(outbox.Message{EventID: "e2", Receipt: "r2", ReceiptEvents: 1}, 7, c.t)
	c.t = c.t.Add(time.Millisecond)
	enforced := func(id string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tracked[id].enforced
	}
	step := func(name string, do func(), wantWakes int, want1, want2 bool) {
		t.Helper()
		w0 := wakes
		do()
		if got := wakes - w0; got != wantWakes {
			t.Errorf("%s: the store was woken %d times, want %d", name, got, wantWakes)
		}
		if enforced("r1") != want1 || enforced("r2") != want2 {
			t.Fatalf("%s: r1 %v, r2 %v; want %v, %v", name, enforced("r1"), enforced("r2"), want1, want2)
		}
	}
	step("heartbeats", func() {
		for _, id := range []string{"a", "b", "c", "a"} {
			f.Report(report(id, 4, early))
		}
	}, 0, false, false)
	step("a passes both", func() { f.Report(report("a", 9, early)) }, 0, false, false)
	step("a newcomer that starts after the publish", func() { f.Report(report("late", 0, c.t)) }, 0, false, false)
	step("one that was there, heard only now", func() { f.Report(report("d", 4, early)) }, 0, false, false)
	step("b reaches r1", func() { f.Report(report("b", 6, early)) }, 0, false, false)
	step("c reaches r2", func() { f.Report(report("c", 7, early)) }, 0, false, false)
	step("d, the last one short of r1, reaches it", func() { f.Report(report("d", 5, early)) }, 1, true, false)
	step("b again, still short of r2", func() { f.Report(report("b", 6, early)) }, 0, true, false)
	step("d reaches r2", func() { f.Report(report("d", 8, early)) }, 0, true, false)
	step("b, the last, reaches r2", func() { f.Report(report("b", 7, early)) }, 1, true, true)
	step("nothing waits: every report wakes the store, which finds nothing", func() { f.Report(report("a", 9, early)) }, 1, true, true)
}
