package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/tokens"
)

// Org is an organisation.
type Org struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// User is a user as the API shows it.
type User struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	// LastLoginAt is the user's last sign-in (null: never).
	LastLoginAt *time.Time `json:"last_login_at"`
	// ActiveSessions counts the user's live sessions.
	ActiveSessions int `json:"active_sessions"`
}

// CreateOrg creates an organisation; global admins only.
func (s *Service) CreateOrg(ctx context.Context, p Principal, name string, meta ClientMeta) (Org, error) {
	if p.Role != tokens.RoleGlobalAdmin {
		return Org{}, fmt.Errorf("%w: only a global_admin creates organisations", ErrForbidden)
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Org{}, Invalid("name is required (at most 200 characters)")
	}
	if !storable(name) {
		return Org{}, Invalid("name must be UTF-8 text without NUL characters")
	}
	o := Org{ID: uuid.NewString(), Name: name, CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	err := s.inTx(ctx, "CreateOrg", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)`, o.ID, o.Name, o.CreatedAt); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: an organisation with this name exists (names are compared without case)", ErrConflict)
			}
			return err
		}
		return writeAudit(ctx, tx, auditEntry{Action: ActionOrgCreated, ActorID: p.UserID, OrgID: o.ID, IP: meta.IP})
	})
	if err != nil {
		return Org{}, domainOr(err, "create org")
	}
	return o, nil
}

// NewUser is the input of CreateUser.
type NewUser struct {
	OrgID    string
	Email    string
	Password string
	Role     string
}

func validateNewUser(u NewUser) error {
	switch {
	case !isUUID(u.OrgID):
		return Invalid("org_id must be a UUID")
	case u.Role != tokens.RoleUser && u.Role != tokens.RoleOrgAdmin && u.Role != tokens.RoleGlobalAdmin:
		return Invalid("role must be one of user, org_admin, global_admin")
	case len(u.Password) < 8 || len(u.Password) > 1024:
		return Invalid("password must be 8 to 1024 bytes long")
	}
	a, err := mail.ParseAddress(u.Email)
	if err != nil || a.Address != strings.TrimSpace(u.Email) || len(u.Email) > 254 || !storable(u.Email) {
		return Invalid("email must be a plain email address")
	}
	return nil
}

// CreateUser creates a user. A global admin may create any role in any org;
// an org admin only user or org_admin in its own org (ErrForbidden
// otherwise). ErrConflict when the email exists, ErrInvalid when the org
// does not.
func (s *Service) CreateUser(ctx context.Context, p Principal, in NewUser, meta ClientMeta) (User, error) {
	if _, err := AdminScope(p); err != nil {
		return User{}, err
	}
	if err := validateNewUser(in); err != nil {
		return User{}, err
	}
	if p.Role == tokens.RoleOrgAdmin {
		if in.OrgID != p.OrgID {
			return User{}, fmt.Errorf("%w: an org_admin creates users in its own org only", ErrForbidden)
		}
		if in.Role == tokens.RoleGlobalAdmin {
			return User{}, fmt.Errorf("%w: an org_admin cannot create a global_admin", ErrForbidden)
		}
	}
	hash, err := s.hasher.create(ctx, in.Password)
	if err != nil {
		return User{}, err
	}
	u := User{ID: uuid.NewString(), OrgID: in.OrgID, Email: strings.TrimSpace(in.Email), Role: in.Role, CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	err = s.inTx(ctx, "CreateUser", func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = $1)`, in.OrgID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return Invalid("org_id: no such organisation")
		}
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, org_id, email, password_hash, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)`,
			u.ID, u.OrgID, u.Email, hash, u.Role, u.CreatedAt); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: a user with this email exists", ErrConflict)
			}
			return err
		}
		return writeAudit(ctx, tx, auditEntry{Action: ActionUserCreated, ActorID: p.UserID, OrgID: u.OrgID, TargetUserID: u.ID, IP: meta.IP, Detail: map[string]any{"role": u.Role}})
	})
	if err != nil {
		return User{}, domainOr(err, "create user")
	}
	return u, nil
}

// SetUserDisabled disables or re-enables a user in scope. Disabling revokes
// every session and access token of the user in the same transaction, and
// the call returns the receipt's id ("" when enabling); disabling a user who
// is disabled already revokes nothing, and its receipt is enforced at once.
// ErrNotFound out of scope; ErrInvalid for an admin disabling itself.
func (s *Service) SetUserDisabled(ctx context.Context, p Principal, userID string, disabled bool, meta ClientMeta) (User, string, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return User{}, "", err
	}
	if !isUUID(userID) {
		return User{}, "", Invalid("user id must be a UUID")
	}
	if disabled && userID == p.UserID {
		return User{}, "", Invalid("you cannot disable your own account")
	}
	if err := meta.check(); err != nil {
		return User{}, "", err
	}
	var (
		u   User
		out outboxRows
		r   revocation
	)
	if disabled {
		r = newRevocation(ctx, events.ReasonUserDisabled, p.UserID, scope, meta.IP).withNote(meta)
	}
	err = s.inTx(ctx, "SetUserDisabled", func(tx pgx.Tx) error {
		orgID, err := lockUserInScope(ctx, tx, userID, scope)
		if err != nil {
			return err
		}
		var was bool
		if err := tx.QueryRow(ctx, `SELECT disabled_at IS NOT NULL FROM users WHERE id = $1`, userID).Scan(&was); err != nil {
			return err
		}
		now := s.now()
		if disabled && !was {
			if _, err := tx.Exec(ctx, `UPDATE users SET disabled_at = $2, updated_at = $2 WHERE id = $1`, userID, now); err != nil {
				return err
			}
			n, err := s.revokeUser(ctx, tx, now, userID, orgID, r, &out)
			if err != nil {
				return err
			}
			if err := writeAudit(ctx, tx, auditEntry{Action: ActionUserDisabled, ActorID: p.UserID, OrgID: orgID, TargetUserID: userID, IP: meta.IP,
				Reason: string(events.ReasonUserDisabled), Detail: meta.noted(map[string]any{"sessions_revoked": n})}); err != nil {
				return err
			}
		}
		if disabled && was { // nothing to revoke: an empty receipt
			b := &pgx.Batch{}
			queueReceipt(b, r, orgID, 0)
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		if !disabled && was {
			if _, err := tx.Exec(ctx, `UPDATE users SET disabled_at = NULL, updated_at = $2 WHERE id = $1`, userID, now); err != nil {
				return err
			}
			if err := writeAudit(ctx, tx, auditEntry{Action: ActionUserEnabled, ActorID: p.UserID, OrgID: orgID, TargetUserID: userID, IP: meta.IP, Detail: meta.noted(map[string]any{})}); err != nil {
				return err
			}
		}
		q := &query{}
		cols := userColumns(q, s.now())
		sql := `SELECT ` + cols + ` FROM users u WHERE u.id = ` + q.bind(userID)
		if u, err = scanUser(tx.QueryRow(ctx, sql, q.args...)); err != nil || disabled == was {
			return err
		}
		change := events.AccountEnabled
		if disabled {
			change = events.AccountDisabled
		}
		b := &pgx.Batch{}
		if err := out.queueSignal(b, orgID, events.AccountSignal{EventID: uuid.NewString(), Org: orgID, Sub: userID, Email: u.Email,
			Change: change, ActorID: p.UserID, At: now.UTC()}); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return User{}, "", domainOr(err, "update user")
	}
	s.committed(ctx, out)
	return u, r.receipt, nil
}

// BootstrapAdmin creates a global admin with email and password, in an
// organisation named "Platform", unless a global admin exists. It reports
// whether it created one.
func (s *Service) BootstrapAdmin(ctx context.Context, email, password string) (bool, error) {
	in := NewUser{OrgID: uuid.NewString(), Email: email, Password: password, Role: tokens.RoleGlobalAdmin}
	if err := validateNewUser(in); err != nil {
		return false, fmt.Errorf("BOOTSTRAP_ADMIN_EMAIL/PASSWORD: %w", err)
	}
	hash, err := s.hasher.create(ctx, password)
	if err != nil {
		return false, err
	}
	created := false
	err = s.inTx(ctx, "BootstrapAdmin", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('bootstrap_admin'))"); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE role = 'global_admin')`).Scan(&exists); err != nil || exists {
			return err
		}
		var orgID string
		err := tx.QueryRow(ctx, `SELECT id FROM orgs WHERE name = 'Platform' ORDER BY created_at LIMIT 1`).Scan(&orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			orgID = in.OrgID
			_, err = tx.Exec(ctx, `INSERT INTO orgs (id, name) VALUES ($1, 'Platform')`, orgID)
		}
		if err != nil {
			return err
		}
		id := uuid.NewString()
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, org_id, email, password_hash, role) VALUES ($1, $2, $3, $4, 'global_admin')`, id, orgID, email, hash); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: BOOTSTRAP_ADMIN_EMAIL belongs to an existing user who is not a global admin", ErrConflict)
			}
			return err
		}
		created = true
		return writeAudit(ctx, tx, auditEntry{Action: ActionUserCreated, OrgID: orgID, TargetUserID: id, Detail: map[string]any{"role": tokens.RoleGlobalAdmin, "bootstrap": true}})
	})
	return created, err
}

// UserWithOrg is a user with its organisation's name.
type UserWithOrg struct {
	User
	OrgName string
}

// OrgsInScope returns the organisations in an admin's scope, by name: all
// of them for a global admin, its own for an org admin. ErrForbidden for a
// plain user.
func (s *Service) OrgsInScope(ctx context.Context, p Principal) ([]Org, error) {
	scope, err := AdminScope(p)
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

// UserInScope returns a user in an admin's scope, with the same rule as the
// user endpoints: an org admin's own org, never a global admin, never
// an erased user. ErrForbidden for a plain user, ErrInvalid for a malformed
// id, ErrNotFound out of scope.
func (s *Service) UserInScope(ctx context.Context, p Principal, id string) (UserWithOrg, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return UserWithOrg{}, err
	}
	if !isUUID(id) {
		return UserWithOrg{}, Invalid("user id must be a UUID")
	}
	var u UserWithOrg
	q := &query{}
	cols := userColumns(q, s.now())
	q.add("u.id = ?", id)
	inScope(q, scope)
	u.User, err = scanUser(s.pool.QueryRow(ctx, `SELECT `+cols+`, o.name FROM users u JOIN orgs o ON o.id = u.org_id WHERE `+q.sql(), q.args...), &u.OrgName)
	if errors.Is(err, pgx.ErrNoRows) {
		return UserWithOrg{}, fmt.Errorf("%w: no user with this id in your scope", ErrNotFound)
	}
	if err != nil {
		return UserWithOrg{}, fmt.Errorf("%w: get user: %w", ErrUnavailable, err)
	}
	return u, nil
}

// UserEmails maps user ids to emails, to name the actors of audit entries
// and the signed-in user. Unknown or erased users are absent.
func (s *Service) UserEmails(ctx context.Context, ids []string) (map[string]string, error) {
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
