package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionguard/revoke/events"
)

// TestReporterSaysWhatItApplied: the gateway reports its watermark at once
// after it applies a revocation, not only at its heartbeat, and its state.
func TestReporterSaysWhatItApplied(t *testing.T) {
	t.Parallel()
	w, r, reports := startReporter(t, 0) // the heartbeat never comes in this test

	w.publish(revokeSession(newGrant()))
	w.publish(revokeSession(newGrant()))
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-reports:
			ev, err := events.Decode(m.Subject, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			rep := ev.(events.GatewayApplied)
			if rep.GatewayID != r.ID() || rep.Name != "edge-test" || rep.Version != "v-test" || rep.State != events.GatewayCurrent {
				t.Fatalf("report %+v", rep)
			}
			if rep.AppliedSeq == 2 {
				if rep.StreamLastSeq < rep.AppliedSeq-1 || rep.At.Before(rep.StartedAt) {
					t.Fatalf("report %+v", rep)
				}
				return
			}
		case <-deadline:
			t.Fatal("no report of the applied revocations")
		}
	}
}

// TestReporterCoalescesWhatNobodyAwaits: progress no caller waits for waits
// for the end of the coalescing interval (here an hour, as is the
// heartbeat), while a revocation with events.HeaderAwaited is reported at
// once, in one report that carries everything applied before it too.
func TestReporterCoalescesWhatNobodyAwaits(t *testing.T) {
	t.Parallel()
	w, _, reports := startReporter(t, time.Hour)
	next := func() events.GatewayApplied {
		t.Helper()
		select {
		case m := <-reports:
			ev, err := events.Decode(m.Subject, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			return ev.(events.GatewayApplied)
		case <-time.After(5 * time.Second):
			t.Fatal("no report")
			return events.GatewayApplied{}
		}
	}
	if hello := next(); hello.AppliedSeq != 0 {
		t.Fatalf("the first report is the hello, at 0: %+v", hello)
	}
	plain := newGrant()
	w.publish(revokeSession(plain))
	w.waitDenied(w.is.sign(t, plain)) // applied, and not reported: the interval has not ended
	w.publishWith(revokeSession(newGrant()), nats.Header{events.HeaderAwaited: []string{"1"}})
	if rep := next(); rep.AppliedSeq != 2 {
		t.Fatalf("the next report must be the awaited one's, at 2, with the plain one coalesced into it: %+v", rep)
	}
}

// startReporter starts a gateway and a reporter of it with an hour's
// heartbeat and the given coalescing interval, and listens to its reports.
func startReporter(t *testing.T, interval time.Duration) (*world, *Reporter, <-chan *nats.Msg) {
	t.Helper()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	reports := make(chan *nats.Msg, 64)
	sub, err := w.nc.ChanSubscribe(events.SubjectGatewayApplied, reports)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	_ = w.nc.Flush()
	r := NewReporter(w.nc, w.gw, "edge-test", "v-test", time.Hour, interval, testLog())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Run(ctx)
	return w, r, reports
}
