package sessions

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/telemetry"
	"github.com/sessionguard/revoke/internal/tokens"
)

// revocation says why and by whom sessions are revoked, and names the
// receipt of the action.
type revocation struct {
	reason  events.Reason
	actorID string // "" for the system (reuse detection, erasure)
	ip      netip.Addr
	receipt string // the receipt's id (every revoking action writes one)
	// orgID is the receipt's org when no session names one (nothing was
	// revoked): the scope in which the action was asked.
	orgID string
	// awaited: the caller waits for the receipt (WithWaiter), so the
	// gateways report at once when they have applied it.
	awaited bool
	// A revocation committed in batches (RevokeByFilter): partial while
	// batches are still to come, earlier the events of the batches already
	// committed.
	partial bool
	earlier int
	// note is the reason the person acting typed (ClientMeta.ReasonText),
	// kept in the audit entries of what it revokes.
	note string
	// trace is the W3C traceparent of the request that asked for it ("":
	// none), kept in its outbox rows.
	trace string
}

// detail is the audit detail of each session r revokes: its typed reason,
// or nothing (NULL).
func (r revocation) detail() []byte {
	if r.note == "" {
		return nil
	}
	b, _ := json.Marshal(map[string]string{"reason_text": r.note})
	return b
}

// withNote is r with the reason meta's person typed.
func (r revocation) withNote(meta ClientMeta) revocation {
	r.note = meta.ReasonText
	return r
}

// newRevocation is a revocation with a fresh receipt id.
func newRevocation(ctx context.Context, reason events.Reason, actorID, orgID string, ip netip.Addr) revocation {
	return revocation{reason: reason, actorID: actorID, orgID: orgID, ip: ip, receipt: uuid.NewString(), awaited: waited(ctx), trace: telemetry.Traceparent(ctx)}
}

type waiterKey struct{}

// WithWaiter marks ctx as the context of a call that will wait for its
// revocation's receipt (Prefer: wait=N, the portal's result line). Its
// events then ask every gateway to report at once once it has applied them;
// other progress is reported coalesced (see the gateway's Reporter).
func WithWaiter(ctx context.Context) context.Context {
	return context.WithValue(ctx, waiterKey{}, true)
}

func waited(ctx context.Context) bool {
	v, _ := ctx.Value(waiterKey{}).(bool)
	return v
}

// revocationExpires is when a revocation made at now may be forgotten: once
// every access token it covers has expired, with the leeway verifiers allow.
func (s *Service) revocationExpires(now time.Time) time.Time {
	return now.Add(s.cfg.AccessTTL + events.RevocationLeeway)
}

