package sessions

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/outbox"
)

// The one-statement revocation. A single-session revocation is the hot
// path of the whole system (an admin's "Revoke", a logout, a reuse): one
// statement, a transaction of its own, durable in one round trip, that does
// everything a revocation writes. Its event payloads are made by PostgreSQL
// from pieces of what events.Encode makes (payloadTemplate), so they are
// byte for byte the contract's JSON.

// sessionFilter selects live sessions; empty fields do not filter.
type sessionFilter struct {
	sessionID string
	ids       []string // one of these sessions, when set
	userID    string
	orgID     string // scope of an org admin
	exceptID  string
	deviceID  string // the sessions of one device (login's device.id)
	// A bulk revocation's filter (POST /v1/revocations).
	role             string
	deviceType       string
	signedInBefore   time.Time // sessions created before it
	lastActiveBefore time.Time // sessions last active before it
	// ofRule selects the sessions a rule covers: they count as live, where
	// every other filter leaves them out (ruleCovers).
	ofRule bool
	// noGlobalAdmins leaves global admins' sessions out: an org admin's
	// bulk revocation never reaches them.
	noGlobalAdmins bool
}

// ruleTargets selects the live sessions of org (of role; every role when
// role is "") created before authBefore: what a revocation rule covers.
func ruleTargets(org, role string, authBefore time.Time) sessionFilter {
	return sessionFilter{orgID: org, role: role, signedInBefore: authBefore, ofRule: true}
}

// conds adds the filter's conditions to q, on columns named with prefix (a
// table alias such as "s.", or "").
func (f sessionFilter) conds(q *query, prefix string, now time.Time) {
	q.add(prefix + "revoked_at IS NULL")
	q.add(prefix+"expires_at > ?", now)
	if !f.ofRule {
		q.add("NOT "+ruleCovers(prefix, "?"), now)
	}
	if f.sessionID != "" {
		q.add(prefix+"id = ?", f.sessionID)
	}
	if f.ids != nil {
		q.add(prefix+"id = ANY(?::uuid[])", f.ids)
	}
	if f.userID != "" {
		q.add(prefix+"user_id = ?", f.userID)
	}
	if f.orgID != "" {
		q.add(prefix+"org_id = ?", f.orgID)
	}
	if f.deviceID != "" {
		q.add(prefix+"device_id = ?", f.deviceID)
	}
	if f.exceptID != "" {
		q.add(prefix+"id <> ?", f.exceptID)
	}
	if f.role != "" {
		q.add(prefix+"user_id IN (SELECT id FROM users WHERE role = ?)", f.role)
	}
	if f.noGlobalAdmins {
		q.add(prefix + "user_id NOT IN (SELECT id FROM users WHERE role = 'global_admin')")
	}
	if f.deviceType != "" {
		q.add(prefix+"device_type = ?", f.deviceType)
	}
	if !f.signedInBefore.IsZero() {
		q.add(prefix+"created_at < ?", f.signedInBefore)
	}
	if !f.lastActiveBefore.IsZero() {
		q.add(prefix+"last_active_at < ?", f.lastActiveBefore)
	}
}

// ruleCovers is the SQL condition "a live revocation rule covers this
// session". prefix qualifies the session's columns (a table alias such as
// "s.", or "" for the sessions table itself) and now is the bound query
// parameter ("$3", say) that holds the current time. A rule covers the sessions of its org, of its role (or
// every role when it has none), created before its auth_before, until it
// expires. Such a session counts as revoked from the rule's commit on,
// before the rule marker has marked its row.
func ruleCovers(prefix, now string) string {
	if prefix == "" {
		prefix = "sessions." // unqualified, the subquery's own columns would be read
	}
	return `EXISTS (SELECT 1 FROM revocation_rules rr WHERE rr.org_id = ` + prefix + `org_id AND rr.expires_at > ` + now +
		` AND ` + prefix + `created_at < rr.auth_before AND (rr.role IS NULL OR rr.role = (SELECT role FROM users WHERE id = ` + prefix + `user_id)))`
}

// where returns a fresh query holding the filter's conditions.
func (f sessionFilter) where(prefix string, now time.Time) *query {
	q := &query{}
	f.conds(q, prefix, now)
	return q
}

