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
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	reports := make(chan *nats.Msg, 64)
	sub, err := w.nc.ChanSubscribe(events.SubjectGatewayApplied, reports)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = w.nc.Flush()
	r := NewReporter(w.nc, w.gw, "edge-test", "v-test", time.Hour, testLog()) // the heartbeat never comes in this test
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

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