// revokeUser revokes every access token of a user issued before it (a
// user-level revocation) and every live session of the user, inside tx. It
// returns how many sessions it revoked; the caller hands out to the relay
// once tx commits.
//
// The not-before is exact, to the microsecond, however many revocations and
// sign-ins share a second: it is the latest of now, a microsecond after the
// previous not-before, and a microsecond after the latest iat issued to any
// live session of the user (sessions.access_issued_at, which every issuance
// records under the user's row lock). A token issued before the revocation
// therefore has iat < not_before, whatever the clocks of the replicas that
// issued it said, and a token issued after it has iat > not_before
// (issuedAt), both by at least a microsecond, so a verifier that reads
// NumericDates as floats or truncates them decides the same.
func (s *Service) revokeUser(ctx context.Context, tx pgx.Tx, now time.Time, userID, orgID string, r revocation, out *outboxRows) (int, error) {
	var (
		notBefore time.Time
		email     *string
	)
	b := &pgx.Batch{}
	// The row lock comes first, in a statement of its own: the UPDATE's
	// subquery reads the snapshot its statement starts with, which must
	// include every sign-in that committed while this waited for the lock.
	b.Queue(`SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID)
	b.Queue(`UPDATE users SET updated_at = $2, tokens_not_before = GREATEST($2::timestamptz,
			tokens_not_before + interval '1 microsecond',
			(SELECT max(access_issued_at) + interval '1 microsecond' FROM sessions WHERE user_id = $1 AND revoked_at IS NULL))
		WHERE id = $1 RETURNING tokens_not_before, email`, userID, now).QueryRow(func(row pgx.Row) error { return row.Scan(&notBefore, &email) })
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	q := &query{}
	rows, err := tx.Query(ctx, markRevoked(q, sessionFilter{userID: userID}, now, r)+" RETURNING id", q.args...)
	if err != nil {
		return 0, err
	}
	sids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	expires := s.revocationExpires(now)
	ev := events.UserRevoked{EventID: uuid.NewString(), Sub: userID, Org: orgID, NotBefore: notBefore.UTC(), Reason: r.reason, RevokedAt: now.UTC(), ExpiresAt: expires.UTC()}
	b = &pgx.Batch{}
	b.Queue(`DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)`, userID)
	b.Queue(`INSERT INTO revocations (event_id, kind, value, sub, org, not_before, reason, revoked_at, expires_at)
		VALUES ($1, 'user', $2, $3, $4, $5, $6, $7, $8)`, ev.EventID, userID, userID, orgID, notBefore, string(r.reason), now, expires)
	if err := out.queue(b, r, ev); err != nil {
		return 0, err
	}
	queueReceipt(b, r, orgID, 1)
	if len(sids) > 0 {
		for chunk := range slices.Chunk(sids, signalSessions) {
			sig := events.SessionsSignal{EventID: uuid.NewString(), Org: orgID, Reason: r.reason, ActorID: r.actorID, Note: r.note, RevokedAt: now.UTC()}
			for _, sid := range chunk {
				sig.Sessions = append(sig.Sessions, events.SignalSession{SID: sid, Sub: userID, Email: orEmpty(email)})
			}
			if err := out.queueSignal(b, orgID, sig); err != nil {
				return 0, err
			}
		}
		b.Queue(`INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, reason, at, detail)
			SELECT 'session_revoked', $2, $3, $4, sid, $5, $6, $7, $8::jsonb FROM unnest($1::uuid[]) AS x(sid)`,
			sids, nullable(r.actorID), orgID, userID, nullableIP(r.ip), string(r.reason), now, r.detail())
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	s.metrics.revocations.WithLabelValues(string(r.reason)).Add(float64(len(sids)))
	return len(sids), nil
}

// revokeInTx revokes the sessions f selects in a transaction of its own:
// one statement, one round trip (see revokeSessions).
func (s *Service) revokeInTx(ctx context.Context, f sessionFilter, r revocation) (int, error) {
	var out outboxRows
	tctx, end := s.traceTx(ctx, "revokeSessions") // one statement, its own transaction
	n, err := s.revokeSessions(tctx, s.pool, s.now(), f, r, &out)
	end(err)
	if err != nil {
		return 0, fmt.Errorf("%w: revoke: %w", ErrUnavailable, err)
	}
	s.committed(ctx, out)
	return n, nil
}

// Logout revokes the caller's own session and returns the receipt's id.
func (s *Service) Logout(ctx context.Context, p Principal, meta ClientMeta) (string, error) {
	r := newRevocation(ctx, events.ReasonLogout, p.UserID, p.OrgID, meta.IP)
	_, err := s.revokeInTx(ctx, sessionFilter{sessionID: p.SessionID}, r)
	return r.receipt, err
}

// RevokeOwnSession revokes one of the caller's live sessions (possibly the
// current one) and returns the receipt's id. ErrNotFound when id is not one
// of them.
func (s *Service) RevokeOwnSession(ctx context.Context, p Principal, id string, meta ClientMeta) (string, error) {
	if !isUUID(id) {
		return "", Invalid("session id must be a UUID")
	}
	r := newRevocation(ctx, events.ReasonSelfRevoke, p.UserID, p.OrgID, meta.IP)
	n, err := s.revokeInTx(ctx, sessionFilter{sessionID: id, userID: p.UserID}, r)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", fmt.Errorf("%w: no active session of yours has this id", ErrNotFound)
	}
	return r.receipt, nil
}

// RevokeOtherSessions revokes all the caller's sessions but the current one;
// it returns how many and the receipt's id.
func (s *Service) RevokeOtherSessions(ctx context.Context, p Principal, meta ClientMeta) (int, string, error) {
	r := newRevocation(ctx, events.ReasonUserRevokeAll, p.UserID, p.OrgID, meta.IP)
	n, err := s.revokeInTx(ctx, sessionFilter{userID: p.UserID, exceptID: p.SessionID}, r)
	return n, r.receipt, err
}

// RevokeSession is an admin's revocation of one session in scope; it
// returns the receipt's id. ErrForbidden for a plain user, ErrNotFound when
// out of scope or not live.
func (s *Service) RevokeSession(ctx context.Context, p Principal, id string, meta ClientMeta) (string, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return "", err
	}
	if !isUUID(id) {
		return "", Invalid("session id must be a UUID")
	}
	if err := meta.check(); err != nil {
		return "", err
	}
	r := newRevocation(ctx, events.ReasonAdminRevoke, p.UserID, scope, meta.IP).withNote(meta)
	n, err := s.revokeInTx(ctx, sessionFilter{sessionID: id, orgID: scope}, r)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", fmt.Errorf("%w: no active session with this id in your scope", ErrNotFound)
	}
	return r.receipt, nil
}

// RevokeUserSessions is an admin's revocation of every session of a user in
// scope: a user-level revocation, so even tokens a gateway never saw die.
// It returns how many sessions it revoked and the receipt's id.
func (s *Service) RevokeUserSessions(ctx context.Context, p Principal, userID string, meta ClientMeta) (int, string, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return 0, "", err
	}
	if !isUUID(userID) {
		return 0, "", Invalid("user id must be a UUID")
	}
	if err := meta.check(); err != nil {
		return 0, "", err
	}
	var (
		n   int
		out outboxRows
	)
	r := newRevocation(ctx, events.ReasonAdminRevoke, p.UserID, scope, meta.IP).withNote(meta)
	err = s.inTx(ctx, "RevokeUserSessions", func(tx pgx.Tx) error {
		orgID, err := lockUserInScope(ctx, tx, userID, scope)
		if err != nil {
			return err
		}
		now := s.now()
		if n, err = s.revokeUser(ctx, tx, now, userID, orgID, r, &out); err != nil {
			return err
		}
		return writeAudit(ctx, tx, auditEntry{Action: ActionUserSessionsRevoked, ActorID: p.UserID, OrgID: orgID, TargetUserID: userID, IP: meta.IP,
			Reason: string(events.ReasonAdminRevoke), Detail: meta.noted(map[string]any{"sessions_revoked": n})})
	})
	if err != nil {
		return 0, "", domainOr(err, "revoke user sessions")
	}
	s.committed(ctx, out)
	return n, r.receipt, nil
}

// lockUserInScope locks a user row for update and returns its org, or
// ErrNotFound when the user does not exist, is erased or is out of scope.
func lockUserInScope(ctx context.Context, tx pgx.Tx, userID, scope string) (string, error) {
	var orgID string
	q := &query{}
	q.add("u.id = ?", userID)
	inScope(q, scope)
	sql := `SELECT u.org_id FROM users u WHERE ` + q.sql() + ` FOR UPDATE`
	err := tx.QueryRow(ctx, sql, q.args...).Scan(&orgID)
	if err == pgx.ErrNoRows {
		return "", fmt.Errorf("%w: no user with this id in your scope", ErrNotFound)
	}
	return orgID, err
}

// AdminScope returns the org an admin is limited to ("" for a global admin),
// or ErrForbidden for a plain user; the Shared Signals transmitter's admin
// view uses it too.
func AdminScope(p Principal) (string, error) {
	switch p.Role {
	case tokens.RoleGlobalAdmin:
		return "", nil
	case tokens.RoleOrgAdmin:
		return p.OrgID, nil
	}
	return "", fmt.Errorf("%w: this needs an org_admin or global_admin", ErrForbidden)
}
