package sessions

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// ActivityEvent is one of a user's own sign-ins, failed sign-ins or
// revocations, as GET /v1/me/activity shows it.
type ActivityEvent struct {
	At         time.Time `json:"at"`
	Action     string    `json:"action"`
	SessionID  *string   `json:"session_id"`
	DeviceType *string   `json:"device_type"`
	Client     *string   `json:"client"`
	IP         *string   `json:"ip"`
	Reason     *string   `json:"reason"`
}

// ActivityPage is a page of a user's own activity, newest first.
type ActivityPage struct {
	Events     []ActivityEvent `json:"events"`
	NextCursor *string         `json:"next_cursor"`
}

// ownActivity are the audit actions a user sees of their own.
var ownActivity = []string{ActionLogin, ActionLoginFailed, ActionSessionRevoked, ActionRefreshReuse}

// ListOwnActivity returns the caller's own sign-ins, failed sign-ins and
// revocations from the audit log, newest first, keyset-paginated, each with
// its session's device type and client when the session is still known.
func (s *Service) ListOwnActivity(ctx context.Context, p Principal, limit int, cursor string) (ActivityPage, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return ActivityPage{}, err
	}
	var c query
	c.add("a.target_user_id = ?", p.UserID)
	c.add("a.action = ANY(?)", ownActivity)
	if cursor != "" {
		at, id, err := decodeCursor(cursor, func(id string) bool { _, err := strconv.ParseInt(id, 10, 64); return err == nil })
		if err != nil {
			return ActivityPage{}, err
		}
		c.add("(a.at, a.id) < (?, ?::bigint)", at, id)
	}
	// The address is shown of what came from the user's side (a sign-in,
	// their own revocations, a failed attempt, a reused token), never an
	// administrator's.
	sql := `SELECT a.id, a.at, a.action, a.session_id::text, COALESCE(s.device_type, a.detail->>'device_type'), s.user_agent,
			CASE WHEN a.actor_id IS NULL OR a.actor_id = a.target_user_id THEN host(a.ip) END, a.reason
		FROM audit_log a LEFT JOIN sessions s ON s.id = a.session_id
		WHERE ` + c.sql() + ` ORDER BY a.at DESC, a.id DESC LIMIT ` + c.limitArg(limit)
	rows, err := s.pool.Query(ctx, sql, c.args...)
	if err != nil {
		return ActivityPage{}, fmt.Errorf("%w: activity: %w", ErrUnavailable, err)
	}
	type row struct {
		id int64
		ActivityEvent
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		var ua *string
		err := r.Scan(&x.id, &x.At, &x.Action, &x.SessionID, &x.DeviceType, &ua, &x.IP, &x.Reason)
		x.At = x.At.UTC()
		if x.SessionID != nil { // a session's client, when it is still known
			label := ClientLabel(orEmpty(ua))
			x.Client = &label
		}
		return x, err
	})
	if err != nil {
		return ActivityPage{}, fmt.Errorf("%w: activity: %w", ErrUnavailable, err)
	}
	got, next := trimPage(got, limit, func(x row) string { return encodeCursor(x.At, strconv.FormatInt(x.id, 10)) })
	page := ActivityPage{Events: make([]ActivityEvent, len(got))}
	for i, x := range got {
		page.Events[i] = x.ActivityEvent
	}
	if next != "" {
		page.NextCursor = &next
	}
	return page, nil
}

func orEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
