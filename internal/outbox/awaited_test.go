package outbox

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestAwaitedRowsAskTheGatewaysToReport: the last event of a receipt a
// caller waits for reaches the stream with events.HeaderAwaited, whether the
// fast path or the sweep publishes it; its other events (the gateway's report
// after the last covers them) and other receipts' events reach it without.
func TestAwaitedRowsAskTheGatewaysToReport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.quietRelay(t)
	// receipted commits n events belonging to one receipt, awaited or not,
	// with the receipt in the same transaction, as the service writes them:
	// a sweep that takes them before the hand-over sees the receipt too.
	receipted := func(awaited bool, n int) []Message {
		t.Helper()
		receipt := uuid.NewString()
		var msgs []Message
		err := pgx.BeginFunc(t.Context(), f.pool, func(tx pgx.Tx) (err error) {
			if msgs, err = insertRows(t, tx, n); err != nil {
				return err
			}
			ids := make([]string, n)
			for i := range msgs {
				msgs[i].Receipt, msgs[i].ReceiptEvents, msgs[i].Awaited = receipt, n, awaited
				ids[i] = msgs[i].EventID
			}
			if _, err := tx.Exec(t.Context(), `INSERT INTO revocation_receipts (id, reason, events, awaited) VALUES ($1, 'admin_revoke', $2, $3)`, receipt, n, awaited); err != nil {
				return err
			}
			_, err = tx.Exec(t.Context(), `UPDATE outbox SET receipt_id = $1 WHERE event_id = ANY($2::uuid[])`, receipt, ids)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	want := map[string]bool{}
	expect := func(msgs []Message, awaited bool) {
		for i, m := range msgs {
			want[m.EventID] = awaited && i == len(msgs)-1
		}
	}
	// the fast path
	for _, c := range []struct {
		awaited bool
		n       int
	}{{true, 1}, {false, 1}, {true, 3}} {
		msgs := receipted(c.awaited, c.n)
		r.Committed(t.Context(), msgs)
		expect(msgs, c.awaited)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "fast-path rows not sent")
	// the sweep, woken by a notification
	expect(receipted(true, 1), true)
	expect(receipted(false, 1), false)
	expect(receipted(true, 3), true)
	if _, err := f.pool.Exec(t.Context(), `SELECT pg_notify('outbox', '')`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "swept rows not sent")

	c, err := f.js.OrderedConsumer(t.Context(), events.StreamRevocations, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for seen < len(want) {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("%d of %d events read: %v", seen, len(want), err)
		}
		ev, err := events.Decode(m.Subject(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		awaited, ok := want[ev.ID()]
		if !ok {
			continue // the first sweep's row
		}
		seen++
		if got := m.Headers().Get(events.HeaderAwaited) == "1"; got != awaited {
			t.Errorf("event %s: header %v, want %v", ev.ID(), got, awaited)
		}
	}
}
