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

// Device types.
var deviceTypes = map[string]bool{"ios": true, "android": true, "web": true, "desktop": true, "other": true}

// LoginInput is a password login.
type LoginInput struct {
	Email      string
	Password   string
	DeviceType string // derived from the User-Agent when empty
	DeviceName string
	Meta       ClientMeta
}

// errBadCredentials is the one answer to every failed login, whatever failed,
// so that nothing tells whether an email exists.
var errBadCredentials = fmt.Errorf("%w: invalid email or password", ErrUnauthorized)

// Login checks a password and opens a session. Errors: ErrInvalid (malformed
// input), ErrUnauthorized (bad credentials, disabled or erased user: one
// message for all), *RateLimitedError, ErrOverloaded (too many password
// hashes at once), ErrUnavailable.
func (s *Service) Login(ctx context.Context, in LoginInput) (TokenPair, error) {
	email := normEmail(in.Email)
	switch {
	case email == "" || len(email) > 254:
		return TokenPair{}, invalid("email is required (at most 254 characters)")
	case !storable(email):
		return TokenPair{}, invalid("email must be UTF-8 text without NUL characters")
	case in.Password == "" || len(in.Password) > 1024:
		return TokenPair{}, invalid("password is required (at most 1024 bytes)")
	case in.DeviceType != "" && !deviceTypes[in.DeviceType]:
		return TokenPair{}, invalid("device.type must be one of ios, android, web, desktop, other")
	case len(in.DeviceName) > 200:
		return TokenPair{}, invalid("device.name must be at most 200 characters")
	case !storable(in.DeviceName):
		return TokenPair{}, invalid("device.name must be UTF-8 text without NUL characters")
	}
	deviceType := in.DeviceType
	if deviceType == "" {
		deviceType = DeviceTypeFromUserAgent(in.Meta.UserAgent)
	}
	attempt, err := s.reserveLoginAttempt(ctx, email, in.Meta.IP)
	if err != nil {
		var rl *RateLimitedError
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
	var iat time.Time
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// FOR SHARE orders this login after any concurrent user-level
		// revocation, so the token's iat is after its not_before; the iat
		// is recorded with the session, so that a later revocation's
		// not_before is after it (revokeUser).
		var (
			dead      bool
			notBefore *time.Time
		)
		if err := tx.QueryRow(ctx, `SELECT disabled_at IS NOT NULL OR erased_at IS NOT NULL, tokens_not_before
			FROM users WHERE id = $1 FOR SHARE`, userID).Scan(&dead, &notBefore); err != nil {
			return err
		}
		if dead {
			return errBadCredentials
		}
		iat = issuedAt(now, notBefore)
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO sessions (id, user_id, org_id, device_type, device_name, user_agent, ip, created_at, last_active_at, expires_at, access_issued_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)`,
			sessionID, userID, orgID, deviceType, nullable(in.DeviceName), nullable(cleanHeaderText(in.Meta.UserAgent, 512)), nullableIP(in.Meta.IP), now, now.Add(s.cfg.RefreshTTL), iat)
		b.Queue(`INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			uuid.NewString(), sessionID, hashToken(refresh), now, now.Add(s.cfg.RefreshTTL))
		b.Queue(`DELETE FROM login_failures WHERE account = $1`, email)
		b.Queue(`INSERT INTO audit_log (action, actor_id, org_id, target_user_id, session_id, ip, detail)
			VALUES ('login', $1, $2, $1, $3, $4, jsonb_build_object('device_type', $5::text))`,
			userID, orgID, sessionID, nullableIP(in.Meta.IP), deviceType)
		return tx.SendBatch(ctx, b).Close()
	})
	if errors.Is(err, errBadCredentials) {
		s.metrics.logins.WithLabelValues("failed").Inc()
		return TokenPair{}, err
	}
	if err != nil {
		return TokenPair{}, domainOr(err, "login")
	}
	s.metrics.logins.WithLabelValues("success").Inc()
	return s.issue(userID, orgID, sessionID, role, refresh, now, iat)
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
// password is checked, or refuses it with *RateLimitedError when the
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
	return 0, &RateLimitedError{RetryAfter: wait}
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

