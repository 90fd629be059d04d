package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestAStalledConsumerIsReplaced: a consumer that delivers nothing while
// the stream holds more (paused here; in the soak, a consumer whose reset
// waited out a request to a stream that had lost its leader) is given up
// after stallAfter, and its successor starts after the watermark: what was
// published meanwhile is refused, and nothing is applied twice.
func TestAStalledConsumerIsReplaced(t *testing.T) {
	w := newWorld(t, time.Minute)
	first := newGrant()
	w.publish(revokeSession(first))
	w.start()
	w.waitReady()
	applied := func() float64 { return counterValue(t, w.feed.metrics.applied) }
	if applied() != 1 {
		t.Fatalf("applied %v, want 1", applied())
	}
	ctx := context.Background()
	stream, err := w.js.Stream(ctx, events.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	var paused int
	for name := range stream.ConsumerNames(ctx).Name() {
		if _, err := w.js.PauseConsumer(ctx, events.StreamRevocations, name, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		paused++
	}
	if paused != 1 {
		t.Fatalf("%d consumers paused, want the feed's one", paused)
	}
	late := newGrant()
	w.publish(revokeSession(late))
	testenv.Eventually(t, 15*time.Second, func() bool { return w.decide(w.is.sign(t, late)).Outcome == Deny },
		"a revocation published while the consumer was stalled was never applied")
	if o := w.decide(w.is.sign(t, first)).Outcome; o != Deny {
		t.Fatalf("the first revocation after the new consumer: %v", o)
	}
	if applied() != 2 {
		t.Fatalf("applied %v, want 2: the new consumer starts after the watermark", applied())
	}
}
