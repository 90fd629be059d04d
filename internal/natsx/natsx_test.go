package natsx_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestEnsureStreamsUpdatesOnlyWhatDiffers: the first call creates the
// stream, a second identical call leaves it alone (no update advisory), and
// a changed definition is applied.
func TestEnsureStreamsUpdatesOnlyWhatDiffers(t *testing.T) {
	nc, js := testenv.JetStream(t, testenv.StartNATS(t).URL())
	updates := make(chan *nats.Msg, 8)
	sub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED."+events.StreamRevocations, updates)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx := context.Background()
	ensure := func(ttl time.Duration) {
		t.Helper()
		if err := natsx.EnsureStreams(ctx, js, 1, events.RevocationsStream(ttl)); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
	}
	ensure(5 * time.Minute)
	ensure(5 * time.Minute)
	select {
	case <-updates:
		t.Fatal("a stream that matched was updated")
	case <-time.After(300 * time.Millisecond):
	}
	ensure(10 * time.Minute)
	select {
	case <-updates:
	case <-time.After(5 * time.Second):
		t.Fatal("a changed definition was not applied")
	}
	st, err := js.Stream(ctx, events.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := events.RevocationsStream(10 * time.Minute).MaxAge; info.Config.MaxAge != want {
		t.Fatalf("max age %s, want %s", info.Config.MaxAge, want)
	}
}
