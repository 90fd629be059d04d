package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session is a session as the API shows it. Absent metadata is null.
type Session struct {
	ID         string  `json:"id"`
	UserID     string  `json:"user_id"`
	OrgID      string  `json:"org_id"`
	DeviceType string  `json:"device_type"`
	DeviceName *string `json:"device_name"`
	UserAgent  *string `json:"user_agent"`
	// Client is the User-Agent as a person names it ("Safari on iOS"),
	// computed by the server (ClientLabel).
	Client       string    `json:"client"`
	IP           *string   `json:"ip"`
	CreatedAt    time.Time `json:"created_at"`
	LastActiveAt time.Time `json:"last_active_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	Current      bool      `json:"current"`
}

// The columns of a Session, bare and with the listing's table alias.
var (
	sessionColumns  = sessionColumnsOf("")
	sessionColumnsS = sessionColumnsOf("s.")
)

// sessionColumnsOf are the columns of a Session, each prefixed.
func sessionColumnsOf(prefix string) string {
	cols := []string{"id", "user_id", "org_id", "device_type", "device_name", "user_agent", "ip", "created_at", "last_active_at", "expires_at"}
	for i := range cols {
		cols[i] = prefix + cols[i]
	}
	return strings.Join(cols, ", ")
}

// scanSessionInto reads sessionColumnsOf into s, then the extra columns
// that follow them into extra.
func scanSessionInto(row pgx.CollectableRow, s *Session, extra ...any) error {
	var ip *netip.Prefix
	dst := [12]any{&s.ID, &s.UserID, &s.OrgID, &s.DeviceType, &s.DeviceName, &s.UserAgent, &ip, &s.CreatedAt, &s.LastActiveAt, &s.ExpiresAt}
	n := 10 + copy(dst[10:], extra)
	err := row.Scan(dst[:n]...)
	if ip != nil {
		a := ip.Addr().String()
		s.IP = &a
	}
	s.CreatedAt, s.LastActiveAt, s.ExpiresAt = s.CreatedAt.UTC(), s.LastActiveAt.UTC(), s.ExpiresAt.UTC()
	s.Client = ClientLabel(orEmpty(s.UserAgent))
	return err
}

func scanSession(row pgx.CollectableRow) (Session, error) {
	var s Session
	err := scanSessionInto(row, &s)
	return s, err
}

// ListOwn returns the caller's live sessions, newest activity first, the
// current one marked.
func (s *Service) ListOwn(ctx context.Context, p Principal) ([]Session, error) {
	c := sessionFilter{userID: p.UserID}.where("", s.now())
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

// SessionQuery selects the live sessions of an admin listing; empty fields
// do not filter.
type SessionQuery struct {
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
	// Names fills in each row's user email and org name; without it (the
	// API's listing) they stay "" and the query reads sessions alone.
	Names bool
	// Sort is "" or SortLastActive (newest activity first) or
	// SortSignedIn (newest sign-in first).
	Sort string
	// Total counts every matching session (up to MaxTotal) beside the page.
	Total bool
}

// Orders of a listing.
const (
	SortLastActive = "last_active"
	SortSignedIn   = "signed_in"
)

// MaxTotal bounds a listing's count: past it, the count says "more".
const MaxTotal = 10000

// activityFilters are the values of SessionQuery.Active, with the window
// each names; "older" is the complement of the longest window.
var activityFilters = []struct {
	Value  string
	Window time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"older", 7 * 24 * time.Hour}}

// SessionRow is a session with its user's email and its org's name.
type SessionRow struct {
	Session
	Email   string
	OrgName string
}

// Page is one page of a listing; NextCursor is "" on the last page.
// Total (with SessionQuery.Total) counts the matching sessions, MaxTotal+1
// meaning more than MaxTotal.
type Page struct {
	Sessions   []SessionRow
	NextCursor string
	Total      int
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
	defaultListLimit = 50
	MaxListLimit     = 500
)

// ListSessions lists live sessions in an admin's scope, newest activity
// first, keyset-paginated, with q's filters. Errors: ErrForbidden for a
// plain user or an org admin naming another org, ErrInvalid for a bad
// filter, limit or cursor, ErrUnavailable.
func (s *Service) ListSessions(ctx context.Context, p Principal, q SessionQuery) (Page, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return Page{}, err
	}
	q.Email = strings.TrimSpace(q.Email)
	switch {
	case q.OrgID != "" && !isUUID(q.OrgID):
		return Page{}, Invalid("org_id must be a UUID")
	case q.UserID != "" && !isUUID(q.UserID):
		return Page{}, Invalid("user_id must be a UUID")
	case len(q.Email) > 254:
		return Page{}, Invalid("the email search is at most 254 characters")
	case !storable(q.Email):
		return Page{}, Invalid("the email search must be UTF-8 text without NUL characters")
	case q.DeviceType != "" && !validDeviceType(q.DeviceType):
		return Page{}, Invalid("device type must be one of %s", deviceTypeNames())
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
	c := sessionFilter{orgID: q.OrgID, userID: q.UserID}.where("s.", now)
	c.add("s.last_active_at > ?", s.oldestLive(now))
	if q.Email != "" {
		c.add("strpos(lower(u.email), lower(?)) > 0", q.Email) // lowered as the emails are
	}
	if q.DeviceType != "" {
		c.add("s.device_type = ?", q.DeviceType)
	}
	if q.Active != "" {
		known := false
		for _, f := range activityFilters {
			if f.Value == q.Active {
				known = true
				if f.Value == "older" {
					c.add("s.last_active_at <= ?", now.Add(-f.Window))
				} else {
					c.add("s.last_active_at > ?", now.Add(-f.Window))
				}
			}
		}
		if !known {
			return Page{}, Invalid("last activity must be one of 1h, 24h, 7d, older")
		}
	}
	order := "s.last_active_at"
	switch q.Sort {
	case "", SortLastActive:
	case SortSignedIn:
		order = "s.created_at"
	default:
		return Page{}, Invalid("sort must be last_active or signed_in")
	}
	// The count, before the cursor narrows the filter to a page's rest.
	countSQL, countArgs := c.sql(), append([]any(nil), c.args...)
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor, isUUID)
		if err != nil {
			return Page{}, err
		}
		c.add("("+order+", s.id) < (?, ?)", at, id)
	}
	limit := c.limitArg(q.Limit)
	// The names cost two joins (more than half of the listing's time), so only a
	// caller that shows them, or filters by email, pays for them.
	cols, from := sessionColumnsS, `sessions s`
	names := q.Names || q.Email != ""
	if names {
		cols += `, COALESCE(u.email, ''), o.name`
		from += ` JOIN users u ON u.id = s.user_id JOIN orgs o ON o.id = s.org_id`
	}
	rows, err := s.pool.Query(ctx, `SELECT `+cols+` FROM `+from+`
		WHERE `+c.sql()+`
		ORDER BY `+order+` DESC, s.id DESC LIMIT `+limit, c.args...)
	if err != nil {
		return Page{}, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SessionRow, error) {
		var r SessionRow
		var err error
		if names {
			err = scanSessionInto(row, &r.Session, &r.Email, &r.OrgName)
		} else {
			err = scanSessionInto(row, &r.Session)
		}
		r.Current = r.ID == p.SessionID
		return r, err
	})
	if err != nil {
		return Page{}, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	var page Page
	page.Sessions, page.NextCursor = trimPage(list, q.Limit, func(x SessionRow) string {
		if order == "s.created_at" {
			return encodeCursor(x.CreatedAt, x.ID)
		}
		return encodeCursor(x.LastActiveAt, x.ID)
	})
	if q.Total {
		countFrom := `sessions s`
		if q.Email != "" {
			countFrom += ` JOIN users u ON u.id = s.user_id`
		}
		countArgs = append(countArgs, MaxTotal+1)
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+countFrom+` WHERE `+countSQL+` LIMIT $`+strconv.Itoa(len(countArgs))+`) x`, countArgs...).Scan(&page.Total); err != nil {
			return Page{}, fmt.Errorf("%w: count sessions: %w", ErrUnavailable, err)
		}
	}
	return page, nil
}

// GetSession returns one live session in an admin's scope; ErrNotFound
// otherwise.
func (s *Service) GetSession(ctx context.Context, p Principal, id string) (Session, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return Session{}, err
	}
	if !isUUID(id) {
		return Session{}, Invalid("session id must be a UUID")
	}
	c := sessionFilter{sessionID: id, orgID: scope}.where("", s.now())
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
