package sessions

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
)

// LoginInput is a password login.
type LoginInput struct {
	Email      string
	Password   string
	DeviceType string // derived from the User-Agent when empty
	DeviceName string
	// DeviceID is the device's own id, when it has one: a new login of the
	// same user with the same id ends the device's previous session.
	DeviceID string
	Meta     ClientMeta
}

// newDeviceWindow is how far back a sign-in's device is looked for:
// sessions.v1.session.created says new_device when the user has not
// signed in from it for this long.
const newDeviceWindow = 90 * 24 * time.Hour

// errBadCredentials is the one answer to every failed login, whatever failed,
// so that nothing tells whether an email exists.
var errBadCredentials = fmt.Errorf("%w: invalid email or password", ErrUnauthorized)

// Login checks a password and opens a session. Errors: ErrInvalid (malformed
// input), ErrUnauthorized (bad credentials, disabled or erased user: one
// message for all), *rateLimitedError, ErrOverloaded (too many password
// hashes at once), ErrUnavailable.
func (s *Service) Login(ctx context.Context, in LoginInput) (TokenPair, error) {
	email := normEmail(in.Email)
	switch {
	case email == "" || len(email) > 254:
		return TokenPair{}, Invalid("email is required (at most 254 characters)")
	case !storable(email):
		return TokenPair{}, Invalid("email must be UTF-8 text without NUL characters")
	case in.Password == "" || len(in.Password) > 1024:
		return TokenPair{}, Invalid("password is required (at most 1024 bytes)")
	case in.DeviceType != "" && !validDeviceType(in.DeviceType):
		return TokenPair{}, Invalid("device.type must be one of %s", deviceTypeNames())
	}
	// Version 1's bound at login, unchanged (the contract's additions are
	// additive); a rename (PATCH /v1/me/sessions/{id}) takes 100 characters.
	if len(in.DeviceName) > 200 || !storable(in.DeviceName) {
		return TokenPair{}, Invalid("device.name must be UTF-8 text of at most 200 bytes without NUL characters")
	}
	if in.DeviceID != "" && (len(in.DeviceID) > maxDeviceID || !printable(in.DeviceID)) {
		return TokenPair{}, Invalid("device.id must be printable text of at most %d bytes", maxDeviceID)
	}
	deviceType := in.DeviceType
	if deviceType == "" {
		deviceType = deviceTypeFromUserAgent(in.Meta.UserAgent)
	}
	attempt, err := s.reserveLoginAttempt(ctx, email, in.Meta.IP)
	if err != nil {
		var rl *rateLimitedError
		if errors.As(err, &rl) {
			s.metrics.logins.WithLabelValues("rate_limited").Inc()
		}
		return TokenPair{}, err
	}

	var (
		userID, orgID, role string
		hash                *string
		disabled, erased    bool
	)
	err = s.pool.QueryRow(ctx, `SELECT id, org_id, role, password_hash, disabled_at IS NOT NULL, erased_at IS NOT NULL
		FROM users WHERE lower(email) = $1`, email).Scan(&userID, &orgID, &role, &hash, &disabled, &erased)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return TokenPair{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	found := err == nil
	check := s.dummyHash
	if found && hash != nil {
		check = *hash
	}
	ok, err := s.hasher.compare(ctx, in.Password, check)
	if err != nil {
		s.releaseLoginAttempt(ctx, attempt)
		return TokenPair{}, err
	}
	reason := ""
	switch {
	case !found:
		reason = "unknown_account"
	case hash == nil || !ok:
		reason = "bad_password"
	case erased:
		reason = "user_erased"
	case disabled:
		reason = "user_disabled"
	}
	if reason != "" {
		if err := writeAudit(ctx, s.pool, auditEntry{Action: ActionLoginFailed, TargetUserID: userID, OrgID: orgID, IP: in.Meta.IP, Reason: reason}); err != nil {
			return TokenPair{}, fmt.Errorf("%w: record failed login: %w", ErrUnavailable, err)
		}
		s.metrics.logins.WithLabelValues("failed").Inc()
		return TokenPair{}, errBadCredentials
	}

	now := s.now()
	sessionID := uuid.NewString()
	refresh := newRefreshToken()
	var (
		iat time.Time
		out outboxRows
	)
	err = s.inTx(ctx, "Login", func(tx pgx.Tx) error {
		// The user's row lock orders this login after any concurrent
		// user-level revocation, so the token's iat is after its
		// not_before; the iat is recorded with the session, so that a later
		// revocation's not_before is after it (revokeUser). NO KEY UPDATE,
		// the level of the last_login_at update below, so that two logins
		// of one user never deadlock upgrading a weaker lock; it also
		// counts the user's sessions against the org's cap one login at a
		// time.
		var (
			dead      bool
			notBefore *time.Time
			pol       Policy // its cap: the rest is enforced at refresh
		)
		if err := tx.QueryRow(ctx, `SELECT u.disabled_at IS NOT NULL OR u.erased_at IS NOT NULL, u.tokens_not_before,
				COALESCE(op.max_sessions_per_user, 0), COALESCE(op.on_limit, 'revoke_oldest')
			FROM users u LEFT JOIN org_policies op ON op.org_id = u.org_id WHERE u.id = $1 FOR NO KEY UPDATE OF u`, userID).
			Scan(&dead, &notBefore, &pol.MaxSessionsPerUser, &pol.OnLimit); err != nil {
			return err
		}
		if dead {
			return errBadCredentials
		}
		iat = issuedAt(now, notBefore)
		if in.DeviceID != "" { // the device's previous session ends
			r := revocation{reason: events.ReasonReplaced, actorID: userID, orgID: orgID, ip: in.Meta.IP, receipt: uuid.NewString()}
			if _, err := s.revokeSessions(ctx, tx, now, sessionFilter{userID: userID, deviceID: in.DeviceID}, r, &out); err != nil {
				return err
			}
		}
		ua := cleanHeaderText(in.Meta.UserAgent, 512)
		created := events.SessionCreated{EventID: uuid.NewString(), SessionID: sessionID, UserID: userID, OrgID: orgID, DeviceType: deviceType,
			Client: ClientLabel(ua), CreatedAt: now.UTC().Truncate(time.Microsecond)}
		if in.Meta.IP.IsValid() {
			ip := in.Meta.IP.String()
			created.IP = &ip
		}
		// A device is known by its id when it has one, else by its client.
		if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM sessions WHERE user_id = $1 AND created_at > $2
				AND CASE WHEN $3::text IS NOT NULL THEN device_id = $3 ELSE client = $4 END)`,
			userID, now.Add(-newDeviceWindow), nullable(in.DeviceID), created.Client).Scan(&created.NewDevice); err != nil {
			return err
		}
		if err := s.enforceCap(ctx, tx, pol, userID, orgID, now, in.Meta, &out); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO sessions (id, user_id, org_id, device_type, device_name, device_id, client, user_agent, ip, created_at, last_active_at, expires_at, access_issued_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12)`,
			sessionID, userID, orgID, deviceType, nullable(strings.TrimSpace(in.DeviceName)), nullable(in.DeviceID), created.Client, nullable(ua), nullableIP(in.Meta.IP), now, now.Add(s.cfg.RefreshTTL), iat)
		if err := out.queue(b, revocation{}, created); err != nil {
			return err
		}
		b.Queue(`INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			uuid.NewString(), sessionID, hashToken(refresh), now, now.Add(s.cfg.RefreshTTL))
		b.Queue(`DELETE FROM login_failures WHERE account = $1`, email)
		b.Queue(`UPDATE users SET last_login_at = $2 WHERE id = $1`, userID, now)
		b.Queue(`INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, detail)
			VALUES ('login', $1, $2, $1, $3, $4, jsonb_build_object('device_type', $5::text))`,
			userID, orgID, sessionID, nullableIP(in.Meta.IP), deviceType)
		return tx.SendBatch(ctx, b).Close()
	})
	if errors.Is(err, ErrSessionLimit) {
		// The password was right: the attempt is no failure, and does not
		// count towards a lockout.
		s.releaseLoginAttempt(ctx, attempt)
		if err := writeAudit(ctx, s.pool, auditEntry{Action: ActionLoginFailed, TargetUserID: userID, OrgID: orgID, IP: in.Meta.IP, Reason: "session_limit"}); err != nil {
			s.log.WarnContext(ctx, "a login refused by the session limit was not audited", "error", err.Error())
		}
		s.metrics.logins.WithLabelValues("session_limit").Inc()
		return TokenPair{}, err
	}
	if errors.Is(err, errBadCredentials) {
		s.metrics.logins.WithLabelValues("failed").Inc()
		return TokenPair{}, err
	}
	if err != nil {
		return TokenPair{}, domainOr(err, "login")
	}
	s.committed(ctx, out)
	s.metrics.logins.WithLabelValues("success").Inc()
	return s.issue(userID, orgID, sessionID, role, refresh, now, iat, now) // signed in now: the session's created_at
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n]
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// reserveLoginAttempt counts a login attempt as a failure before its
// password is checked, or refuses it with *rateLimitedError when the
// account or the client IP has reached its limit. Checking and recording
// are one step: advisory locks on the account and the IP serialise
// concurrent attempts, so 40 wrong passwords at once get 10 answers of 401
// and 30 of 429, never 40 of 401. It returns the reservation's row id; a
// successful login deletes the account's failures (this one included), and
// an attempt that was not decided (ErrOverloaded) is released.
func (s *Service) reserveLoginAttempt(ctx context.Context, email string, ip netip.Addr) (int64, error) {
	locks := []int64{lockKey("login:account:" + email)}
	if ip.IsValid() {
		locks = append(locks, lockKey("login:ip:"+ip.String()))
	}
	slices.Sort(locks) // one order everywhere: no deadlock between two attempts
	acct, byIP := s.cfg.LoginLimit, s.cfg.LoginIPLimit
	var (
		accountFull, ipFull *time.Time
		id                  *int64
	)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, k := range locks {
		b.Queue("SELECT pg_advisory_xact_lock($1)", k)
	}
	// The n-th newest failure inside a window means the limit is reached;
	// the wait is until it leaves the window.
	b.Queue(`WITH a AS (SELECT at FROM login_failures WHERE account = $1 AND at > clock_timestamp() - make_interval(secs => $3)
			ORDER BY at DESC OFFSET $4 LIMIT 1),
		i AS (SELECT at FROM login_failures WHERE $2::inet IS NOT NULL AND ip = $2 AND at > clock_timestamp() - make_interval(secs => $5)
			ORDER BY at DESC OFFSET $6 LIMIT 1),
		ins AS (INSERT INTO login_failures (account, ip) SELECT $1, $2
			WHERE NOT EXISTS (SELECT 1 FROM a) AND NOT EXISTS (SELECT 1 FROM i) RETURNING id)
		SELECT (SELECT at FROM a), (SELECT at FROM i), (SELECT id FROM ins)`,
		email, nullableIP(ip), acct.Window.Seconds(), acct.N-1, byIP.Window.Seconds(), byIP.N-1).QueryRow(func(row pgx.Row) error {
		return row.Scan(&accountFull, &ipFull, &id)
	})
	b.Queue("COMMIT")
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("%w: rate limit: %w", ErrUnavailable, err)
	}
	if id != nil {
		return *id, nil
	}
	var until time.Time
	if accountFull != nil {
		until = accountFull.Add(acct.Window)
	}
	if ipFull != nil && ipFull.Add(byIP.Window).After(until) {
		until = ipFull.Add(byIP.Window)
	}
	wait := time.Until(until)
	if wait < time.Second {
		wait = time.Second
	}
	return 0, &rateLimitedError{RetryAfter: wait}
}

// releaseLoginAttempt forgets a reservation whose attempt was not decided.
func (s *Service) releaseLoginAttempt(ctx context.Context, id int64) {
	if _, err := s.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM login_failures WHERE id = $1`, id); err != nil {
		s.log.WarnContext(ctx, "login attempt reservation not released; it counts as a failure", "error", err.Error())
	}
}

// lockKey is a 64-bit advisory lock key for name.
func lockKey(name string) int64 {
	sum := sha256.Sum256([]byte(name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}
