package gateway

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/internal/wanlink"
)

// A point of presence: a hub NATS server (JetStream domain "hub") that
// holds REVOCATIONS, and a leaf node (domain "pop1") connected to it that
// holds a mirror of it; the gateway talks to the leaf only.

// newLink is the WAN between a leaf node and its hub, cut at the end.
func newLink(t testing.TB, target string) *wanlink.Link {
	t.Helper()
	l, err := wanlink.Listen("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Cut)
	return l
}

// TestAGatewayInAPointOfPresence: a gateway that follows the mirror in its
// leaf node refuses what the hub revokes; cut off from the hub, it fails
// closed after its staleness bound although its leaf and the mirror are
// up; when the link returns, it is current again within a second or so.
func TestAGatewayInAPointOfPresence(t *testing.T) {
	const staleness = 2 * time.Second
	leafPort := freePort(t)
	hub := testenv.StartNATSWith(t, natsx.EmbeddedOptions{Name: "hub", Domain: "hub", LeafPort: leafPort})
	wan := newLink(t, fmt.Sprintf("127.0.0.1:%d", leafPort))
	leaf := testenv.StartNATSWith(t, natsx.EmbeddedOptions{Name: "pop1", Domain: "pop1", LeafRemote: "nats-leaf://" + wan.Addr()})
	ctx := context.Background()

	hubNC, err := natsx.Connect(hub.URL(), "hub publisher", testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hubNC.Close)
	hubJS, _ := jetstream.New(hubNC)
	revocations := events.RevocationsStream(5 * time.Minute)
	if err := natsx.EnsureStreams(ctx, hubJS, 1, revocations); err != nil {
		t.Fatal(err)
	}
	leafNC, err := natsx.Connect(leaf.URL(), "pop gateway", testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leafNC.Close)
	leafJS, _ := jetstream.NewWithDomain(leafNC, "pop1")
	// The gateway makes its PoP's mirror itself, through the leaf (the
	// hub's domain is reached across the leaf link).
	viaLeaf, _ := jetstream.NewWithDomain(leafNC, "hub")

	// A revocation before the gateway starts, and one after.
	is := newIssuer(t)
	before, after := newGrant(), newGrant()
	w := &world{t: t, js: hubJS}
	w.publish(revokeSession(before))

	keys := NewKeySource(is.jwks.URL, http.DefaultClient, 100*time.Millisecond, testLog())
	if err := keys.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(keys, testIssuer, testAudience, 5*time.Second, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	bl := NewBlocklist()
	feed := NewFeed(leafJS, bl, staleness, NewMetrics(prometheus.NewRegistry()), testLog())
	feed.prepare = EnsureMirror(leafJS, viaLeaf, events.StreamRevocations)
	g := New(v, bl, feed, nil, NewMetrics(prometheus.NewRegistry()), testLog())
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = feed.Run(fctx) }()
	t.Cleanup(func() { cancel(); <-done })
	decide := func(gr grant) Outcome {
		return g.Decide(ctx, "Bearer "+is.sign(t, gr), time.Now()).Outcome
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return feed.Current() }, "the gateway never became current through the mirror")
	if o := decide(before); o != Deny {
		t.Fatalf("a revocation from before the start: %v, want refused", o)
	}
	w.publish(revokeSession(after))
	testenv.Eventually(t, 5*time.Second, func() bool { return decide(after) == Deny }, "a revocation at the hub was never refused in the point of presence")
	if applied, _ := feed.Applied(); applied != 2 {
		t.Errorf("applied sequence %d, want the hub's 2 (a mirror keeps the hub's sequences, so receipts hold)", applied)
	}
	if st, err := leafJS.Stream(ctx, events.StreamRevocations); err != nil || st.CachedInfo().Config.MaxAge != revocations.MaxAge ||
		st.CachedInfo().Config.Mirror == nil {
		t.Fatalf("the PoP's mirror: %v (%v)", st, err)
	}

	// The link to the hub is cut; the hub, the leaf and its mirror stay up.
	// Past its bound, the gateway fails closed.
	wan.Cut()
	cut := time.Now()

	testenv.Eventually(t, 10*time.Second, func() bool { return !feed.Current() }, "the gateway cut off from the hub never failed closed")
	if d := time.Since(cut); d < staleness-500*time.Millisecond {
		t.Errorf("failed closed %v after the cut, before its bound of %v", d, staleness)
	}
	if o := decide(newGrant()); o != Unavailable {
		t.Errorf("a fresh token cut off from the hub: %v, want unavailable (fail closed)", o)
	}

	// What the hub revokes meanwhile, the point of presence refuses once the
	// link is back, and the gateway is current again.
	late := newGrant()
	w.publish(revokeSession(late))
	if err := wan.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	testenv.Eventually(t, 30*time.Second, func() bool { return feed.Current() && decide(late) == Deny },
		"the gateway never recovered when the link came back")
	t.Logf("current again %v after the link came back", time.Since(healed))
	if o := decide(newGrant()); o != Allow {
		t.Errorf("a fresh token after the link healed: %v, want allowed", o)
	}
	_ = hub // stays up throughout: only the link was cut
}
