package sessions

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
)

// revocation says why and by whom sessions are revoked.
type revocation struct {
	reason  events.Reason
	actorID string // "" for the system (reuse detection, erasure)
	ip      netip.Addr
}

// sessionFilter selects live sessions; empty fields do not filter.
type sessionFilter struct {
	sessionID string
	userID    string
	orgID     string // scope of an org admin
	exceptID  string
}

func (f sessionFilter) conds(now time.Time) *conds {
	c := &conds{}
	c.add("revoked_at IS NULL")
	c.add("expires_at > ?", now)
	if f.sessionID != "" {
		c.add("id = ?", f.sessionID)
	}
	if f.userID != "" {
		c.add("user_id = ?", f.userID)
	}
	if f.orgID != "" {
		c.add("org_id = ?", f.orgID)
	}
	if f.exceptID != "" {
		c.add("id <> ?", f.exceptID)
	}
	return c
}

// updateRevoked is the UPDATE that marks the sessions c selects revoked; it
// appends its own arguments to c.
func updateRevoked(c *conds, now time.Time, r revocation) string {
	where := c.sql()
	c.args = append(c.args, now, string(r.reason), nullable(r.actorID))
	n := len(c.args)
	return fmt.Sprintf("UPDATE sessions SET revoked_at = $%d, revoked_reason = $%d, revoked_by = $%d WHERE %s", n-2, n-1, n, where)
}

// revoked is one session a revocation marked.
type revoked struct{ sid, sub, org string }

func collectRevoked(rows pgx.Rows) ([]revoked, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (revoked, error) {
		var x revoked
		err := r.Scan(&x.sid, &x.sub, &x.org)
		return x, err
	})
}

