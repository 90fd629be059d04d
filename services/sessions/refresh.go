package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
)

// Refresh rotates a refresh token. Within ReuseGrace after a token's
// rotation, presenting it again answers with a new access token and the
// session's current refresh token (the one the first refresh returned, or
// its live successor): no second token family is created and the session
// lives. Later, it is reuse: the whole session is revoked and the answer is
// ErrUnauthorized.
func (s *Service) Refresh(ctx context.Context, raw string, meta ClientMeta) (TokenPair, error) {
	if raw == "" {
		return TokenPair{}, Invalid("refresh_token is required")
	}
	invalidToken := fmt.Errorf("%w: refresh token is invalid, expired or revoked", ErrUnauthorized)
	if !plausibleRefreshToken(raw) {
		s.metrics.refreshes.WithLabelValues("invalid").Inc()
		return TokenPair{}, invalidToken
	}
	now := s.now()
	var (
		out       refreshResult
		revoked   outboxRows // a reused token's session revoked
		notBefore *time.Time
		iat       time.Time // of the access token issued, recorded with the session
		userID    string
		orgID     string
		role      string
		sessionID string
		signedIn  time.Time // the session's created_at: the token's auth_time
	)
	err := s.inTx(ctx, "Refresh", func(tx pgx.Tx) error {
		var rtID string
		err := tx.QueryRow(ctx, `SELECT rt.id, rt.session_id, s.user_id FROM refresh_tokens rt
			JOIN sessions s ON s.id = rt.session_id WHERE rt.token_hash = $1`, hashToken(raw)).Scan(&rtID, &sessionID, &userID)
		if errors.Is(err, pgx.ErrNoRows) {
			out = refreshInvalid
			return nil
		}
		if err != nil {
			return err
		}
		// Lock order everywhere: user, then session.
		var userDead bool
		if err := tx.QueryRow(ctx, `SELECT role, disabled_at IS NOT NULL OR erased_at IS NOT NULL, tokens_not_before
			FROM users WHERE id = $1 FOR SHARE`, userID).Scan(&role, &userDead, &notBefore); err != nil {
			return err
		}
		var (
			sessionDead bool
			lastActive  time.Time
			pol         Policy
		)
		if err := tx.QueryRow(ctx, `SELECT s.org_id, s.revoked_at IS NOT NULL OR s.expires_at <= $2 OR `+ruleCovers("s.", "$2")+`, s.created_at, s.last_active_at,
				COALESCE(op.idle_timeout, '0s'), COALESCE(op.max_session_lifetime, '0s')
			FROM sessions s LEFT JOIN org_policies op ON op.org_id = s.org_id WHERE s.id = $1 FOR NO KEY UPDATE OF s`,
			sessionID, now).Scan(&orgID, &sessionDead, &signedIn, &lastActive, &pol.IdleTimeout, &pol.MaxSessionLifetime); err != nil {
			return err
		}
		// The org's policy ends the session: refused at once, and revoked
		// (published) now rather than at the next sweep.
		if reason, ended := pol.ended(signedIn, lastActive, now); ended && !sessionDead && !userDead {
			out = refreshEnded
			_, err := s.revokeSessions(ctx, tx, now, sessionFilter{sessionID: sessionID}, newRevocation(ctx, reason, "", orgID, meta.IP), &revoked)
			return err
		}
		var (
			expires    time.Time
			rotatedAt  *time.Time
			replacedBy *string
		)
		if err := tx.QueryRow(ctx, `SELECT expires_at, rotated_at, replaced_by FROM refresh_tokens WHERE id = $1`, rtID).
			Scan(&expires, &rotatedAt, &replacedBy); err != nil {
			if errors.Is(err, pgx.ErrNoRows) { // deleted by a revocation that committed meanwhile
				out = refreshInvalid
				return nil
			}
			return err
		}
		switch {
		case userDead || sessionDead || !expires.After(now):
			out = refreshInvalid
			return nil
		case rotatedAt == nil:
			out = refreshRotated
			out.token = s.successor(raw)
			iat = issuedAt(now, notBefore)
			b := &pgx.Batch{}
			childID := uuid.NewString()
			b.Queue(`INSERT INTO refresh_tokens (id, session_id, token_hash, parent_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
				childID, sessionID, hashToken(out.token), rtID, now, now.Add(s.cfg.RefreshTTL))
			b.Queue(`UPDATE refresh_tokens SET rotated_at = $2, replaced_by = $3 WHERE id = $1`, rtID, now, childID)
			b.Queue(`UPDATE sessions SET last_active_at = GREATEST(last_active_at, $2), expires_at = $3, ip = COALESCE($4, ip),
				access_issued_at = GREATEST(access_issued_at, $5) WHERE id = $1`,
				sessionID, now, now.Add(s.cfg.RefreshTTL), nullableIP(meta.IP), iat)
			return tx.SendBatch(ctx, b).Close()
		case now.Sub(*rotatedAt) <= s.cfg.ReuseGrace:
			head, err := s.chainHead(ctx, tx, raw, replacedBy)
			if err != nil {
				return err
			}
			if head == "" {
				out = refreshInvalid
				return nil
			}
			out = refreshGrace
			out.token = head
			iat = issuedAt(now, notBefore)
			_, err = tx.Exec(ctx, `UPDATE sessions SET access_issued_at = GREATEST(access_issued_at, $2) WHERE id = $1`, sessionID, iat)
			return err
		default:
			out = refreshReuse
			if _, err := s.revokeSessions(ctx, tx, now, sessionFilter{sessionID: sessionID}, newRevocation(ctx, events.ReasonRefreshReuse, "", "", meta.IP), &revoked); err != nil {
				return err
			}
			return writeAudit(ctx, tx, auditEntry{Action: ActionRefreshReuse, TargetUserID: userID, OrgID: orgID, SessionID: sessionID, IP: meta.IP, Reason: string(events.ReasonRefreshReuse)})
		}
	})
	if err != nil {
		s.metrics.refreshes.WithLabelValues("error").Inc()
		return TokenPair{}, fmt.Errorf("%w: refresh: %w", ErrUnavailable, err)
	}
	s.metrics.refreshes.WithLabelValues(out.label).Inc()
	s.committed(ctx, revoked)
	switch out.label {
	case refreshInvalid.label:
		return TokenPair{}, invalidToken
	case refreshEnded.label:
		return TokenPair{}, fmt.Errorf("%w: the session has ended under the organisation's session policy (idle or too old); sign in again", ErrUnauthorized)
	case refreshReuse.label:
		s.metrics.reuse.Inc()
		s.log.WarnContext(ctx, "refresh token reuse detected; session revoked", "session_id", sessionID, "user_id", userID)
		return TokenPair{}, fmt.Errorf("%w: refresh token reuse detected; the session has been revoked", ErrUnauthorized)
	}
	return s.issue(userID, orgID, sessionID, role, out.token, now, iat, signedIn)
}

type refreshResult struct {
	label string
	token string
}

var (
	refreshInvalid = refreshResult{label: "invalid"}
	refreshRotated = refreshResult{label: "rotated"}
	refreshGrace   = refreshResult{label: "grace"}
	refreshReuse   = refreshResult{label: "reuse"}
	refreshEnded   = refreshResult{label: "policy"} // idle or over age
)

// chainHead follows the rotation chain from tok to the live refresh token
// and returns it in plain text ("" when the chain is broken).
func (s *Service) chainHead(ctx context.Context, tx pgx.Tx, tok string, next *string) (string, error) {
	for depth := 0; next != nil && depth < 64; depth++ {
		tok = s.successor(tok)
		var rotated *time.Time
		var id string = *next
		next = nil
		err := tx.QueryRow(ctx, `SELECT rotated_at, replaced_by FROM refresh_tokens WHERE id = $1 AND token_hash = $2`, id, hashToken(tok)).Scan(&rotated, &next)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if rotated == nil {
			return tok, nil
		}
	}
	return "", nil
}
