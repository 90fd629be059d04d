package receipts

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
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

// TestViewAgreesWithEnforcement: the fleet's view settles a receipt exactly
// as the member-by-member enforcement does, whenever it settles one at all,
// over random fleets of members started before and after, departed or not.
func TestViewAgreesWithEnforcement(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	settled := 0
	for round := range 200 {
		c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
		f := NewFleet(30*time.Second, c.now, prometheus.NewRegistry())
		base := c.t
		for i := range 1 + rng.IntN(20) {
			f.Report(report(fmt.Sprint("g", i), uint64(rng.IntN(50)), base.Add(time.Duration(rng.IntN(60)-30)*time.Second)))
		}
		// some leave
		c.t = c.t.Add(time.Duration(rng.IntN(40)) * time.Second)
		for i := range rng.IntN(5) {
			f.Report(report(fmt.Sprint("g", i), uint64(40+rng.IntN(20)), base.Add(-time.Hour)))
		}
		f.Sweep()
		v := f.view(time.Time{})
		for range 20 {
			seq := uint64(rng.IntN(60))
			pub := base.Add(time.Duration(rng.IntN(80)-40) * time.Second)
			got, ok := v.enforced(seq, pub)
			want := f.enforcement(seq, pub, false)
			if !ok {
				continue
			}
			settled++
			if len(want.Pending) != 0 || got.Expected != want.Expected || got.Enforced != want.Enforced || !slices.Equal(got.Departed, want.Departed) {
				t.Fatalf("round %d, seq %d: view %+v, enforcement %+v", round, seq, got, want)
			}
		}
	}
	if settled < 200 {
		t.Fatalf("the view settled only %d of 4,000 receipts: the comparison says little", settled)
	}
}
