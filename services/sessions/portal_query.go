package sessions

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PortalUser is a user as the admin portal's user page shows it.
type PortalUser struct {
	User
	OrgName string
}

// portalOrgs returns the organisations an admin may filter by, by name: all
// of them for a global admin, its own for an org admin.
func (s *Service) portalOrgs(ctx context.Context, p Principal) ([]Org, error) {
	scope, err := adminScope(p)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT id, name, created_at FROM orgs WHERE $1::uuid IS NULL OR id = $1
		ORDER BY name, id LIMIT 1000`, nullable(scope))
	if err != nil {
		return nil, fmt.Errorf("%w: list orgs: %w", ErrUnavailable, err)
	}
	orgs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Org])
	if err != nil {
		return nil, fmt.Errorf("%w: list orgs: %w", ErrUnavailable, err)
	}
	return orgs, nil
}

// portalUser returns a user in an admin's scope, with the same rule as the
// API's user endpoints: an org admin's own org, never a global admin, never
// an erased user. ErrForbidden for a plain user, ErrInvalid for a malformed
// id, ErrNotFound out of scope.
func (s *Service) portalUser(ctx context.Context, p Principal, id string) (PortalUser, error) {
	scope, err := adminScope(p)
	if err != nil {
		return PortalUser{}, err
	}
	if !isUUID(id) {
		return PortalUser{}, invalid("user id must be a UUID")
	}
	var u PortalUser
	err = s.pool.QueryRow(ctx, `SELECT u.id, u.org_id, COALESCE(u.email, ''), u.role, u.disabled_at IS NOT NULL, u.created_at, o.name
		FROM users u JOIN orgs o ON o.id = u.org_id
		WHERE u.id = $1 AND u.erased_at IS NULL AND ($2::uuid IS NULL OR (u.org_id = $2 AND u.role <> 'global_admin'))`,
		id, nullable(scope)).Scan(&u.ID, &u.OrgID, &u.Email, &u.Role, &u.Disabled, &u.CreatedAt, &u.OrgName)
	if errors.Is(err, pgx.ErrNoRows) {
		return PortalUser{}, fmt.Errorf("%w: no user with this id in your scope", ErrNotFound)
	}
	if err != nil {
		return PortalUser{}, fmt.Errorf("%w: get user: %w", ErrUnavailable, err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// userEmails maps user ids to emails, to name the actors of audit entries
// and the signed-in user. Unknown or erased users are absent.
func (s *Service) userEmails(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text, email FROM users WHERE id = ANY($1::uuid[]) AND email IS NOT NULL`, ids)
	if err != nil {
		return nil, fmt.Errorf("%w: user emails: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, email string
		if err := rows.Scan(&id, &email); err != nil {
			return nil, fmt.Errorf("%w: user emails: %w", ErrUnavailable, err)
		}
		out[id] = email
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: user emails: %w", ErrUnavailable, err)
	}
	return out, nil
}
