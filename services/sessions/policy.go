package sessions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/loop"
)

// Session policies: per organisation, a cap on each user's live sessions
// (enforced at login: revoke the oldest, or deny), an idle timeout and a
// bound on a session's lifetime (enforced at refresh, at once, and by
// SweepPolicies, which revokes and publishes what they end).

// Policy is an organisation's session policy; zero values mean none.
type Policy struct {
	MaxSessionsPerUser int           `json:"max_sessions_per_user"`
	OnLimit            string        `json:"on_limit"`
	IdleTimeout        time.Duration `json:"-"`
	MaxSessionLifetime time.Duration `json:"-"`
}

// What a session limit does to the login past it.
const (
	OnLimitRevokeOldest = "revoke_oldest"
	OnLimitDeny         = "deny"
)

// Bounds of a policy.
const (
	minIdleTimeout  = time.Minute
	maxLifetime     = 8760 * time.Hour
	maxSessionCap   = 10000
	policySweepRows = 2000 // sessions revoked per transaction of the sweep
)

// ErrSessionLimit is a login past a deny policy's cap: 409, problem
// session_limit.
var ErrSessionLimit = errors.New("session limit")

var errSessionLimit = fmt.Errorf("%w: the organisation allows no more sessions for this user; sign out on another device first", ErrSessionLimit)

// Validate checks p, naming the field at fault.
func (p Policy) Validate() error {
	switch {
	case p.MaxSessionsPerUser < 0 || p.MaxSessionsPerUser > maxSessionCap:
		return Invalid("max_sessions_per_user must be between 0 (none) and %d", maxSessionCap)
	case p.OnLimit != OnLimitRevokeOldest && p.OnLimit != OnLimitDeny:
		return Invalid("on_limit must be revoke_oldest or deny")
	case p.IdleTimeout < 0 || (p.IdleTimeout > 0 && p.IdleTimeout < minIdleTimeout):
		return Invalid("idle_timeout must be 0s (none) or at least 1m")
	case p.IdleTimeout > maxLifetime:
		return Invalid("idle_timeout must be at most 8760h")
	case p.MaxSessionLifetime < 0 || p.MaxSessionLifetime > maxLifetime:
		return Invalid("max_session_lifetime must be between 0s (none) and 8760h")
	case p.MaxSessionLifetime > 0 && p.MaxSessionLifetime < minIdleTimeout:
		return Invalid("max_session_lifetime must be 0s (none) or at least 1m")
	}
	return nil
}

// policyOrg checks that p may read or set org's policy: an org admin its
// own org, a global admin any. ErrNotFound otherwise (or for no such org).
func (s *Service) policyOrg(ctx context.Context, p Principal, org string) error {
	scope, err := AdminScope(p)
	if err != nil {
		return err
	}
	if !isUUID(org) {
		return Invalid("org id must be a UUID")
	}
	if scope != "" && scope != org {
		return fmt.Errorf("%w: no org with this id in your scope", ErrNotFound)
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = $1)`, org).Scan(&exists); err != nil {
		return fmt.Errorf("%w: policy: %w", ErrUnavailable, err)
	}
	if !exists {
		return fmt.Errorf("%w: no org with this id in your scope", ErrNotFound)
	}
	return nil
}

// GetPolicy returns org's session policy (the defaults when none is set).
func (s *Service) GetPolicy(ctx context.Context, p Principal, org string) (Policy, error) {
	if err := s.policyOrg(ctx, p, org); err != nil {
		return Policy{}, err
	}
	pol, err := loadPolicy(ctx, s.pool, org)
	if err != nil {
		return Policy{}, fmt.Errorf("%w: policy: %w", ErrUnavailable, err)
	}
	return pol, nil
}

// SetPolicy replaces org's session policy and records it in the audit log.
// A lower cap or a shorter timeout takes effect at the next login, refresh
// and sweep.
func (s *Service) SetPolicy(ctx context.Context, p Principal, org string, pol Policy, meta ClientMeta) (Policy, error) {
	if err := s.policyOrg(ctx, p, org); err != nil {
		return Policy{}, err
	}
	if err := pol.Validate(); err != nil {
		return Policy{}, err
	}
	err := s.inTx(ctx, "SetPolicy", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO org_policies (org_id, max_sessions_per_user, on_limit, idle_timeout, max_session_lifetime, updated_at, updated_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (org_id) DO UPDATE SET max_sessions_per_user = EXCLUDED.max_sessions_per_user, on_limit = EXCLUDED.on_limit,
				idle_timeout = EXCLUDED.idle_timeout, max_session_lifetime = EXCLUDED.max_session_lifetime,
				updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by`,
			org, pol.MaxSessionsPerUser, pol.OnLimit, pol.IdleTimeout, pol.MaxSessionLifetime, s.now(), nullable(p.UserID)); err != nil {
			return err
		}
		return writeAudit(ctx, tx, auditEntry{Action: ActionPolicyChanged, ActorID: p.UserID, OrgID: org, IP: meta.IP, Detail: map[string]any{
			"max_sessions_per_user": pol.MaxSessionsPerUser, "on_limit": pol.OnLimit,
			"idle_timeout": pol.IdleTimeout.String(), "max_session_lifetime": pol.MaxSessionLifetime.String()}})
	})
	if err != nil {
		return Policy{}, domainOr(err, "set policy")
	}
	return pol, nil
}

