package sessions

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// The directory: users and organisations as admins look them up
// (GET /v1/users, /v1/users/{id}, /v1/orgs, /v1/me), whatever their
// sessions, so a disabled user or one who never signed in is found too.

// userColumns is the select list of a User read from "users u", with its
// live sessions counted at now; scanUser reads it.
func userColumns(q *query, now time.Time) string {
	at := q.bind(now)
	return `u.id, u.org_id, COALESCE(u.email, ''), u.role, u.disabled_at IS NOT NULL, u.created_at, u.last_login_at,
		(SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > ` + at + ` AND NOT ` + ruleCovers("s.", at) + `)`
}

// scanUser reads a row of userColumns, then extra columns into extra.
func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	if err := row.Scan(append([]any{&u.ID, &u.OrgID, &u.Email, &u.Role, &u.Disabled, &u.CreatedAt, &u.LastLoginAt, &u.ActiveSessions}, extra...)...); err != nil {
		return User{}, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	if u.LastLoginAt != nil {
		t := u.LastLoginAt.UTC()
		u.LastLoginAt = &t
	}
	return u, nil
}

// inScope limits "users u" to an admin's scope: an org admin's own org and
// never a global admin; every user for a global admin (scope ""). Erased
// users are never in scope.
func inScope(q *query, scope string) {
	q.add("u.erased_at IS NULL")
	if scope != "" {
		q.add("u.org_id = ? AND u.role <> 'global_admin'", scope)
	}
}

// UserQuery filters the directory (GET /v1/users).
type UserQuery struct {
	OrgID    string
	Email    string // a part of the email, in any case
	Disabled *bool
	Limit    int
	Cursor   string
}

// UserPage is a page of the directory, by email.
type UserPage struct {
	Users      []User `json:"users"`
	NextCursor string `json:"next_cursor"`
}

// maxEmailSearch bounds the email search text.
const maxEmailSearch = 254

// ListUsers is the directory of the users in p's scope (admins only), by
// email, in keyset pages. ErrInvalid for a malformed filter or cursor,
// ErrNotFound for an org outside an org admin's scope.
func (s *Service) ListUsers(ctx context.Context, p Principal, f UserQuery) (UserPage, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return UserPage{}, err
	}
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return UserPage{}, err
	}
	switch {
	case f.OrgID != "" && !isUUID(f.OrgID):
		return UserPage{}, Invalid("org_id must be a UUID")
	case f.OrgID != "" && scope != "" && f.OrgID != scope:
		return UserPage{}, fmt.Errorf("%w: no org with this id in your scope", ErrNotFound)
	case len(f.Email) > maxEmailSearch || !storable(f.Email):
		return UserPage{}, Invalid("email must be text of at most %d bytes", maxEmailSearch)
	}
	var after string
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(b) == 0 {
			return UserPage{}, errCursor
		}
		after = string(b)
	}
	// filter adds the page's conditions but the search to q.
	filter := func(q *query) {
		inScope(q, scope)
		if f.OrgID != "" {
			q.add("u.org_id = ?", f.OrgID)
		}
		if f.Disabled != nil {
			q.add("(u.disabled_at IS NOT NULL) = ?", *f.Disabled)
		}
		if after != "" {
			q.add(emailOrder+" > ?", after)
		}
	}
	var ids []string
	// The search text is lowered by PostgreSQL, as the emails are: Go's
	// lowering need not agree past ASCII.
	switch e := strings.TrimSpace(f.Email); {
	case e == "":
		ids, err = s.userPage(ctx, filter, limit, "", nil)
	case utf8.RuneCountInString(e) < 3:
		ids, err = s.shortSearchPage(ctx, filter, e, limit)
	default: // the trigram index, or the walk in email order
		ids, err = s.userPage(ctx, filter, limit, `lower(u.email) LIKE lower(?) ESCAPE '\'`, "%"+likeEscaper.Replace(e)+"%")
	}
	if err != nil {
		return UserPage{}, fmt.Errorf("%w: list users: %w", ErrUnavailable, err)
	}
	// The page is chosen first, by id: the counts of the select list are
	// then worked out for its rows only, not for every match looked at.
	q := &query{}
	cols := userColumns(q, s.now())
	// The cursor is the order's own key, as PostgreSQL lowers it (which
	// need not be as Go would, past ASCII).
	sql := `SELECT ` + cols + `, ` + emailOrder + ` FROM users u WHERE u.id = ANY(` + q.bind(ids) + `::uuid[]) ORDER BY ` + emailOrder
	rows, err := s.pool.Query(ctx, sql, q.args...)
	if err != nil {
		return UserPage{}, fmt.Errorf("%w: list users: %w", ErrUnavailable, err)
	}
	type keyed struct {
		User
		key string
	}
	page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (keyed, error) {
		var k keyed
		var err error
		k.User, err = scanUser(row, &k.key)
		return k, err
	})
	if err != nil {
		return UserPage{}, fmt.Errorf("%w: list users: %w", ErrUnavailable, err)
	}
	page, next := trimPage(page, limit, func(k keyed) string { return base64.RawURLEncoding.EncodeToString([]byte(k.key)) })
	users := make([]User, len(page))
	for i, k := range page {
		users[i] = k.User
	}
	return UserPage{Users: users, NextCursor: next}, nil
}