// revocationWrites is what follows marking sessions revoked, in the same
// transaction: their refresh tokens deleted, and one revocation row, one
// outbox row (revocations.v1.session) and one audit row per session.
func (s *Service) revocationWrites(now time.Time, list []revoked, r revocation) (*pgx.Batch, error) {
	expires := now.Add(s.cfg.AccessTTL + events.RevocationLeeway)
	n := len(list)
	sids, subs, orgs := make([]string, n), make([]string, n), make([]string, n)
	eventIDs, subjects, payloads := make([]string, n), make([]string, n), make([][]byte, n)
	for i, x := range list {
		ev := events.SessionRevoked{EventID: uuid.NewString(), SID: x.sid, Sub: x.sub, Org: x.org, Reason: r.reason, RevokedAt: now.UTC(), ExpiresAt: expires.UTC()}
		p, err := events.Encode(ev)
		if err != nil {
			return nil, err
		}
		sids[i], subs[i], orgs[i] = x.sid, x.sub, x.org
		eventIDs[i], subjects[i], payloads[i] = ev.EventID, ev.Subject(), p
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM refresh_tokens WHERE session_id = ANY($1::uuid[])`, sids)
	b.Queue(`INSERT INTO revocations (event_id, kind, value, sid, sub, org, reason, revoked_at, expires_at)
		SELECT e, 'session', sid::text, sid, sub, org, $5, $6, $7 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[]) AS x(e, sid, sub, org)`,
		eventIDs, sids, subs, orgs, string(r.reason), now, expires)
	queueOutbox(b, eventIDs, subjects, payloads)
	b.Queue(`INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, reason, at)
		SELECT 'session_revoked', $4, org, sub, sid, $5, $6, $7 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS x(sid, sub, org)`,
		sids, subs, orgs, nullable(r.actorID), nullableIP(r.ip), string(r.reason), now)
	return b, nil
}

// revokeSessions revokes the live sessions that f selects, inside tx (see
// revocationWrites), and returns how many it revoked.
func (s *Service) revokeSessions(ctx context.Context, tx pgx.Tx, now time.Time, f sessionFilter, r revocation) (int, error) {
	c := f.conds(now)
	update := updateRevoked(c, now, r)
	rows, err := tx.Query(ctx, update+" RETURNING id, user_id, org_id", c.args...)
	if err != nil {
		return 0, err
	}
	list, err := collectRevoked(rows)
	if err != nil || len(list) == 0 {
		return 0, err
	}
	b, err := s.revocationWrites(now, list, r)
	if err != nil {
		return 0, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	s.metrics.revocations.WithLabelValues(string(r.reason)).Add(float64(len(list)))
	return len(list), nil
}

// queueOutbox adds the outbox rows. The caller calls outboxCommitted after
// the commit, which wakes the relay (see notify.go).
func queueOutbox(b *pgx.Batch, eventIDs, subjects []string, payloads [][]byte) {
	b.Queue(`INSERT INTO outbox (event_id, subject, payload) SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])`, eventIDs, subjects, payloads)
}

// revokeUser revokes every access token of a user issued before now (a
// user-level revocation with a whole-second not_before) and every live
// session of the user, inside tx. It returns how many sessions it revoked.
func (s *Service) revokeUser(ctx context.Context, tx pgx.Tx, now time.Time, userID, orgID string, r revocation) (int, error) {
	notBefore := ceilSecond(now)
	if _, err := tx.Exec(ctx, `UPDATE users SET tokens_not_before = GREATEST(COALESCE(tokens_not_before, '-infinity'), $2), updated_at = $3 WHERE id = $1`,
		userID, notBefore, now); err != nil {
		return 0, err
	}
	c := sessionFilter{userID: userID}.conds(now)
	update := updateRevoked(c, now, r)
	rows, err := tx.Query(ctx, update+" RETURNING id", c.args...)
	if err != nil {
		return 0, err
	}
	sids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	expires := now.Add(s.cfg.AccessTTL + events.RevocationLeeway)
	ev := events.UserRevoked{EventID: uuid.NewString(), Sub: userID, Org: orgID, NotBefore: notBefore.UTC(), Reason: r.reason, RevokedAt: now.UTC(), ExpiresAt: expires.UTC()}
	payload, err := events.Encode(ev)
	if err != nil {
		return 0, err
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)`, userID)
	b.Queue(`INSERT INTO revocations (event_id, kind, value, sub, org, not_before, reason, revoked_at, expires_at)
		VALUES ($1, 'user', $2, $3, $4, $5, $6, $7, $8)`, ev.EventID, userID, userID, orgID, notBefore, string(r.reason), now, expires)
	queueOutbox(b, []string{ev.EventID}, []string{ev.Subject()}, [][]byte{payload})
	if len(sids) > 0 {
		b.Queue(`INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, reason, at)
			SELECT 'session_revoked', $2, $3, $4, sid, $5, $6, $7 FROM unnest($1::uuid[]) AS x(sid)`,
			sids, nullable(r.actorID), orgID, userID, nullableIP(r.ip), string(r.reason), now)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	s.metrics.revocations.WithLabelValues(string(r.reason)).Add(float64(len(sids)))
	return len(sids), nil
}

// revokeInTx revokes the sessions f selects in a transaction of its own,
// in two round trips: BEGIN with the UPDATE, then the writes with COMMIT.
// This is the hot path of every single-session revocation.
func (s *Service) revokeInTx(ctx context.Context, f sessionFilter, r revocation) (int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: revoke: %w", ErrUnavailable, err)
	}
	defer conn.Release()
	fail := func(err error) (int, error) {
		// The pool closes a connection released inside a transaction; an
		// explicit rollback keeps it.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		return 0, fmt.Errorf("%w: revoke: %w", ErrUnavailable, err)
	}
	now := s.now()
	c := f.conds(now)
	update := updateRevoked(c, now, r)
	first := &pgx.Batch{}
	first.Queue("BEGIN")
	first.Queue(update+" RETURNING id, user_id, org_id", c.args...)
	br := conn.SendBatch(ctx, first)
	var list []revoked
	_, err = br.Exec()
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			list, err = collectRevoked(rows)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if len(list) == 0 {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return 0, fmt.Errorf("%w: revoke: %w", ErrUnavailable, err)
		}
		return 0, nil
	}
	b, err := s.revocationWrites(now, list, r)
	if err != nil {
		return fail(err)
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fail(err)
	}
	s.outboxCommitted()
	s.metrics.revocations.WithLabelValues(string(r.reason)).Add(float64(len(list)))
	return len(list), nil
}