// loadPolicy reads org's policy: the defaults when it has none.
func loadPolicy(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, org string) (Policy, error) {
	pol := Policy{OnLimit: OnLimitRevokeOldest}
	err := db.QueryRow(ctx, `SELECT max_sessions_per_user, on_limit, idle_timeout, max_session_lifetime FROM org_policies WHERE org_id = $1`, org).
		Scan(&pol.MaxSessionsPerUser, &pol.OnLimit, &pol.IdleTimeout, &pol.MaxSessionLifetime)
	if errors.Is(err, pgx.ErrNoRows) {
		return pol, nil
	}
	return pol, err
}

// policyEnded says whether pol ends a session signed in at created and
// last active at lastActive, at now, and with which reason.
func (pol Policy) ended(created, lastActive, now time.Time) (events.Reason, bool) {
	switch {
	case pol.MaxSessionLifetime > 0 && !created.After(now.Add(-pol.MaxSessionLifetime)):
		return events.ReasonMaxLifetime, true
	case pol.IdleTimeout > 0 && !lastActive.After(now.Add(-pol.IdleTimeout)):
		return events.ReasonIdleTimeout, true
	}
	return "", false
}

// enforceCap makes room for a new session of user under pol at login,
// inside tx (the user's row locked): with revoke_oldest it revokes the
// oldest live sessions past the cap (reason session_limit); with deny it
// answers ErrSessionLimit.
func (s *Service) enforceCap(ctx context.Context, tx pgx.Tx, pol Policy, userID, orgID string, now time.Time, meta ClientMeta, out *outboxRows) error {
	if pol.MaxSessionsPerUser == 0 {
		return nil
	}
	// The user's live sessions, the oldest past the newest cap-1 to end so
	// that the new one fits. In the order of the partial index of live
	// sessions, so that it is the one read, however many sessions the user
	// had before (the index by sign-in time holds them all).
	q := sessionFilter{userID: userID}.where("", now)
	sql := `SELECT id::text, created_at FROM sessions WHERE ` + q.sql() + `
		ORDER BY last_active_at DESC, id DESC LIMIT ` + q.bind(maxSessionCap+1)
	rows, err := tx.Query(ctx, sql, q.args...)
	if err != nil {
		return err
	}
	type live struct {
		id      string
		created time.Time
	}
	sessions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (live, error) {
		var l live
		err := r.Scan(&l.id, &l.created)
		return l, err
	})
	if err != nil || len(sessions) < pol.MaxSessionsPerUser {
		return err
	}
	slices.SortFunc(sessions, func(a, b live) int {
		if c := b.created.Compare(a.created); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	var oldest []string
	for _, l := range sessions[pol.MaxSessionsPerUser-1:] {
		oldest = append(oldest, l.id)
	}
	if pol.OnLimit == OnLimitDeny {
		return errSessionLimit
	}
	r := revocation{reason: events.ReasonSessionLimit, actorID: userID, orgID: orgID, ip: meta.IP, receipt: uuid.NewString()}
	_, err = s.revokeSessions(ctx, tx, now, sessionFilter{ids: oldest}, r, out)
	return err
}

// SweepPolicies revokes, for every org with an idle timeout or a lifetime
// bound, the live sessions they end, in transactions of at most
// policySweepRows sessions, each published as it commits (reasons
// idle_timeout and max_lifetime). It returns how many it revoked. Safe to
// run on every replica at once: a session is revoked once, whoever gets
// there first.
func (s *Service) SweepPolicies(ctx context.Context) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT org_id::text, idle_timeout, max_session_lifetime FROM org_policies
		WHERE idle_timeout > '0s' OR max_session_lifetime > '0s'`)
	if err != nil {
		return 0, fmt.Errorf("%w: policy sweep: %w", ErrUnavailable, err)
	}
	type bound struct {
		org        string
		idle, life time.Duration
	}
	bounds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (bound, error) {
		var b bound
		err := r.Scan(&b.org, &b.idle, &b.life)
		return b, err
	})
	if err != nil {
		return 0, fmt.Errorf("%w: policy sweep: %w", ErrUnavailable, err)
	}
	total := 0
	for _, b := range bounds {
		for _, c := range []struct {
			reason events.Reason
			d      time.Duration
			filter func(time.Time) sessionFilter
		}{
			{events.ReasonMaxLifetime, b.life, func(t time.Time) sessionFilter { return sessionFilter{orgID: b.org, signedInBefore: t} }},
			{events.ReasonIdleTimeout, b.idle, func(t time.Time) sessionFilter { return sessionFilter{orgID: b.org, lastActiveBefore: t} }},
		} {
			if c.d <= 0 {
				continue
			}
			for ctx.Err() == nil {
				n, err := s.sweepBatch(ctx, c.filter, c.d, c.reason)
				total += n
				if err != nil {
					return total, fmt.Errorf("%w: policy sweep: %w", ErrUnavailable, err)
				}
				if n < policySweepRows {
					break
				}
			}
		}
	}
	return total, ctx.Err()
}

// sweepBatch revokes up to policySweepRows sessions that filter selects
// at the bound d before now, with reason.
func (s *Service) sweepBatch(ctx context.Context, filter func(time.Time) sessionFilter, d time.Duration, reason events.Reason) (int, error) {
	var (
		out outboxRows
		n   int
	)
	err := s.inTx(ctx, "sweepBatch", func(tx pgx.Tx) error {
		now := s.now()
		// The bound is inclusive (a session idle for exactly the timeout
		// ends), as at refresh.
		q := filter(now.Add(-d).Add(time.Microsecond)).where("", now)
		sql := `SELECT id::text FROM sessions WHERE ` + q.sql() + ` LIMIT ` + q.bind(policySweepRows) + ` FOR UPDATE SKIP LOCKED`
		rows, err := tx.Query(ctx, sql, q.args...)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(ids) == 0 {
			return err
		}
		r := revocation{reason: reason, receipt: uuid.NewString()}
		n, err = s.revokeSessions(ctx, tx, now, sessionFilter{ids: ids}, r, &out)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.committed(ctx, out)
	return n, nil
}

// RunPolicySweep runs SweepPolicies every interval until ctx ends.
func (s *Service) RunPolicySweep(ctx context.Context, interval time.Duration) {
	loop.Every(ctx, interval, func(ctx context.Context) {
		n, err := s.SweepPolicies(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "session policy sweep failed; trying again at the next", "error", err.Error(), "revoked", n)
			return
		}
		if n > 0 {
			s.log.InfoContext(ctx, "session policy sweep", "revoked", n)
		}
	})
}
