package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session is a session as the API shows it. Absent metadata is null.
type Session struct {
	ID           string    `json:"id"`
	UserID       string    `json:"user_id"`
	OrgID        string    `json:"org_id"`
	DeviceType   string    `json:"device_type"`
	DeviceName   *string   `json:"device_name"`
	UserAgent    *string   `json:"user_agent"`
	IP           *string   `json:"ip"`
	CreatedAt    time.Time `json:"created_at"`
	LastActiveAt time.Time `json:"last_active_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	Current      bool      `json:"current"`
}

const sessionColumns = `id, user_id, org_id, device_type, device_name, user_agent, ip, created_at, last_active_at, expires_at`

func scanSession(row pgx.CollectableRow) (Session, error) {
	var (
		s  Session
		ip *netip.Prefix
	)
	err := row.Scan(&s.ID, &s.UserID, &s.OrgID, &s.DeviceType, &s.DeviceName, &s.UserAgent, &ip, &s.CreatedAt, &s.LastActiveAt, &s.ExpiresAt)
	if ip != nil {
		a := ip.Addr().String()
		s.IP = &a
	}
	s.CreatedAt, s.LastActiveAt, s.ExpiresAt = s.CreatedAt.UTC(), s.LastActiveAt.UTC(), s.ExpiresAt.UTC()
	return s, err
}

// ListOwn returns the caller's live sessions, newest activity first, the
// current one marked.
func (s *Service) ListOwn(ctx context.Context, p Principal) ([]Session, error) {
	c := sessionFilter{userID: p.UserID}.conds(s.now())
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE `+c.sql()+` ORDER BY last_active_at DESC, id DESC LIMIT 1000`, c.args...)
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	out, err := pgx.CollectRows(rows, scanSession)
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	for i := range out {
		out[i].Current = out[i].ID == p.SessionID
	}
	return out, nil
}

// ListQuery is an admin listing request.
type ListQuery struct {
	OrgID  string
	UserID string
	Limit  int
	Cursor string
}

// Page is one page of an admin listing; NextCursor is "" on the last page.
type Page struct {
	Sessions   []Session `json:"sessions"`
	NextCursor *string   `json:"next_cursor"`
}

// oldestLive bounds the last activity of a live session: expires_at is set
// to the time of a login or refresh plus RefreshTTL, and last_active_at is
// never earlier than that login or refresh, so a session whose last
// activity is older than now - RefreshTTL has expired. The bound lets a
// listing's index scan stop before the expired sessions that wait for the
// retention purge, instead of reading through them on the last page.
func (s *Service) oldestLive(now time.Time) time.Time { return now.Add(-s.cfg.RefreshTTL) }

// Listing limits.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// ListSessions lists live sessions in an admin's scope, newest activity
// first, keyset-paginated. ErrForbidden for a plain user or an org admin
// naming another org; ErrInvalid for a bad limit, id or cursor.
func (s *Service) ListSessions(ctx context.Context, p Principal, q ListQuery) (Page, error) {
	scope, err := adminScope(p)
	if err != nil {
		return Page{}, err
	}
	if q.OrgID != "" && !isUUID(q.OrgID) {
		return Page{}, invalid("org_id must be a UUID")
	}
	if q.UserID != "" && !isUUID(q.UserID) {
		return Page{}, invalid("user_id must be a UUID")
	}
	if scope != "" {
		if q.OrgID != "" && q.OrgID != scope {
			return Page{}, fmt.Errorf("%w: an org_admin lists its own org only", ErrForbidden)
		}
		q.OrgID = scope
	}
	if q.Limit, err = pageLimit(q.Limit); err != nil {
		return Page{}, err
	}
	now := s.now()
	c := sessionFilter{orgID: q.OrgID, userID: q.UserID}.conds(now)
	c.add("last_active_at > ?", s.oldestLive(now))
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor, isUUID)
		if err != nil {
			return Page{}, err
		}
		c.add("(last_active_at, id) < (?, ?)", at, id)
	}
	limit := c.limitArg(q.Limit)
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE `+c.sql()+
		` ORDER BY last_active_at DESC, id DESC LIMIT `+limit, c.args...)
	if err != nil {
		return Page{}, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	list, err := pgx.CollectRows(rows, scanSession)
	if err != nil {
		return Page{}, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	page := Page{}
	var next string
	page.Sessions, next = trimPage(list, q.Limit, func(x Session) string { return encodeCursor(x.LastActiveAt, x.ID) })
	if next != "" {
		page.NextCursor = &next
	}
	for i := range page.Sessions {
		page.Sessions[i].Current = page.Sessions[i].ID == p.SessionID
	}
	return page, nil
}

// GetSession returns one live session in an admin's scope; ErrNotFound
// otherwise.
func (s *Service) GetSession(ctx context.Context, p Principal, id string) (Session, error) {
	scope, err := adminScope(p)
	if err != nil {
		return Session{}, err
	}
	if !isUUID(id) {
		return Session{}, invalid("session id must be a UUID")
	}
	c := sessionFilter{sessionID: id, orgID: scope}.conds(s.now())
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE `+c.sql(), c.args...)
	if err != nil {
		return Session{}, fmt.Errorf("%w: get session: %w", ErrUnavailable, err)
	}
	out, err := pgx.CollectExactlyOneRow(rows, scanSession)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, fmt.Errorf("%w: no active session with this id in your scope", ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("%w: get session: %w", ErrUnavailable, err)
	}
	out.Current = out.ID == p.SessionID
	return out, nil
}

