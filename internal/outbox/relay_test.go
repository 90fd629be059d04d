package outbox

import (
	"context"
	"errors"

	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	pool *pgxpool.Pool
	nats *testenv.NATSServer
	nc   *nats.Conn
	js   jetstream.JetStream
}

func newFixture(t *testing.T) *fixture { return newFixtureTB(t) }

func newFixtureTB(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{pool: testenv.Postgres(t), nats: testenv.StartNATS(t)}
	f.nc, f.js = testenv.JetStream(t, f.nats.URL())
	if err := natsx.EnsureStreams(t.Context(), f.js, 1, events.RevocationsStream(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) relay(_ testing.TB, js Publisher) *Relay {
	cfg := DefaultConfig()
	cfg.MaxBackoff = 200 * time.Millisecond
	cfg.AckTimeout = time.Second
	cfg.Batch = 64
	return New(f.pool, js, cfg, prometheus.NewRegistry(), quiet)
}

func (f *fixture) run(t testing.TB, r *Relay) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// insert writes n session revocation events in one committed transaction
// (or a rolled back one) and returns their ids.
func (f *fixture) insert(t *testing.T, n int, commit bool) []string {
	t.Helper()
	var ids []string
	err := pgx.BeginFunc(t.Context(), f.pool, func(tx pgx.Tx) error {
		msgs, err := insertRows(t, tx, n)
		if err != nil {
			return err
		}
		ids = eventIDs(msgs)
		if _, err := tx.Exec(t.Context(), `SELECT pg_notify('outbox', '')`); err != nil {
			return err
		}
		if !commit {
			return errRollback
		}
		return nil
	})
	if err != nil && !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	return ids
}

var errRollback = errors.New("rollback")

// streamIDs reads every message of REVOCATIONS and counts them by event id.
func (f *fixture) streamIDs(t *testing.T) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, events.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	if info.State.Msgs == 0 {
		return out
	}
	c, err := f.js.OrderedConsumer(ctx, events.StreamRevocations, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for got := uint64(0); got < info.State.Msgs; {
		batch, err := c.Fetch(int(min(info.State.Msgs-got, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got++
			ev, err := events.Decode(m.Subject(), m.Data())
			if err != nil {
				t.Fatalf("undecodable message: %v", err)
			}
			if m.Headers().Get(nats.MsgIdHdr) != ev.ID() {
				t.Fatalf("Nats-Msg-Id %q differs from event_id %q", m.Headers().Get(nats.MsgIdHdr), ev.ID())
			}
			out[ev.ID()]++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (f *fixture) unsent(t *testing.T) int {
	var n int
	if err := f.pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox WHERE sent_at IS NULL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func assertExactlyOnce(t *testing.T, got map[string]int, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("stream holds %d distinct events, want %d", len(got), len(want))
	}
	for _, id := range want {
		if got[id] != 1 {
			t.Fatalf("event %s is in the stream %d times", id, got[id])
		}
	}
}

func TestRelayPublishesCommittedRowsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.run(t, f.relay(t, f.js))
	ids := f.insert(t, 10, true)
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "outbox not drained")
	assertExactlyOnce(t, f.streamIDs(t), ids)
}

func TestRolledBackTransactionPublishesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.run(t, f.relay(t, f.js))
	f.insert(t, 5, false)
	committed := f.insert(t, 1, true) // a marker that must arrive
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "outbox not drained")
	assertExactlyOnce(t, f.streamIDs(t), committed)
}

// TestNATSDownDuringBurst: NATS goes away, revocations keep committing, and
// all of them arrive once NATS is back.
func TestNATSDownDuringBurst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.run(t, f.relay(t, f.js))
	var want []string
	want = append(want, f.insert(t, 20, true)...)
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "first batch not drained")
	f.nats.Stop()
	for i := 0; i < 20; i++ {
		want = append(want, f.insert(t, 10, true)...)
	}
	if f.unsent(t) == 0 {
		t.Fatal("rows were marked sent while NATS was down")
	}
	f.nats.Start()
	testenv.Eventually(t, 30*time.Second, func() bool { return f.unsent(t) == 0 }, "outbox not drained after NATS came back")
	assertExactlyOnce(t, f.streamIDs(t), want)
}

// crashingPublisher publishes for real, then makes the relay's transaction
// fail before it can mark the rows sent: a crash between publish and
// mark-sent.
type crashingPublisher struct {
	Publisher
	cancel context.CancelFunc
	once   sync.Once
}

func (c *crashingPublisher) PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := c.Publisher.PublishMsgAsync(msg, opts...)
	if err == nil {
		<-f.Ok()
		c.once.Do(c.cancel)
	}
	return f, err
}

func TestCrashBetweenPublishAndMarkSentIsDeduplicated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.insert(t, 30, true)
	ctx, cancel := context.WithCancel(t.Context())
	crashing := f.relay(t, &crashingPublisher{Publisher: f.js, cancel: cancel})
	if _, err := crashing.RelayOnce(ctx); err == nil {
		t.Fatal("the crashing relay's transaction committed")
	}
	if f.unsent(t) != 30 {
		t.Fatal("rows were marked sent although the relay crashed")
	}
	if len(f.streamIDs(t)) == 0 {
		t.Fatal("the crashing relay published nothing; the test proves nothing")
	}
	f.run(t, f.relay(t, f.js))
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "outbox not drained")
	assertExactlyOnce(t, f.streamIDs(t), ids)
}

