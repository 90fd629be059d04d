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

// TestAwaitedRowsAskTheGatewaysToReport: an event whose receipt a caller
// waits for reaches the stream with events.HeaderAwaited, whether the fast
// path or the sweep publishes it; other events reach it without.
func TestAwaitedRowsAskTheGatewaysToReport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.quietRelay(t)
	// receipted writes one event belonging to a receipt awaited or not.
	receipted := func(awaited bool) Message {
		t.Helper()
		msgs := f.commit(t, 1)
		m := msgs[0]
		m.Receipt, m.ReceiptEvents, m.Awaited = uuid.NewString(), 1, awaited
		err := pgx.BeginFunc(t.Context(), f.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(t.Context(), `INSERT INTO revocation_receipts (id, reason, events, awaited) VALUES ($1, 'admin_revoke', 1, $2)`, m.Receipt, awaited); err != nil {
				return err
			}
			_, err := tx.Exec(t.Context(), `UPDATE outbox SET receipt_id = $1 WHERE event_id = $2`, m.Receipt, m.EventID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	want := map[string]bool{}
	// the fast path
	for _, awaited := range []bool{true, false} {
		m := receipted(awaited)
		r.Committed(t.Context(), []Message{m})
		want[m.EventID] = awaited
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return f.unsent(t) == 0 }, "fast-path rows not sent")
	// the sweep, woken by a notification
	for _, awaited := range []bool{true, false} {
		want[receipted(awaited).EventID] = awaited
	}
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
