package sessions

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sessionguard/revoke/internal/outbox"
)

// The relay is woken by NOTIFY after outbox rows commit. The NOTIFY is not
// sent inside the revocation's transaction: PostgreSQL holds a cluster-wide
// lock from a notifying transaction's commit until its WAL is flushed, so
// notifying transactions commit one at a time and never share an fsync. One
// goroutine sends it after commits instead, at most one in flight, later
// wake-ups coalescing into the next. If the process dies between a commit
// and its NOTIFY, the relay's fallback poll finds the rows within a second.

// outboxCommitted signals that outbox rows have committed.
func (s *Service) outboxCommitted() {
	select {
	case s.wake <- struct{}{}:
	default: // one is pending already; it covers this commit too
	}
}

// RunNotifier sends the relay's wake-up after commits until ctx ends.
func (s *Service) RunNotifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			if err := notifyRelay(ctx, s.pool); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "outbox wake-up not sent; the relay's poll will find the rows", "error", err.Error())
			}
		}
	}
}

// notifyRelay sends the wake-up: one statement in an implicit transaction
// that writes nothing, so its commit waits for no disk flush.
func notifyRelay(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}) error {
	_, err := db.Exec(ctx, "SELECT pg_notify($1, '')", outbox.Channel)
	return err
}