// DeviceTypeFromUserAgent guesses the device type of a User-Agent.
func DeviceTypeFromUserAgent(ua string) string {
	l := strings.ToLower(ua)
	switch {
	case l == "":
		return "other"
	case strings.Contains(l, "electron"):
		return "desktop"
	case strings.Contains(l, "iphone") || strings.Contains(l, "ipad") || strings.Contains(l, "ipod") ||
		strings.Contains(l, "ios") || strings.Contains(l, "cfnetwork"):
		return "ios"
	case strings.Contains(l, "android") || strings.Contains(l, "okhttp"):
		return "android"
	case strings.HasPrefix(l, "mozilla/") || strings.HasPrefix(l, "opera/"):
		return "web"
	}
	return "other"
}

// Refresh rotates a refresh token. Within ReuseGrace after a token's
// rotation, presenting it again answers with a new access token and the
// session's current refresh token (the one the first refresh returned, or
// its live successor): no second token family is created and the session
// lives. Later, it is reuse: the whole session is revoked and the answer is
// ErrUnauthorized.
func (s *Service) Refresh(ctx context.Context, raw string, meta ClientMeta) (TokenPair, error) {
	if raw == "" {
		return TokenPair{}, invalid("refresh_token is required")
	}
	invalidToken := fmt.Errorf("%w: refresh token is invalid, expired or revoked", ErrUnauthorized)
	if !plausibleRefreshToken(raw) {
		s.metrics.refreshes.WithLabelValues("invalid").Inc()
		return TokenPair{}, invalidToken
	}
	now := s.now()
	var (
		out       refreshResult
		revoked   outboxRows // a reused token's session revoked
		notBefore *time.Time
		iat       time.Time // of the access token issued, recorded with the session
		userID    string
		orgID     string
		role      string
		sessionID string
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var rtID string
		err := tx.QueryRow(ctx, `SELECT rt.id, rt.session_id, s.user_id FROM refresh_tokens rt
			JOIN sessions s ON s.id = rt.session_id WHERE rt.token_hash = $1`, hashToken(raw)).Scan(&rtID, &sessionID, &userID)
		if errors.Is(err, pgx.ErrNoRows) {
			out = refreshInvalid
			return nil
		}
		if err != nil {
			return err
		}
		// Lock order everywhere: user, then session.
		var userDead bool
		if err := tx.QueryRow(ctx, `SELECT role, disabled_at IS NOT NULL OR erased_at IS NOT NULL, tokens_not_before
			FROM users WHERE id = $1 FOR SHARE`, userID).Scan(&role, &userDead, &notBefore); err != nil {
			return err
		}
		var sessionDead bool
		if err := tx.QueryRow(ctx, `SELECT org_id, revoked_at IS NOT NULL OR expires_at <= $2 FROM sessions WHERE id = $1 FOR NO KEY UPDATE`,
			sessionID, now).Scan(&orgID, &sessionDead); err != nil {
			return err
		}
		var (
			expires    time.Time
			rotatedAt  *time.Time
			replacedBy *string
		)
		if err := tx.QueryRow(ctx, `SELECT expires_at, rotated_at, replaced_by FROM refresh_tokens WHERE id = $1`, rtID).
			Scan(&expires, &rotatedAt, &replacedBy); err != nil {
			if errors.Is(err, pgx.ErrNoRows) { // deleted by a revocation that committed meanwhile
				out = refreshInvalid
				return nil
			}
			return err
		}
		switch {
		case userDead || sessionDead || !expires.After(now):
			out = refreshInvalid
			return nil
		case rotatedAt == nil:
			out = refreshRotated
			out.token = s.successor(raw)
			iat = issuedAt(now, notBefore)
			b := &pgx.Batch{}
			childID := uuid.NewString()
			b.Queue(`INSERT INTO refresh_tokens (id, session_id, token_hash, parent_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
				childID, sessionID, hashToken(out.token), rtID, now, now.Add(s.cfg.RefreshTTL))
			b.Queue(`UPDATE refresh_tokens SET rotated_at = $2, replaced_by = $3 WHERE id = $1`, rtID, now, childID)
			b.Queue(`UPDATE sessions SET last_active_at = GREATEST(last_active_at, $2), expires_at = $3, ip = COALESCE($4, ip),
				access_issued_at = GREATEST(access_issued_at, $5) WHERE id = $1`,
				sessionID, now, now.Add(s.cfg.RefreshTTL), nullableIP(meta.IP), iat)
			return tx.SendBatch(ctx, b).Close()
		case now.Sub(*rotatedAt) <= s.cfg.ReuseGrace:
			head, err := s.chainHead(ctx, tx, raw, replacedBy)
			if err != nil {
				return err
			}
			if head == "" {
				out = refreshInvalid
				return nil
			}
			out = refreshGrace
			out.token = head
			iat = issuedAt(now, notBefore)
			_, err = tx.Exec(ctx, `UPDATE sessions SET access_issued_at = GREATEST(access_issued_at, $2) WHERE id = $1`, sessionID, iat)
			return err
		default:
			out = refreshReuse
			if _, err := s.revokeSessions(ctx, tx, now, sessionFilter{sessionID: sessionID}, revocation{reason: events.ReasonRefreshReuse, ip: meta.IP}, &revoked); err != nil {
				return err
			}
			return writeAudit(ctx, tx, auditEntry{Action: ActionRefreshReuse, TargetUserID: userID, OrgID: orgID, SessionID: sessionID, IP: meta.IP, Reason: string(events.ReasonRefreshReuse)})
		}
	})
	if err != nil {
		s.metrics.refreshes.WithLabelValues("error").Inc()
		return TokenPair{}, fmt.Errorf("%w: refresh: %w", ErrUnavailable, err)
	}
	s.metrics.refreshes.WithLabelValues(out.label).Inc()
	s.committed(ctx, revoked)
	switch out.label {
	case refreshInvalid.label:
		return TokenPair{}, invalidToken
	case refreshReuse.label:
		s.metrics.reuse.Inc()
		s.log.WarnContext(ctx, "refresh token reuse detected; session revoked", "session_id", sessionID, "user_id", userID)
		return TokenPair{}, fmt.Errorf("%w: refresh token reuse detected; the session has been revoked", ErrUnauthorized)
	}
	return s.issue(userID, orgID, sessionID, role, out.token, now, iat)
}

type refreshResult struct {
	label string
	token string
}

var (
	refreshInvalid = refreshResult{label: "invalid"}
	refreshRotated = refreshResult{label: "rotated"}
	refreshGrace   = refreshResult{label: "grace"}
	refreshReuse   = refreshResult{label: "reuse"}
)

// chainHead follows the rotation chain from tok to the live refresh token
// and returns it in plain text ("" when the chain is broken).
func (s *Service) chainHead(ctx context.Context, tx pgx.Tx, tok string, next *string) (string, error) {
	for depth := 0; next != nil && depth < 64; depth++ {
		tok = s.successor(tok)
		var rotated *time.Time
		var id string = *next
		next = nil
		err := tx.QueryRow(ctx, `SELECT rotated_at, replaced_by FROM refresh_tokens WHERE id = $1 AND token_hash = $2`, id, hashToken(tok)).Scan(&rotated, &next)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if rotated == nil {
			return tok, nil
		}
	}
	return "", nil
}

// Logout revokes the caller's own session.
func (s *Service) Logout(ctx context.Context, p Principal, meta ClientMeta) error {
	_, err := s.revokeInTx(ctx, sessionFilter{sessionID: p.SessionID}, revocation{reason: events.ReasonLogout, actorID: p.UserID, ip: meta.IP})
	return err
}
