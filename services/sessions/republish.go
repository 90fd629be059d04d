package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/outbox"
)

// Republish puts every live revocation back in the outbox, as new events with
// the same content, for a REVOCATIONS stream that was lost or recreated. The
// relay then publishes them like any other; gateways apply them idempotently.
// It returns how many it queued, and tells progress (when not nil) the
// count so far after each batch of 1,000.
func (s *Service) Republish(ctx context.Context, progress func(queued int)) (int, error) {
	total := 0
	var after int64
	for {
		var out outboxRows
		err := s.inTx(ctx, "Republish", func(tx pgx.Tx) error {
			var evs []events.Event
			rows, err := tx.Query(ctx, `SELECT id, kind, value, sid, sub, org, not_before, reason, revoked_at, expires_at
				FROM revocations WHERE expires_at > now() AND id > $1 ORDER BY id LIMIT 1000`, after)
			if err != nil {
				return err
			}
			for rows.Next() {
				var (
					id                    int64
					kind, value, sub, org string
					reason                string
					sid                   *string
					notBefore             *time.Time
					revokedAt, expiresAt  time.Time
				)
				if err := rows.Scan(&id, &kind, &value, &sid, &sub, &org, &notBefore, &reason, &revokedAt, &expiresAt); err != nil {
					rows.Close()
					return err
				}
				after = id
				ev, err := revocationEvent(kind, value, sid, sub, org, notBefore, events.Reason(reason), revokedAt, expiresAt)
				if err != nil {
					rows.Close()
					return err
				}
				evs = append(evs, ev)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if len(evs) == 0 {
				return nil
			}
			b := &pgx.Batch{}
			if err := out.queue(b, revocation{}, evs...); err != nil {
				return err
			}
			return tx.SendBatch(ctx, b).Close()
		})
		if err != nil {
			return total, fmt.Errorf("%w: republish: %w", ErrUnavailable, err)
		}
		s.committed(ctx, out)
		total += len(out)
		if progress != nil && len(out) > 0 {
			progress(total)
		}
		if len(out) < 1000 {
			n, err := s.republishRules(ctx)
			return total + n, err
		}
	}
}

// republishRules queues every live revocation rule again, as new events.
func (s *Service) republishRules(ctx context.Context) (int, error) {
	var out outboxRows
	err := s.inTx(ctx, "republishRules", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT org_id::text, COALESCE(role, ''), auth_before, created_at, expires_at
			FROM revocation_rules WHERE expires_at > now()`)
		if err != nil {
			return err
		}
		evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (events.Event, error) {
			e := events.OrgRevoked{EventID: uuid.NewString(), Reason: events.ReasonAdminBulkRevoke}
			err := row.Scan(&e.Org, &e.Role, &e.AuthBefore, &e.RevokedAt, &e.ExpiresAt)
			e.AuthBefore, e.RevokedAt, e.ExpiresAt = e.AuthBefore.UTC(), e.RevokedAt.UTC(), e.ExpiresAt.UTC()
			return e, err
		})
		if err != nil || len(evs) == 0 {
			return err
		}
		b := &pgx.Batch{}
		if err := out.queue(b, revocation{}, evs...); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("%w: republish rules: %w", ErrUnavailable, err)
	}
	s.committed(ctx, out)
	return len(out), nil
}

func revocationEvent(kind, value string, sid *string, sub, org string, notBefore *time.Time, reason events.Reason, revokedAt, expiresAt time.Time) (events.Event, error) {
	id := uuid.NewString()
	switch kind {
	case "session":
		return events.SessionRevoked{EventID: id, SID: value, Sub: sub, Org: org, Reason: reason, RevokedAt: revokedAt.UTC(), ExpiresAt: expiresAt.UTC()}, nil
	case "token":
		s := ""
		if sid != nil {
			s = *sid
		}
		return events.TokenRevoked{EventID: id, JTI: value, SID: s, Sub: sub, Org: org, Reason: reason, RevokedAt: revokedAt.UTC(), ExpiresAt: expiresAt.UTC()}, nil
	case "user":
		if notBefore == nil {
			return nil, fmt.Errorf("user revocation of %s without not_before", value)
		}
		return events.UserRevoked{EventID: id, Sub: sub, Org: org, NotBefore: notBefore.UTC(), Reason: reason, RevokedAt: revokedAt.UTC(), ExpiresAt: expiresAt.UTC()}, nil
	}
	return nil, fmt.Errorf("unknown revocation kind %q", kind)
}

// RequeueSignals puts the Shared Signals signals sent within the last
// since back in the outbox's queue, for a SIGNALS stream that was lost or
// recreated (a whole NATS cluster lost at once): the relay publishes them
// again, and every SSF stream's lanes, which start before the new stream's
// first message, deliver them; a receiver that got a SET before gets it
// again with the same jti. The outbox keeps sent rows for OUTBOX_RETENTION
// (24 h), so that is as far back as it reaches. It returns how many it
// queued.
func (s *Service) RequeueSignals(ctx context.Context, since time.Duration) (int, error) {
	if since <= 0 {
		return 0, Invalid("the time to requeue signals of must be positive")
	}
	tag, err := s.pool.Exec(ctx, `UPDATE outbox SET sent_at = NULL, stream_seq = NULL, attempts = 0, last_error = NULL
		WHERE subject LIKE $1 AND sent_at > now() - make_interval(secs => $2)`, events.SignalsPrefix+"%", since.Seconds())
	if err != nil {
		return 0, fmt.Errorf("%w: requeue signals: %w", ErrUnavailable, err)
	}
	// Wake the relays of running sessiond processes; their poll finds the
	// rows within a second anyway.
	_, _ = s.pool.Exec(ctx, "SELECT pg_notify($1, '')", outbox.Channel)
	return int(tag.RowsAffected()), nil
}
