package sessions

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Audit actions.
const (
	ActionLogin               = "login"
	ActionLoginFailed         = "login_failed"
	ActionRefreshReuse        = "refresh_reuse"
	ActionSessionRevoked      = "session_revoked"
	ActionUserSessionsRevoked = "user_sessions_revoked"
	ActionUserDisabled        = "user_disabled"
	ActionUserEnabled         = "user_enabled"
	ActionUserCreated         = "user_created"
	ActionOrgCreated          = "org_created"
	ActionUserErased          = "user_erased"
	ActionBulkRevoke          = "bulk_revoke" // the rule: who, the filter, the reason text, the count
	ActionLockoutCleared      = "lockout_cleared"
	ActionPolicyChanged       = "policy_changed"
	ActionClientCreated       = "client_created"
	ActionClientDeleted       = "client_deleted"
)

// auditEntry is one row of the audit log. Empty strings are stored as NULL.
type auditEntry struct {
	Action       string
	ActorID      string
	OrgID        string
	TargetUserID string
	SessionID    string
	IP           netip.Addr
	Reason       string
	Detail       map[string]any
}

func writeAudit(ctx context.Context, q querier, e auditEntry) error {
	var detail any
	if len(e.Detail) > 0 {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return err
		}
		detail = b
	}
	_, err := q.Exec(ctx, `INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, reason, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		e.Action, nullable(e.ActorID), nullable(e.OrgID), nullable(e.TargetUserID), nullable(e.SessionID), nullableIP(e.IP), nullable(e.Reason), detail)
	return err
}

// AuditEntry is one audit record as the API shows it: who (actor_id) did
// what (action) to whom (user_id, session_id), when, from which IP, and why.
type AuditEntry struct {
	ID        int64          `json:"id"`
	At        time.Time      `json:"at"`
	Action    string         `json:"action"`
	ActorID   *string        `json:"actor_id"`
	OrgID     *string        `json:"org_id"`
	UserID    *string        `json:"user_id"`
	SessionID *string        `json:"session_id"`
	IP        *string        `json:"ip"`
	Reason    *string        `json:"reason"`
	Detail    map[string]any `json:"detail"`
	// DeviceType and Client are those of the entry's session, while the
	// session is kept (null otherwise).
	DeviceType *string `json:"device_type"`
	Client     *string `json:"client"`
}

// AuditQuery filters the audit log.
type AuditQuery struct {
	UserID, OrgID, Action, Cursor string
	Limit                         int
}

// AuditPage is one page of the audit log, newest first.
type AuditPage struct {
	Entries    []AuditEntry `json:"entries"`
	NextCursor *string      `json:"next_cursor"`
}

var auditActions = map[string]bool{
	ActionLogin: true, ActionLoginFailed: true, ActionRefreshReuse: true, ActionSessionRevoked: true,
	ActionUserSessionsRevoked: true, ActionUserDisabled: true, ActionUserEnabled: true, ActionUserCreated: true,
	ActionOrgCreated: true, ActionUserErased: true, ActionBulkRevoke: true, ActionLockoutCleared: true, ActionPolicyChanged: true,
	ActionClientCreated: true, ActionClientDeleted: true,
}

// ListAudit returns audit entries in an admin's scope (an org admin sees its
// own org's), newest first, keyset-paginated. ErrForbidden for a plain
// user or another org; ErrInvalid for bad filters.
func (s *Service) ListAudit(ctx context.Context, p Principal, q AuditQuery) (AuditPage, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return AuditPage{}, err
	}
	switch {
	case q.UserID != "" && !isUUID(q.UserID):
		return AuditPage{}, Invalid("user_id must be a UUID")
	case q.OrgID != "" && !isUUID(q.OrgID):
		return AuditPage{}, Invalid("org_id must be a UUID")
	case q.Action != "" && !auditActions[q.Action]:
		return AuditPage{}, Invalid("action %q is not an audit action", q.Action)
	}
	if scope != "" {
		if q.OrgID != "" && q.OrgID != scope {
			return AuditPage{}, fmt.Errorf("%w: an org_admin reads its own org's audit log only", ErrForbidden)
		}
		q.OrgID = scope
	}
	if q.Limit, err = pageLimit(q.Limit); err != nil {
		return AuditPage{}, err
	}
	var c query
	add := c.add
	if q.OrgID != "" {
		add("a.org_id = ?", q.OrgID)
	}
	if q.UserID != "" {
		add("a.target_user_id = ?", q.UserID)
	}
	if q.Action != "" {
		add("a.action = ?", q.Action)
	}
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor, func(id string) bool { _, err := strconv.ParseInt(id, 10, 64); return err == nil })
		if err != nil {
			return AuditPage{}, err
		}
		add("(a.at, a.id) < (?, ?::bigint)", at, id)
	}
	limit := c.limitArg(q.Limit)
	// The page first, then its sessions' device and client.
	rows, err := s.pool.Query(ctx, `SELECT a.id, a.at, a.action, a.actor_id, a.org_id, a.target_user_id, a.session_id, host(a.ip), a.reason, a.detail,
			s.device_type, s.user_agent, s.id IS NOT NULL
		FROM (SELECT * FROM audit_log a WHERE `+c.sql()+` ORDER BY a.at DESC, a.id DESC LIMIT `+limit+`) a
		LEFT JOIN sessions s ON s.id = a.session_id ORDER BY a.at DESC, a.id DESC`, c.args...)
	if err != nil {
		return AuditPage{}, fmt.Errorf("%w: audit: %w", ErrUnavailable, err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var (
			e     AuditEntry
			ua    *string
			known bool
		)
		err := r.Scan(&e.ID, &e.At, &e.Action, &e.ActorID, &e.OrgID, &e.UserID, &e.SessionID, &e.IP, &e.Reason, &e.Detail, &e.DeviceType, &ua, &known)
		e.At = e.At.UTC()
		if known {
			label := ClientLabel(orEmpty(ua))
			e.Client = &label
		}
		return e, err
	})
	if err != nil {
		return AuditPage{}, fmt.Errorf("%w: audit: %w", ErrUnavailable, err)
	}
	var page AuditPage
	var next string
	page.Entries, next = trimPage(entries, q.Limit, func(e AuditEntry) string { return encodeCursor(e.At, strconv.FormatInt(e.ID, 10)) })
	if next != "" {
		page.NextCursor = &next
	}
	return page, nil
}
