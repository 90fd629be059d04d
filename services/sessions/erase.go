package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
)

// Erase carries out one erasure request in one transaction: a user-level
// revocation and every session revoked, the user's refresh tokens and
// session metadata (IP, user agent, device name) deleted, the user marked
// erased (password and email gone, so no login or refresh can succeed), an
// audit record naming only the user id, its sign-in announcements
// (sessions.v1.session.created) out of the outbox, and the
// sessions.v1.user.erased
// confirmation in the outbox. A repeated request, or one for an unknown
// user, is confirmed again. It returns "erased", "repeated" or
// "unknown_user".
func (s *Service) Erase(ctx context.Context, req events.UserDeleted) (string, error) {
	result := "erased"
	var out outboxRows
	err := s.inTx(ctx, "Erase", func(tx pgx.Tx) error {
		now := s.now()
		var (
			orgID  string
			erased bool
			email  *string
		)
		err := tx.QueryRow(ctx, `SELECT org_id, erased_at IS NOT NULL, email FROM users WHERE id = $1 FOR UPDATE`, req.UserID).Scan(&orgID, &erased, &email)
		n := 0
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			result = "unknown_user"
		case err != nil:
			return err
		default:
			if erased {
				result = "repeated"
			}
			if n, err = s.revokeUser(ctx, tx, now, req.UserID, orgID, newRevocation(ctx, events.ReasonErasure, "", orgID, netip.Addr{}), &out); err != nil {
				return err
			}
			b := &pgx.Batch{}
			b.Queue(`UPDATE sessions SET ip = NULL, user_agent = NULL, device_name = NULL, device_id = NULL, client = NULL WHERE user_id = $1`, req.UserID)
			// The user's sign-in announcements (their IP and client) leave
			// the outbox; what JetStream holds of them ages out of the
			// SESSIONS stream (events.SessionsMaxAge).
			b.Queue(`DELETE FROM outbox WHERE subject = $2 AND convert_from(payload, 'UTF8')::jsonb->>'user_id' = $1::text`, req.UserID, events.SubjectSessionCreated)
			b.Queue(`DELETE FROM login_failures WHERE account = (SELECT lower(email) FROM users WHERE id = $1)`, req.UserID)
			// The email goes to NULL, not to a tombstone: a tombstone has a form
			// anyone can predict, and a user created with it first would make
			// this statement fail on the unique index for ever.
			b.Queue(`UPDATE users SET erased_at = COALESCE(erased_at, $2), password_hash = NULL,
				email = NULL, updated_at = $2 WHERE id = $1`, req.UserID, now)
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		if err := writeAudit(ctx, tx, auditEntry{Action: ActionUserErased, TargetUserID: req.UserID, OrgID: orgID, Reason: string(events.ReasonErasure),
			Detail: map[string]any{"request_event_id": req.EventID, "sessions_revoked": n, "result": result}}); err != nil {
			return err
		}
		conf := events.UserErased{EventID: uuid.NewString(), RequestEventID: req.EventID, UserID: req.UserID, SessionsRevoked: n, CompletedAt: now.UTC()}
		b := &pgx.Batch{}
		if err := out.queue(b, revocation{}, conf); err != nil {
			return err
		}
		if result == "erased" {
			// The Shared Signals receivers of the org hear of it once, naming
			// the account as they know it, by the email this transaction
			// erases: telling each recipient of the data of its erasure is
			// part of the erasure (GDPR article 19).
			if err := out.queueSignal(b, orgID, events.AccountSignal{EventID: uuid.NewString(), Org: orgID, Sub: req.UserID, Email: orEmpty(email),
				Change: events.AccountPurged, At: now.UTC()}); err != nil {
				return err
			}
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return "", fmt.Errorf("%w: erase: %w", ErrUnavailable, err)
	}
	s.committed(ctx, out)
	return result, nil
}
