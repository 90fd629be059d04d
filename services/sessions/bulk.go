package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/tokens"
)

// BulkFilter selects the live sessions of one org that a bulk revocation
// ends (POST /v1/revocations): every condition set must hold.
type BulkFilter struct {
	OrgID            string
	UserID           string
	Role             string
	DeviceType       string
	SignedInBefore   *time.Time
	LastActiveBefore *time.Time
	ReasonText       string
	DryRun           bool
}

// BulkResult answers a bulk revocation: what matches (a dry run), or what
// was revoked and the receipt's id.
type BulkResult struct {
	MatchedSessions, MatchedUsers int
	RevocationID                  string
	RevokedSessions, RevokedUsers int
}

// maxReasonText bounds a bulk revocation's reason text.
const maxReasonText = 500

// filter checks f for p and turns it into a session filter. Errors:
// ErrForbidden for a plain user, ErrInvalid naming the field, ErrNotFound
// for an org outside p's scope.
func (s *Service) bulkFilter(ctx context.Context, p Principal, f BulkFilter, now time.Time) (sessionFilter, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return sessionFilter{}, err
	}
	switch {
	case f.OrgID == "":
		return sessionFilter{}, Invalid("org_id is required: a bulk revocation covers one org")
	case !isUUID(f.OrgID):
		return sessionFilter{}, Invalid("org_id must be a UUID")
	case f.UserID != "" && !isUUID(f.UserID):
		return sessionFilter{}, Invalid("user_id must be a UUID")
	case f.Role != "" && f.Role != tokens.RoleUser && f.Role != tokens.RoleOrgAdmin && f.Role != tokens.RoleGlobalAdmin:
		return sessionFilter{}, Invalid("role must be user, org_admin or global_admin")
	case f.DeviceType != "" && !validDeviceType(f.DeviceType):
		return sessionFilter{}, Invalid("device_type %q is not one of ios, android, web, desktop, other", f.DeviceType)
	case f.SignedInBefore != nil && f.SignedInBefore.After(now):
		return sessionFilter{}, Invalid("signed_in_before is in the future")
	case f.LastActiveBefore != nil && f.LastActiveBefore.After(now):
		return sessionFilter{}, Invalid("last_active_before is in the future")
	case len(f.ReasonText) > maxReasonText || !storable(f.ReasonText):
		return sessionFilter{}, Invalid("reason_text must be text of at most %d bytes", maxReasonText)
	case scope != "" && f.OrgID != scope:
		return sessionFilter{}, fmt.Errorf("%w: no org with this id in your scope", ErrNotFound)
	case scope != "" && f.Role == tokens.RoleGlobalAdmin:
		return sessionFilter{}, Forbidden("an org_admin cannot revoke a global admin's sessions")
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = $1)`, f.OrgID).Scan(&exists); err != nil {
		return sessionFilter{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !exists {
		return sessionFilter{}, fmt.Errorf("%w: no org with this id in your scope", ErrNotFound)
	}
	// A global admin is never in an org admin's scope, even in its own org.
	sf := sessionFilter{orgID: f.OrgID, userID: f.UserID, role: f.Role, deviceType: f.DeviceType, noGlobalAdmins: scope != ""}
	if f.SignedInBefore != nil {
		sf.signedInBefore = *f.SignedInBefore
	}
	if f.LastActiveBefore != nil {
		sf.lastActiveBefore = *f.LastActiveBefore
	}
	return sf, nil
}

// RevokeByFilter revokes every live session of one org that f selects
// (reason admin_bulk_revoke). A filter of the org, a role and a sign-in
// bound only becomes one rule, enforced at the edge by one event
// (revokeByRule); any other is revoked session by session as RevokeSession
// does, in batches (revokeInBatches). Either way one audit entry records the
// action (who, the filter, the reason text, the count) beside one per
// session. An org admin acts on its own org, a global admin on any one org.
// With f.DryRun it counts what matches and writes nothing.
func (s *Service) RevokeByFilter(ctx context.Context, p Principal, f BulkFilter, meta ClientMeta) (BulkResult, error) {
	now := s.now()
	sf, err := s.bulkFilter(ctx, p, f, now)
	if err != nil {
		return BulkResult{}, err
	}
	if f.DryRun {
		q := &query{}
		sf.conds(q, "", now)
		var res BulkResult
		if err := s.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT user_id) FROM sessions WHERE `+q.sql(), q.args...).
			Scan(&res.MatchedSessions, &res.MatchedUsers); err != nil {
			return BulkResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return res, nil
	}
	if f.ruleOnly() {
		// A rule covers every role of the org, or one: an org admin's rule
		// for every role would reach the org's global admins, so it is
		// made only when the org has none.
		rule := !sf.noGlobalAdmins || f.Role != ""
		if !rule {
			var admins bool
			if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE org_id = $1 AND role = 'global_admin' AND erased_at IS NULL)`, f.OrgID).Scan(&admins); err != nil {
				return BulkResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			rule = !admins
		}
		if rule {
			return s.revokeByRule(ctx, p, f, now, meta)
		}
	}
	return s.revokeInBatches(ctx, p, f, sf, now, meta)
}

// bulkBatch is how many sessions one transaction of a bulk revocation
// revokes: enough that a batch's commit costs little per session, few
// enough that the edge starts refusing after the first batch's commit (of
// the order of 100 ms), not after the whole.
const bulkBatch = 2000

// revokeInBatches revokes the sessions sf selects that were live when the
// call began (start): up to bulkBatch of them per transaction, each batch
// handed to the relay as it commits, so the gateways apply the first
// batches while the next ones commit. A session that signs in after start
// is never revoked by it. The batches share one receipt, complete with the
// last one, which also writes the action's audit entry.
//
// The work outlives the request's cancellation: once begun it runs to the
// end, as a client that goes away must not leave a half-done revocation.
// A crash in the middle leaves the batches committed so far revoked (and
// published) and the receipt incomplete; the same call again revokes the
// rest.
func (s *Service) revokeInBatches(ctx context.Context, p Principal, f BulkFilter, sf sessionFilter, start time.Time, meta ClientMeta) (BulkResult, error) {
	ctx = context.WithoutCancel(ctx)
	if sf.signedInBefore.IsZero() || sf.signedInBefore.After(start) {
		sf.signedInBefore = start
	}
	r := newRevocation(ctx, events.ReasonAdminBulkRevoke, p.UserID, f.OrgID, meta.IP)
	res := BulkResult{RevocationID: r.receipt}
	users := map[string]struct{}{}
	for {
		var (
			out outboxRows
			n   int // revoked by this batch, once it commits
		)
		err := s.inTx(ctx, "revokeInBatches", func(tx pgx.Tx) error {
			now := s.now()
			// Lock the batch first: what the lock returns is what the
			// statement below revokes, and names the users. One session
			// more tells whether another batch follows, so that the last
			// batch is never an empty one and its events name the total.
			q := sf.where("", now)
			sql := `SELECT id, user_id FROM sessions WHERE ` + q.sql() + ` LIMIT ` + q.bind(bulkBatch+1) + ` FOR UPDATE`
			rows, err := tx.Query(ctx, sql, q.args...)
			if err != nil {
				return err
			}
			// The batch is its rows and nothing else: they match the filter
			// and are locked, and a statement that named the org too could
			// be planned along the org's index (its statistics lag behind
			// a mass sign-in), filtering each of its rows through the list.
			batch := sessionFilter{ids: make([]string, 0, bulkBatch+1)}
			var id, uid string
			if _, err := pgx.ForEachRow(rows, []any{&id, &uid}, func() error {
				if len(batch.ids) < bulkBatch {
					users[uid] = struct{}{}
				}
				batch.ids = append(batch.ids, id)
				return nil
			}); err != nil {
				return err
			}
			r.partial = len(batch.ids) > bulkBatch
			batch.ids = batch.ids[:min(len(batch.ids), bulkBatch)]
			if n, err = s.revokeSessions(ctx, tx, now, batch, r, &out); err != nil || r.partial {
				return err
			}
			res.RevokedSessions, res.RevokedUsers = r.earlier+n, len(users)
			return writeAudit(ctx, tx, auditEntry{Action: ActionBulkRevoke, ActorID: p.UserID, OrgID: f.OrgID, IP: meta.IP,
				Reason: string(r.reason), Detail: withCounts(bulkDetail(f, r.receipt), res.RevokedSessions, res.RevokedUsers)})
		})
		if err != nil {
			if r.earlier > 0 {
				s.abandonBatches(ctx, p, f, r, len(users), meta)
				return BulkResult{}, fmt.Errorf("%w: bulk revocation stopped after %d sessions (receipt %s); the same call revokes the rest: %w",
					ErrUnavailable, r.earlier, r.receipt, err)
			}
			return BulkResult{}, domainOr(err, "bulk revocation")
		}
		r.earlier += n
		s.committed(ctx, out)
		if !r.partial {
			return res, nil
		}
	}
}

// bulkDetail is a bulk revocation's audit detail: its filter, its reason
// text and its receipt.
func bulkDetail(f BulkFilter, receipt string) map[string]any {
	filter := map[string]any{"org_id": f.OrgID}
	for k, v := range map[string]string{"user_id": f.UserID, "role": f.Role, "device_type": f.DeviceType} {
		if v != "" {
			filter[k] = v
		}
	}
	if f.SignedInBefore != nil {
		filter["signed_in_before"] = f.SignedInBefore.UTC()
	}
	if f.LastActiveBefore != nil {
		filter["last_active_before"] = f.LastActiveBefore.UTC()
	}
	d := map[string]any{"filter": filter, "revocation_id": receipt}
	if f.ReasonText != "" {
		d["reason_text"] = f.ReasonText
	}
	return d
}

// withCounts adds what a bulk revocation ended to its audit detail d.
func withCounts(d map[string]any, sessions, users int) map[string]any {
	d["revoked_sessions"], d["revoked_users"] = sessions, users
	return d
}

// abandonBatches closes the receipt of a bulk revocation stopped after
// some batches, so that it reports what those became (published, then
// enforced), and records the action with what it revoked. Best effort: the
// database may be what failed.
func (s *Service) abandonBatches(ctx context.Context, p Principal, f BulkFilter, r revocation, users int, meta ClientMeta) {
	err := s.inTx(ctx, "abandonBatches", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE revocation_receipts SET complete = true, events = $2 WHERE id = $1`, r.receipt, r.earlier); err != nil {
			return err
		}
		d := withCounts(bulkDetail(f, r.receipt), r.earlier, users)
		d["stopped"] = true
		return writeAudit(ctx, tx, auditEntry{Action: ActionBulkRevoke, ActorID: p.UserID, OrgID: f.OrgID, IP: meta.IP, Reason: string(r.reason), Detail: d})
	})
	if err != nil {
		s.log.WarnContext(ctx, "a stopped bulk revocation's receipt was not closed; it stays committed", "revocation_id", r.receipt, "error", err.Error())
	}
}