// RevokeOwnSession revokes one of the caller's live sessions (possibly the
// current one). ErrNotFound when id is not one of them.
func (s *Service) RevokeOwnSession(ctx context.Context, p Principal, id string, meta ClientMeta) error {
	if !isUUID(id) {
		return invalid("session id must be a UUID")
	}
	n, err := s.revokeInTx(ctx, sessionFilter{sessionID: id, userID: p.UserID}, revocation{reason: events.ReasonSelfRevoke, actorID: p.UserID, ip: meta.IP})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: no active session of yours has this id", ErrNotFound)
	}
	return nil
}

// RevokeOtherSessions revokes all the caller's sessions but the current one.
func (s *Service) RevokeOtherSessions(ctx context.Context, p Principal, meta ClientMeta) (int, error) {
	return s.revokeInTx(ctx, sessionFilter{userID: p.UserID, exceptID: p.SessionID}, revocation{reason: events.ReasonUserRevokeAll, actorID: p.UserID, ip: meta.IP})
}

// RevokeSession is an admin's revocation of one session in scope.
// ErrForbidden for a plain user, ErrNotFound when out of scope or not live.
func (s *Service) RevokeSession(ctx context.Context, p Principal, id string, meta ClientMeta) error {
	scope, err := adminScope(p)
	if err != nil {
		return err
	}
	if !isUUID(id) {
		return invalid("session id must be a UUID")
	}
	n, err := s.revokeInTx(ctx, sessionFilter{sessionID: id, orgID: scope}, revocation{reason: events.ReasonAdminRevoke, actorID: p.UserID, ip: meta.IP})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: no active session with this id in your scope", ErrNotFound)
	}
	return nil
}

// RevokeUserSessions is an admin's revocation of every session of a user in
// scope: a user-level revocation, so even tokens a gateway never saw die.
func (s *Service) RevokeUserSessions(ctx context.Context, p Principal, userID string, meta ClientMeta) (int, error) {
	scope, err := adminScope(p)
	if err != nil {
		return 0, err
	}
	if !isUUID(userID) {
		return 0, invalid("user id must be a UUID")
	}
	var n int
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		orgID, err := lockUserInScope(ctx, tx, userID, scope)
		if err != nil {
			return err
		}
		now := s.now()
		if n, err = s.revokeUser(ctx, tx, now, userID, orgID, revocation{reason: events.ReasonAdminRevoke, actorID: p.UserID, ip: meta.IP}); err != nil {
			return err
		}
		return writeAudit(ctx, tx, auditEntry{Action: ActionUserSessionsRevoked, ActorID: p.UserID, OrgID: orgID, TargetUserID: userID, IP: meta.IP,
			Reason: string(events.ReasonAdminRevoke), Detail: map[string]any{"sessions_revoked": n}})
	})
	if err != nil {
		return 0, domainOr(err, "revoke user sessions")
	}
	s.outboxCommitted()
	return n, nil
}

// lockUserInScope locks a user row for update and returns its org, or
// ErrNotFound when the user does not exist, is erased or is out of scope.
func lockUserInScope(ctx context.Context, tx pgx.Tx, userID, scope string) (string, error) {
	var orgID string
	// A global admin is never in an org admin's scope, even in its own org.
	err := tx.QueryRow(ctx, `SELECT org_id FROM users WHERE id = $1 AND erased_at IS NULL
		AND ($2::uuid IS NULL OR (org_id = $2 AND role <> 'global_admin')) FOR UPDATE`,
		userID, nullable(scope)).Scan(&orgID)
	if err == pgx.ErrNoRows {
		return "", fmt.Errorf("%w: no user with this id in your scope", ErrNotFound)
	}
	return orgID, err
}

// adminScope returns the org an admin is limited to ("" for a global admin),
// or ErrForbidden for a plain user.
func adminScope(p Principal) (string, error) {
	switch p.Role {
	case "global_admin":
		return "", nil
	case "org_admin":
		return p.OrgID, nil
	}
	return "", fmt.Errorf("%w: this needs an org_admin or global_admin", ErrForbidden)
}
