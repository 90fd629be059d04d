package sessions

import (
	"context"
	"encoding/json"
	"net/netip"
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
