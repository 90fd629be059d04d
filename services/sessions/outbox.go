package sessions

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/outbox"
)

// Outbox rows reach JetStream through the relay (internal/outbox). In
// sessiond the relay runs in the same process, and each transaction's rows
// are handed to it the moment the transaction commits, so that it publishes
// them at once: no database round trip lies between a revocation's commit
// and its publish. A process without a relay (revokectl, some tests) wakes
// the relays of running sessiond processes with NOTIFY instead. If the
// process dies between a commit and the hand-over, the relay's sweep finds
// the rows within a second.

// OutboxRelay takes outbox rows right after their transaction commits: the
// relay's fast path (outbox.Relay).
type OutboxRelay interface {
	Committed(ctx context.Context, msgs []outbox.Message)
}

// notifier is the relay of a process without one: it wakes the others.
type notifier struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// Committed sends the wake-up: one statement in an implicit transaction
// that writes nothing, so its commit waits for no disk flush. It is never
// sent inside the writing transaction: PostgreSQL holds a cluster-wide lock
// from a notifying transaction's commit until its WAL is flushed, so
// notifying transactions commit one at a time.
func (n notifier) Committed(ctx context.Context, _ []outbox.Message) {
	if _, err := n.pool.Exec(ctx, "SELECT pg_notify($1, '')", outbox.Channel); err != nil && ctx.Err() == nil {
		n.log.WarnContext(ctx, "outbox wake-up not sent; the relays' poll will find the rows", "error", err.Error())
	}
}

// outboxRows collects the events a transaction writes to the outbox, to be
// handed to the relay once it commits (Service.committed).
type outboxRows []outbox.Message

// queue encodes evs, adds their INSERT to b and remembers them. The rows
// belong to r's receipt (none when r is the zero revocation): then evs are
// all of its events.
func (o *outboxRows) queue(b *pgx.Batch, r revocation, evs ...events.Event) error {
	receipt := r.receipt
	if len(evs) == 0 {
		return nil
	}
	ids, subjects, payloads := make([]string, len(evs)), make([]string, len(evs)), make([][]byte, len(evs))
	for i, ev := range evs {
		p, err := events.Encode(ev)
		if err != nil {
			return err
		}
		ids[i], subjects[i], payloads[i] = ev.ID(), ev.Subject(), p
		m := outbox.Message{EventID: ids[i], Subject: subjects[i], Payload: p, Trace: r.trace}
		if receipt != "" {
			m.Receipt, m.ReceiptEvents, m.Awaited = receipt, len(evs), r.awaited
		}
		*o = append(*o, m)
	}
	b.Queue(`INSERT INTO outbox (event_id, subject, payload, receipt_id, traceparent) SELECT *, $4::uuid, $5 FROM unnest($1::uuid[], $2::text[], $3::bytea[])`,
		ids, subjects, payloads, nullable(receipt), nullable(r.trace))
	return nil
}

// queueSignal adds ev, a signal for the Shared Signals transmitter about
// org, to b, and remembers it, but only when a live stream takes org's
// signals (see sessionsSignal).
func (o *outboxRows) queueSignal(b *pgx.Batch, org string, ev events.Event) error {
	p, err := events.Encode(ev)
	if err != nil {
		return err
	}
	m := outbox.Message{EventID: ev.ID(), Subject: ev.Subject(), Payload: p}
	b.Queue(`INSERT INTO outbox (event_id, subject, payload) SELECT $1, $2, $3
		WHERE EXISTS (SELECT 1 FROM ssf_streams WHERE org_id IS NULL OR org_id = $4) RETURNING true`, m.EventID, m.Subject, m.Payload, org).
		QueryRow(func(row pgx.Row) error {
			var sent bool
			switch err := row.Scan(&sent); {
			case errors.Is(err, pgx.ErrNoRows):
				return nil
			case err != nil:
				return err
			}
			*o = append(*o, m)
			return nil
		})
	return nil
}

// queueReceipt adds the INSERT of a revocation receipt of events events to b.
func queueReceipt(b *pgx.Batch, r revocation, orgID string, events int) {
	b.Queue(`INSERT INTO revocation_receipts (id, actor_id, org_id, reason, events, awaited) VALUES ($1, $2, $3, $4, $5, $6)`,
		r.receipt, nullable(r.actorID), nullable(orgID), string(r.reason), events, r.awaited)
}

// committed hands rows whose transaction has committed to the relay. The
// request's cancellation must not stop it: the rows are committed.
func (s *Service) committed(ctx context.Context, o outboxRows) {
	if len(o) > 0 {
		s.relay.Committed(context.WithoutCancel(ctx), o)
	}
}