func TestTwoRelaysShareOneOutbox(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	nc2, err := natsx.Connect(f.nats.URL(), "second", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	f.run(t, f.relay(t, f.js))
	f.run(t, f.relay(t, js2))
	var (
		mu   sync.Mutex
		want []string
		wg   sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				ids := f.insert(t, 5, true)
				mu.Lock()
				want = append(want, ids...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	testenv.Eventually(t, 30*time.Second, func() bool { return f.unsent(t) == 0 }, "outbox not drained")
	assertExactlyOnce(t, f.streamIDs(t), want)
	f.assertPublishedOnce(t)
}

func TestPruneRemovesOnlyOldSentRows(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.insert(t, 3, true)
	r := f.relay(t, f.js)
	if _, err := r.RelayOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.insert(t, 2, true) // unsent
	if _, err := f.pool.Exec(t.Context(), "UPDATE outbox SET sent_at = now() - interval '2 days' WHERE sent_at IS NOT NULL"); err != nil {
		t.Fatal(err)
	}
	r.prune(t.Context())
	var total int
	_ = f.pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox").Scan(&total)
	if total != 2 || f.unsent(t) != 2 {
		t.Fatalf("after prune: %d rows, %d unsent; want 2 unsent only", total, f.unsent(t))
	}
}

// commit writes n session revocation events in one committed transaction,
// without waking any relay, and returns them as the fast path gets them.
func (f *fixture) commit(t *testing.T, n int) []Message {
	t.Helper()
	var msgs []Message
	err := pgx.BeginFunc(t.Context(), f.pool, func(tx pgx.Tx) (err error) {
		msgs, err = insertRows(t, tx, n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// insertRows writes n session revocation events in tx.
func insertRows(t *testing.T, tx pgx.Tx, n int) ([]Message, error) {
	msgs := make([]Message, 0, n)
	for i := 0; i < n; i++ {
		ev := events.SessionRevoked{EventID: uuid.NewString(), SID: uuid.NewString(), Sub: uuid.NewString(), Org: uuid.NewString(),
			Reason: events.ReasonAdminRevoke, RevokedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(6 * time.Minute).UTC()}
		p, err := events.Encode(ev)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(t.Context(), `INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)`, ev.EventID, ev.Subject(), p); err != nil {
			return nil, err
		}
		msgs = append(msgs, Message{EventID: ev.EventID, Subject: ev.Subject(), Payload: p})
	}
	return msgs, nil
}

// streamIDsSince is streamIDs without the events before held.
func (f *fixture) streamIDsSince(t *testing.T, before map[string]int) map[string]int {
	got := f.streamIDs(t)
	for id := range before {
		delete(got, id)
	}
	return got
}

// assertPublishedOnce checks that no outbox row was published twice.
func (f *fixture) assertPublishedOnce(t *testing.T) {
	t.Helper()
	var attempts int
	if err := f.pool.QueryRow(t.Context(), "SELECT max(attempts) FROM outbox").Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 {
		t.Fatalf("a row was published %d times", attempts)
	}
}

func eventIDs(msgs []Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.EventID
	}
	return ids
}

// quietRelay runs a relay whose sweep, after its first pass, only runs when
// woken: rows it neither hears of (NOTIFY) nor gets through Committed stay
// unsent for the test's lifetime.
func (f *fixture) quietRelay(t *testing.T) *Relay {
	t.Helper()
	r := f.relay(t, f.js)
	r.cfg.Poll = time.Hour
	f.run(t, r)
	// the first sweep is over once a notified row is sent
	f.insert(t, 1, true)
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "the relay's first sweep did not end")
	return r
}

// TestFastPathPublishesAndMarksWithoutTheSweep: rows handed to Committed
// reach JetStream once and are marked sent, with no sweep to do it.
func TestFastPathPublishesAndMarksWithoutTheSweep(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.quietRelay(t)
	before := f.streamIDs(t)
	var want []string
	for i := 0; i < 20; i++ {
		msgs := f.commit(t, 1+i%3)
		r.Committed(t.Context(), msgs)
		want = append(want, eventIDs(msgs)...)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "fast-path rows not marked sent")
	assertExactlyOnce(t, f.streamIDsSince(t, before), want)
	f.assertPublishedOnce(t)
}

// TestFastPathLeavesRowsToTheSweepWhileNATSIsDown: rows handed to Committed
// while NATS is away stay unsent, and arrive exactly once when it is back,
// although no NOTIFY and no poll wakes the sweep.
func TestFastPathLeavesRowsToTheSweepWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.quietRelay(t)
	before := f.streamIDs(t)
	f.nats.Stop()
	var want []string
	for i := 0; i < 10; i++ {
		msgs := f.commit(t, 3)
		r.Committed(t.Context(), msgs)
		want = append(want, eventIDs(msgs)...)
	}
	// the fast path's acks time out (AckTimeout is 1 s here) and its
	// failure wakes the sweep, which backs off while NATS is away
	testenv.Eventually(t, 10*time.Second, func() bool { return !r.healthy.Load() }, "the fast path did not notice that NATS is away")
	if f.unsent(t) != len(want) {
		t.Fatalf("%d rows unsent while NATS is down, want %d", f.unsent(t), len(want))
	}
	f.nats.Start()
	testenv.Eventually(t, 30*time.Second, func() bool { return f.unsent(t) == 0 }, "outbox not drained after NATS came back")
	assertExactlyOnce(t, f.streamIDsSince(t, before), want)
	testenv.Eventually(t, 10*time.Second, func() bool { return r.healthy.Load() }, "the fast path did not resume")
}