// userPage returns the ids of the first limit+1 users, in email order, that
// filter and cond (with its argument; none when cond is "") select.
func (s *Service) userPage(ctx context.Context, filter func(*query), limit int, cond string, arg any) ([]string, error) {
	q := &query{}
	filter(q)
	if cond != "" {
		q.add(cond, arg)
	}
	sql := `SELECT u.id::text FROM users u WHERE ` + q.sql() + ` ORDER BY ` + emailOrder + ` LIMIT ` + q.limitArg(limit)
	rows, err := s.pool.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// shortProbe bounds the matches of a one- or two-character search read
// through the index of the emails' characters and pairs.
const shortProbe = 2000

// shortSearchPage is userPage for a search of one or two characters, too
// short for a trigram. It asks the index of the emails' characters and
// pairs for at most shortProbe matches: when there are no more, the page
// is sorted from them; when there are (a common pair), the walk in email
// order finds the page's within a few hundred rows. The planner alone
// cannot tell the two apart, and a walk for a pair that matches nothing
// reads the whole directory.
func (s *Service) shortSearchPage(ctx context.Context, filter func(*query), e string, limit int) ([]string, error) {
	q := &query{}
	filter(q)
	q.add("email_grams(lower(u.email)) @> ARRAY[lower(?)]::text[]", e)
	needle := q.bind(e)
	var (
		found int
		ids   []string
	)
	sql := `WITH m AS MATERIALIZED (SELECT u.id, ` + emailOrder + ` AS k FROM users u WHERE ` + q.sql() + ` LIMIT ` + q.bind(shortProbe+1) + `)
		SELECT (SELECT count(*) FROM m), ARRAY(SELECT id::text FROM m WHERE strpos(k, lower(` + needle + `)) > 0 ORDER BY k LIMIT ` + q.limitArg(limit) + `)`
	err := s.pool.QueryRow(ctx, sql, q.args...).Scan(&found, &ids)
	if err != nil || found <= shortProbe {
		return ids, err
	}
	return s.userPage(ctx, filter, limit, "strpos(lower(u.email), lower(?)) > 0", e)
}

// emailOrder is the directory's order: the lowercase email's bytes, as
// the users_email_order_idx and users_org_email_idx indexes keep it.
const emailOrder = `(lower(u.email) COLLATE "C")`

// likeEscaper escapes what LIKE would read as patterns.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// Me is the caller's own user (GET /v1/me).
func (s *Service) Me(ctx context.Context, p Principal) (User, error) {
	q := &query{}
	cols := userColumns(q, s.now())
	sql := `SELECT ` + cols + ` FROM users u WHERE u.erased_at IS NULL AND u.id = ` + q.bind(p.UserID)
	u, err := scanUser(s.pool.QueryRow(ctx, sql, q.args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("%w: your account no longer exists", ErrUnauthorized)
	}
	if err != nil {
		return User{}, fmt.Errorf("%w: me: %w", ErrUnavailable, err)
	}
	return u, nil
}

// OrgSummary is an organisation in the directory, with its counts.
type OrgSummary struct {
	Org
	Users          int `json:"users"`
	ActiveSessions int `json:"active_sessions"`
}

// maxOrgs bounds the org directory.
const maxOrgs = 1000

// OrgDirectory lists the organisations in p's scope by name, with how many
// users and live sessions each has: every org for a global admin, its own
// for an org admin (GET /v1/orgs).
func (s *Service) OrgDirectory(ctx context.Context, p Principal) ([]OrgSummary, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return nil, err
	}
	q := &query{}
	at := q.bind(s.now())
	if scope != "" {
		q.add("o.id = ?", scope)
	} else {
		q.add("true")
	}
	sql := `SELECT o.id, o.name, o.created_at,
			(SELECT count(*) FROM users u WHERE u.org_id = o.id AND u.erased_at IS NULL),
			(SELECT count(*) FROM sessions s WHERE s.org_id = o.id AND s.revoked_at IS NULL AND s.expires_at > ` + at + ` AND NOT ` + ruleCovers("s.", at) + `)
		FROM orgs o WHERE ` + q.sql() + ` ORDER BY lower(o.name) LIMIT ` + q.bind(maxOrgs)
	rows, err := s.pool.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, fmt.Errorf("%w: list orgs: %w", ErrUnavailable, err)
	}
	orgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OrgSummary, error) {
		var o OrgSummary
		err := row.Scan(&o.ID, &o.Name, &o.CreatedAt, &o.Users, &o.ActiveSessions)
		o.CreatedAt = o.CreatedAt.UTC()
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list orgs: %w", ErrUnavailable, err)
	}
	return orgs, nil
}

// ClearLoginFailures forgets the failed sign-ins of a user in p's scope,
// so that an account locked by them may sign in again at once (DELETE
// /v1/users/{id}/login-failures). It returns how many it forgot; the audit
// log records who cleared them. Failures counted against a client IP are
// left: they guard against guessing across accounts.
func (s *Service) ClearLoginFailures(ctx context.Context, p Principal, userID string, meta ClientMeta) (int, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return 0, err
	}
	if !isUUID(userID) {
		return 0, Invalid("user id must be a UUID")
	}
	if err := meta.check(); err != nil {
		return 0, err
	}
	var n int
	err = s.inTx(ctx, "ClearLoginFailures", func(tx pgx.Tx) error {
		orgID, err := lockUserInScope(ctx, tx, userID, scope)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM login_failures WHERE account = (SELECT lower(email) FROM users WHERE id = $1)`, userID)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		return writeAudit(ctx, tx, auditEntry{Action: ActionLockoutCleared, ActorID: p.UserID, OrgID: orgID, TargetUserID: userID, IP: meta.IP,
			Detail: meta.noted(map[string]any{"failures_cleared": n})})
	})
	if err != nil {
		return 0, domainOr(err, "clear login failures")
	}
	return n, nil
}
