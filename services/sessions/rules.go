package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/outbox"
)

// ruleOnly reports whether f can be enforced as one org rule: nothing but
// the org, a role and a sign-in bound.
func (f BulkFilter) ruleOnly() bool {
	return f.UserID == "" && f.DeviceType == "" && f.LastActiveBefore == nil
}

// revokeByRule commits one revocation rule (a revocation_rules row, its
// revocations.v1.org event and its receipt, one audit entry) in one small
// transaction, whatever the number of sessions it covers, and hands the
// event to the relay; then it counts what the rule covers. The covered
// sessions are revoked from its commit on (ruleCovers); their rows are
// marked by MarkRules. It returns how many sessions and users it covered.
func (s *Service) revokeByRule(ctx context.Context, p Principal, f BulkFilter, now time.Time, meta ClientMeta) (BulkResult, error) {
	authBefore := now
	if f.SignedInBefore != nil {
		authBefore = *f.SignedInBefore
	}
	// To the microsecond, as sign-ins are kept and carried (auth_time): the
	// database and every gateway compare the same two numbers.
	authBefore = authBefore.Truncate(time.Microsecond)
	r := newRevocation(ctx, events.ReasonAdminBulkRevoke, p.UserID, f.OrgID, meta.IP)
	ev := events.OrgRevoked{EventID: uuid.NewString(), Org: f.OrgID, Role: f.Role, AuthBefore: authBefore.UTC(), Reason: r.reason,
		RevokedAt: now.UTC(), ExpiresAt: s.revocationExpires(now).UTC()}
	res := BulkResult{RevocationID: r.receipt}
	var out outboxRows
	// The rule commits and is published before anything is counted: the
	// count of 100,000 sessions would delay the edge by tens of ms.
	err := s.inTx(ctx, "revokeByRule", func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO revocation_rules (id, org_id, role, auth_before, actor_id, ip, receipt_id, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, ev.EventID, f.OrgID, nullable(f.Role), authBefore, nullable(p.UserID),
			nullableIP(meta.IP), r.receipt, now, ev.ExpiresAt)
		if err := out.queue(b, r, ev); err != nil {
			return err
		}
		queueReceipt(b, r, f.OrgID, 1)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		detail := bulkDetail(f, r.receipt)
		detail["rule"] = ev.EventID
		return writeAudit(ctx, tx, auditEntry{Action: ActionBulkRevoke, ActorID: p.UserID, OrgID: f.OrgID, IP: meta.IP,
			Reason: string(r.reason), Detail: detail})
	})
	if err != nil {
		return BulkResult{}, domainOr(err, "bulk revocation")
	}
	s.committed(ctx, out)
	// What it covered, not yet marked; the counts join the audit entry.
	q := ruleTargets(f.OrgID, f.Role, authBefore).where("", now)
	rule, org := q.bind(ev.EventID), q.bind(f.OrgID)
	err = s.pool.QueryRow(ctx, `WITH counts AS (SELECT count(*) AS n, count(DISTINCT user_id) AS users FROM sessions WHERE `+q.sql()+`),
		audit AS (UPDATE audit_log SET detail = detail || jsonb_build_object('revoked_sessions', (SELECT n FROM counts), 'revoked_users', (SELECT users FROM counts))
			WHERE action = 'bulk_revoke' AND org_id = `+org+`::uuid AND detail->>'rule' = `+rule+`)
		SELECT n, users FROM counts`, q.args...).Scan(&res.RevokedSessions, &res.RevokedUsers)
	if err != nil {
		return BulkResult{}, fmt.Errorf("%w: the rule is in force, but its count failed: %w", ErrUnavailable, err)
	}
	s.metrics.revocations.WithLabelValues(string(r.reason)).Add(float64(res.RevokedSessions))
	select {
	case s.ruleWake <- struct{}{}: // this replica's marker starts now; the others at their next tick
	default:
	}
	return res, nil
}

// ruleMarkBatch is how many session rows one step of MarkRules marks.
const ruleMarkBatch = 5000

// ruleSettle is how long after a rule's auth_before its marking may end: a
// sign-in stamped before the bound whose transaction commits after the
// rule is still marked.
const ruleSettle = 5 * time.Second

// ErrNoRuleToMark is MarkRules' answer when no rule has rows left to mark.
var ErrNoRuleToMark = errors.New("no revocation rule to mark")