// markRevoked is the UPDATE that marks the sessions f selects revoked at
// now, with r's reason and actor.
func markRevoked(q *query, f sessionFilter, now time.Time, r revocation) string {
	f.conds(q, "", now)
	return "UPDATE sessions SET revoked_at = " + q.bind(now) + ", revoked_reason = " + q.bind(string(r.reason)) +
		", revoked_by = " + q.bind(nullable(r.actorID)) + " WHERE " + q.sql()
}

// revokeSessions revokes the live sessions that f selects and returns how
// many it revoked: the sessions marked revoked, their refresh tokens
// deleted, and per session one revocation row, one audit row and one
// outbox row (revocations.v1.session, also added to out, for the caller to
// hand to the relay once the statement's transaction commits), and the
// action's receipt (r.receipt, whatever the number of sessions; a batch of a
// revocation in batches adds its events to it). On the pool it is a
// transaction of its own.
func (s *Service) revokeSessions(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, now time.Time, f sessionFilter, r revocation, out *outboxRows) (int, error) {
	expiresAt := s.revocationExpires(now)
	payload, err := sessionPayload(now, expiresAt, r)
	if err != nil {
		return 0, err
	}
	q := &query{}
	update := markRevoked(q, f, now, r)
	at, reason, actor := q.bind(now), q.bind(string(r.reason)), q.bind(nullable(r.actorID))
	ip, expires, subject := q.bind(nullableIP(r.ip)), q.bind(expiresAt), q.bind(events.SubjectSessionRevoked)
	receipt, receiptOrg, awaited, complete := q.bind(r.receipt), q.bind(nullable(r.orgID)), q.bind(r.awaited), q.bind(!r.partial)
	detail := q.bind(r.detail())
	// gen_random_uuid is volatile, so PostgreSQL evaluates "ev" once and
	// every writer below sees the same event ids.
	sql := `WITH revoked AS (` + update + ` RETURNING id, user_id, org_id),
	ev AS (SELECT gen_random_uuid() AS event_id, id, user_id, org_id FROM revoked),
	tokens AS (DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM revoked)),
	blocklist AS (INSERT INTO revocations (event_id, kind, value, sid, sub, org, reason, revoked_at, expires_at)
		SELECT event_id, 'session', id::text, id, user_id, org_id, ` + reason + `, ` + at + `, ` + expires + ` FROM ev),
	audit AS (INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, reason, at, detail)
		SELECT 'session_revoked', ` + actor + `::uuid, org_id, user_id, id, ` + ip + `::inet, ` + reason + `, ` + at + `, ` + detail + `::jsonb FROM ev),
	receipt AS (INSERT INTO revocation_receipts (id, actor_id, org_id, reason, events, awaited, complete)
		SELECT ` + receipt + `::uuid, ` + actor + `::uuid, COALESCE((SELECT org_id FROM revoked LIMIT 1), ` + receiptOrg + `::uuid), ` + reason + `, count(*), ` + awaited + `::boolean, ` + complete + `::boolean FROM revoked
		ON CONFLICT (id) DO UPDATE SET events = revocation_receipts.events + EXCLUDED.events, complete = EXCLUDED.complete),
	` + sessionsSignal(q, "ev", r, at) + `
	INSERT INTO outbox (event_id, subject, payload, receipt_id)
		SELECT event_id, ` + subject + `, convert_to(` + payload.sql(q, "event_id::text", "id::text", "user_id::text", "org_id::text") + `, 'UTF8'), ` + receipt + `::uuid FROM ev
		UNION ALL ` + signalRows + `
	RETURNING event_id::text, subject, payload, receipt_id IS NOT NULL`
	rows, err := db.Query(ctx, sql, q.args...)
	if err != nil {
		return 0, err
	}
	var (
		msgs, signals []outbox.Message
		m             outbox.Message
		ofReceipt     bool
	)
	_, err = pgx.ForEachRow(rows, []any{&m.EventID, &m.Subject, &m.Payload, &ofReceipt}, func() error {
		if ofReceipt {
			msgs = append(msgs, m)
		} else {
			signals = append(signals, m)
		}
		m = outbox.Message{}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// The receipt's events in all: not known before its last batch (0).
	total := r.earlier + len(msgs)
	if r.partial {
		total = 0
	}
	for i := range msgs {
		msgs[i].Receipt, msgs[i].ReceiptEvents, msgs[i].Awaited = r.receipt, total, r.awaited
	}
	*out = append(append(*out, msgs...), signals...)
	s.metrics.revocations.WithLabelValues(string(r.reason)).Add(float64(len(msgs)))
	return len(msgs), nil
}

// signalRows is the SELECT of the outbox rows of the signals that
// sessionsSignal makes, in the columns (event_id, subject, payload,
// receipt_id) of an INSERT INTO outbox.
const signalRows = `SELECT event_id, subject, payload, NULL::uuid FROM signal`

// signalSessions bounds the sessions of one signal, so that a signal of
// the largest revocation stays far below NATS's largest message (1 MiB by
// default): 500 sessions with long emails make about 80 KB.
const signalSessions = 500

// sessionsSignal is a CTE, named signal, that makes the outbox rows of the
// transmitter's signals (events.SessionsSignal) of the sessions that the
// CTE src names (columns id, user_id, org_id), revoked for r at the bound
// parameter at: one row per org and signalSessions sessions, and only for
// an org whose signals a live Shared Signals stream takes. With no stream
// at all, the uncorrelated EXISTS is a one-time filter, so the join and
// the aggregate never run: revocations pay nothing for a transmitter
// nobody listens to.
func sessionsSignal(q *query, src string, r revocation, at string) string {
	reason, actor, note := q.bind(string(r.reason)), q.bind(nullable(r.actorID)), q.bind(nullable(r.note))
	return `signal AS MATERIALIZED (SELECT g.event_id, '` + events.SignalsPrefix + `org.' || g.org_id::text || '.sessions' AS subject,
			convert_to(json_build_object('event_id', g.event_id, 'org', g.org_id, 'reason', ` + reason + `::text, 'actor_id', ` + actor + `::uuid,
				'note', ` + note + `::text, 'revoked_at', ` + at + `::timestamptz, 'sessions', g.sessions)::text, 'UTF8') AS payload
		FROM (SELECT gen_random_uuid() AS event_id, org_id, sessions FROM (
			SELECT n.org_id, json_agg(json_build_object('sid', n.id, 'sub', n.user_id, 'email', n.email) ORDER BY n.id) AS sessions
			FROM (SELECT src.id, src.user_id, src.org_id, u.email,
					(row_number() OVER (PARTITION BY src.org_id ORDER BY src.id) - 1) / ` + strconv.Itoa(signalSessions) + ` AS chunk
				FROM ` + src + ` src JOIN users u ON u.id = src.user_id
				WHERE EXISTS (SELECT 1 FROM ssf_streams)
				  AND EXISTS (SELECT 1 FROM ssf_streams st WHERE st.org_id IS NULL OR st.org_id = src.org_id)) n
			GROUP BY n.org_id, n.chunk) per_chunk OFFSET 0) g)`
}

// payloadTemplate is an event's JSON with holes where values go that only
// the statement knows: the text around the holes, in order.
type payloadTemplate []string

// sql is the SQL expression that fills the holes with exprs, in order.
func (t payloadTemplate) sql(q *query, exprs ...string) string {
	parts := []string{q.bind(t[0])}
	for i, e := range exprs {
		parts = append(parts, e, q.bind(t[i+1]))
	}
	return strings.Join(parts, " || ")
}

// Marker ids: sessionPayload encodes a SessionRevoked event with these in
// the four fields whose values only the revocation statement knows (the
// event id it generates, the session, user and org it updates), then cuts
// the JSON around them.
const (
	markEventID = "00000000-0000-4000-8000-00000000000e"
	markSID     = "00000000-0000-4000-8000-00000000005d"
	markSub     = "00000000-0000-4000-8000-00000000005b"
	markOrg     = "00000000-0000-4000-8000-0000000000a9"
)

// sessionPayload is the template of a SessionRevoked event with reason r
// at now, expiring at expires, with holes for its event_id, sid, sub and
// org, in that order. The pieces come from events.Encode itself.
func sessionPayload(now, expires time.Time, r revocation) (payloadTemplate, error) {
	ev := events.SessionRevoked{EventID: markEventID, SID: markSID, Sub: markSub, Org: markOrg, Reason: r.reason,
		RevokedAt: now.UTC(), ExpiresAt: expires.UTC()}
	p, err := events.Encode(ev)
	if err != nil {
		return nil, err
	}
	rest := string(p)
	pieces := make(payloadTemplate, 0, 5)
	for _, m := range []string{markEventID, markSID, markSub, markOrg} {
		before, after, ok := strings.Cut(rest, m)
		if !ok {
			return nil, fmt.Errorf("session revocation payload: %s is not where it is expected in %s", m, p)
		}
		pieces, rest = append(pieces, before), after
	}
	return append(pieces, rest), nil
}