// SessionSearch is the admin portal's listing request: ListQuery's scope and
// keyset cursor, plus filters on the user's email, the device type and the
// age of the last activity.
type SessionSearch struct {
	OrgID  string
	UserID string
	// Email matches sessions whose user's email contains it, ignoring case.
	Email      string
	DeviceType string
	// Active is "" (any), "1h", "24h" or "7d" (active within that long), or
	// "older" (no activity for 7 days).
	Active string
	Limit  int
	Cursor string
}

// ActivityFilters are the values of SessionSearch.Active, with the window
// each names; "older" is the complement of the longest window.
var ActivityFilters = []struct {
	Value  string
	Window time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"older", 7 * 24 * time.Hour}}

// SessionRow is a session with its user's email and its org's name.
type SessionRow struct {
	Session
	Email   string
	OrgName string
}

// SearchPage is one page of SearchSessions; NextCursor is "" on the last
// page.
type SearchPage struct {
	Sessions   []SessionRow
	NextCursor string
}

// SearchSessions lists live sessions in an admin's scope like ListSessions
// (same scope rules, order and cursor) with the portal's filters. Errors:
// ErrForbidden for a plain user or an org admin naming another org,
// ErrInvalid for a bad filter, limit or cursor, ErrUnavailable.
func (s *Service) SearchSessions(ctx context.Context, p Principal, q SessionSearch) (SearchPage, error) {
	scope, err := adminScope(p)
	if err != nil {
		return SearchPage{}, err
	}
	q.Email = strings.TrimSpace(q.Email)
	switch {
	case q.OrgID != "" && !isUUID(q.OrgID):
		return SearchPage{}, invalid("organisation must be a UUID")
	case q.UserID != "" && !isUUID(q.UserID):
		return SearchPage{}, invalid("user id must be a UUID")
	case len(q.Email) > 254:
		return SearchPage{}, invalid("the email search is at most 254 characters")
	case !storable(q.Email):
		return SearchPage{}, invalid("the email search must be UTF-8 text without NUL characters")
	case q.DeviceType != "" && !deviceTypes[q.DeviceType]:
		return SearchPage{}, invalid("device type must be one of ios, android, web, desktop, other")
	}
	if scope != "" {
		if q.OrgID != "" && q.OrgID != scope {
			return SearchPage{}, fmt.Errorf("%w: an org_admin lists its own org only", ErrForbidden)
		}
		q.OrgID = scope
	}
	if q.Limit, err = pageLimit(q.Limit); err != nil {
		return SearchPage{}, err
	}
	now := s.now()
	var c conds
	add := c.add
	add("s.revoked_at IS NULL")
	add("s.expires_at > ?", now)
	add("s.last_active_at > ?", s.oldestLive(now))
	if q.OrgID != "" {
		add("s.org_id = ?", q.OrgID)
	}
	if q.UserID != "" {
		add("s.user_id = ?", q.UserID)
	}
	if q.Email != "" {
		add("strpos(lower(u.email), ?) > 0", strings.ToLower(q.Email))
	}
	if q.DeviceType != "" {
		add("s.device_type = ?", q.DeviceType)
	}
	if q.Active != "" {
		known := false
		for _, f := range ActivityFilters {
			if f.Value == q.Active {
				known = true
				if f.Value == "older" {
					add("s.last_active_at <= ?", now.Add(-f.Window))
				} else {
					add("s.last_active_at > ?", now.Add(-f.Window))
				}
			}
		}
		if !known {
			return SearchPage{}, invalid("last activity must be one of 1h, 24h, 7d, older")
		}
	}
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor, isUUID)
		if err != nil {
			return SearchPage{}, err
		}
		add("(s.last_active_at, s.id) < (?, ?)", at, id)
	}
	limit := c.limitArg(q.Limit)
	rows, err := s.pool.Query(ctx, `SELECT s.id, s.user_id, s.org_id, s.device_type, s.device_name, s.user_agent, s.ip,
			s.created_at, s.last_active_at, s.expires_at, COALESCE(u.email, ''), o.name
		FROM sessions s JOIN users u ON u.id = s.user_id JOIN orgs o ON o.id = s.org_id
		WHERE `+c.sql()+`
		ORDER BY s.last_active_at DESC, s.id DESC LIMIT `+limit, c.args...)
	if err != nil {
		return SearchPage{}, fmt.Errorf("%w: search sessions: %w", ErrUnavailable, err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SessionRow, error) {
		var (
			r  SessionRow
			ip *netip.Prefix
		)
		err := row.Scan(&r.ID, &r.UserID, &r.OrgID, &r.DeviceType, &r.DeviceName, &r.UserAgent, &ip,
			&r.CreatedAt, &r.LastActiveAt, &r.ExpiresAt, &r.Email, &r.OrgName)
		if ip != nil {
			a := ip.Addr().String()
			r.IP = &a
		}
		r.CreatedAt, r.LastActiveAt, r.ExpiresAt = r.CreatedAt.UTC(), r.LastActiveAt.UTC(), r.ExpiresAt.UTC()
		r.Current = r.ID == p.SessionID
		return r, err
	})
	if err != nil {
		return SearchPage{}, fmt.Errorf("%w: search sessions: %w", ErrUnavailable, err)
	}
	var page SearchPage
	page.Sessions, page.NextCursor = trimPage(list, q.Limit, func(x SessionRow) string { return encodeCursor(x.LastActiveAt, x.ID) })
	return page, nil
}