// rulesAtOnce is how many unmarked rules one step of MarkRules looks at.
const rulesAtOnce = 16

// rule is a revocation rule as the marker reads it.
type rule struct {
	id, org, role         string // role "" for every role
	actor, ip             *string
	authBefore, revokedAt time.Time
}

// MarkRules takes one step of marking what revocation rules cover. It
// locks the oldest unmarked rules (SKIP LOCKED: replicas and restarts
// share the work and never do it twice) and, for the first with covered
// rows left, marks up to ruleMarkBatch of them revoked, deletes their
// refresh tokens and writes one audit row each, in one transaction. A rule
// with nothing left that has settled is marked done on the way; one that
// has not settled yet is passed over, so it holds up no other. It returns
// how many sessions it marked, or ErrNoRuleToMark when none was left.
func (s *Service) MarkRules(ctx context.Context) (int, error) {
	now := s.now()
	n := 0
	var out outboxRows
	err := s.inTx(ctx, "MarkRules", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, org_id, COALESCE(role, ''), auth_before, actor_id::text, host(ip), created_at FROM revocation_rules
			WHERE marked_at IS NULL ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED`, rulesAtOnce)
		if err != nil {
			return err
		}
		rules, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (rule, error) {
			var r rule
			err := row.Scan(&r.id, &r.org, &r.role, &r.authBefore, &r.actor, &r.ip, &r.revokedAt)
			return r, err
		})
		if err != nil {
			return err
		}
		for _, r := range rules {
			q := ruleTargets(r.org, r.role, r.authBefore).where("", now)
			at, reason, actor, ip := q.bind(r.revokedAt), q.bind(string(events.ReasonAdminBulkRevoke)), q.bind(r.actor), q.bind(r.ip)
			rev := revocation{reason: events.ReasonAdminBulkRevoke}
			if r.actor != nil {
				rev.actorID = *r.actor
			}
			// The rule's org is one: one signal at most.
			var sig outbox.Message
			sql := `WITH batch AS (SELECT id FROM sessions WHERE ` + q.sql() + ` LIMIT ` + q.bind(ruleMarkBatch) + ` FOR UPDATE SKIP LOCKED),
				marked AS (UPDATE sessions SET revoked_at = ` + at + `, revoked_reason = ` + reason + `, revoked_by = ` + actor + `::uuid
					FROM batch WHERE sessions.id = batch.id RETURNING sessions.id, sessions.user_id, sessions.org_id),
				tokens AS (DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM marked)),
				audit AS (INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, reason, at)
					SELECT 'session_revoked', ` + actor + `::uuid, org_id, user_id, id, ` + ip + `::inet, ` + reason + `, ` + at + ` FROM marked),
				` + sessionsSignal(q, "marked", rev, at) + `,
				sent AS (INSERT INTO outbox (event_id, subject, payload, receipt_id) ` + signalRows + ` RETURNING event_id::text, subject, payload)
				SELECT (SELECT count(*) FROM marked), COALESCE((SELECT event_id FROM sent), ''), COALESCE((SELECT subject FROM sent), ''), (SELECT payload FROM sent)`
			err = tx.QueryRow(ctx, sql, q.args...).Scan(&n, &sig.EventID, &sig.Subject, &sig.Payload)
			if err != nil {
				return err
			}
			if sig.EventID != "" {
				out = append(out, sig)
			}
			if n > 0 {
				return nil
			}
			if now.After(r.authBefore.Add(ruleSettle)) {
				if _, err := tx.Exec(ctx, `UPDATE revocation_rules SET marked_at = $2 WHERE id = $1`, r.id, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: rule marking: %w", ErrUnavailable, err)
	}
	s.committed(ctx, out)
	if n == 0 {
		return 0, ErrNoRuleToMark
	}
	return n, nil
}

// RunRuleMarker marks what revocation rules cover until ctx ends: at once
// after this replica commits a rule, without a pause while there is work,
// and every interval.
func (s *Service) RunRuleMarker(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			_, err := s.MarkRules(ctx)
			if errors.Is(err, ErrNoRuleToMark) {
				break
			}
			if err != nil {
				s.log.WarnContext(ctx, "revocation rules not marked; trying again", "error", err.Error())
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.ruleWake:
		}
	}
}
