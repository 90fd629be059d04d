package sessions

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
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
	ActionOrgCreated: true, ActionUserErased: true,
}

// ListAudit returns audit entries in an admin's scope (an org admin sees its
// own org's), newest first, keyset-paginated. ErrForbidden for a plain
// user or another org; ErrInvalid for bad filters.
func (s *Service) ListAudit(ctx context.Context, p Principal, q AuditQuery) (AuditPage, error) {
	scope, err := adminScope(p)
	if err != nil {
		return AuditPage{}, err
	}
	switch {
	case q.UserID != "" && !isUUID(q.UserID):
		return AuditPage{}, invalid("user_id must be a UUID")
	case q.OrgID != "" && !isUUID(q.OrgID):
		return AuditPage{}, invalid("org_id must be a UUID")
	case q.Action != "" && !auditActions[q.Action]:
		return AuditPage{}, invalid("action %q is not an audit action", q.Action)
	}
	if scope != "" {
		if q.OrgID != "" && q.OrgID != scope {
			return AuditPage{}, fmt.Errorf("%w: an org_admin reads its own org's audit log only", ErrForbidden)
		}
		q.OrgID = scope
	}
	if q.Limit == 0 {
		q.Limit = DefaultListLimit
	}
	if q.Limit < 1 || q.Limit > MaxListLimit {
		return AuditPage{}, invalid("limit must be between 1 and %d", MaxListLimit)
	}
	var conds []string
	var args []any
	add := func(cond string, v ...any) {
		for _, x := range v {
			args = append(args, x)
			cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1)
		}
		conds = append(conds, cond)
	}
	if q.OrgID != "" {
		add("org_id = ?", q.OrgID)
	}
	if q.UserID != "" {
		add("target_user_id = ?", q.UserID)
	}
	if q.Action != "" {
		add("action = ?", q.Action)
	}
	if q.Cursor != "" {
		at, id, err := decodeAuditCursor(q.Cursor)
		if err != nil {
			return AuditPage{}, err
		}
		add("(at, id) < (?, ?)", at, id)
	}
	where := "TRUE"
	if len(conds) > 0 {
		where = strings.Join(conds, " AND ")
	}
	args = append(args, q.Limit+1)
	rows, err := s.pool.Query(ctx, `SELECT id, at, action, actor_id, org_id, target_user_id, session_id, host(ip), reason, detail
		FROM audit_log WHERE `+where+` ORDER BY at DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return AuditPage{}, fmt.Errorf("%w: audit: %w", ErrUnavailable, err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := r.Scan(&e.ID, &e.At, &e.Action, &e.ActorID, &e.OrgID, &e.UserID, &e.SessionID, &e.IP, &e.Reason, &e.Detail)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return AuditPage{}, fmt.Errorf("%w: audit: %w", ErrUnavailable, err)
	}
	page := AuditPage{Entries: entries}
	if len(entries) > q.Limit {
		page.Entries = entries[:q.Limit]
		last := page.Entries[q.Limit-1]
		c := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last.At.UnixMicro(), 10) + "|" + strconv.FormatInt(last.ID, 10)))
		page.NextCursor = &c
	}
	return page, nil
}

func decodeAuditCursor(c string) (time.Time, int64, error) {
	bad := invalid("cursor is not one this API returned")
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, 0, bad
	}
	us, ids, ok := strings.Cut(string(b), "|")
	if !ok {
		return time.Time{}, 0, bad
	}
	n, err1 := strconv.ParseInt(us, 10, 64)
	id, err2 := strconv.ParseInt(ids, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, bad
	}
	return time.UnixMicro(n).UTC(), id, nil
}
