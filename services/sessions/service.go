// Package sessions is the session domain: login, refresh-token rotation,
// session listing and revocation, organisations and users, all on
// PostgreSQL. Every revocation is one transaction that also writes the
// revocation rows, the outbox rows carrying the contract's events, and the
// audit rows.
package sessions

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/telemetry"
	"github.com/sessionguard/revoke/internal/tokens"
)

// Service is the session service.
type Service struct {
	pool      *pgxpool.Pool
	keys      *KeyStore
	cfg       Config
	signer    tokens.Signer
	verifier  *tokens.Verifier
	verified  *verifiedTokens
	rotKey    []byte
	dummyHash string
	hasher    *hasher
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
	relay     OutboxRelay   // see notify.go
	ruleWake  chan struct{} // a rule committed: the marker starts at once
	tracer    trace.Tracer
	traced    bool
}

// NewService wires the service. kek is the key-encryption key, from which the
// refresh-token rotation key is derived. relay publishes the outbox rows the
// service commits (outbox.Relay.Committed); nil for a process without a
// relay of its own, which wakes the relays of others with NOTIFY instead.
func NewService(pool *pgxpool.Pool, keys *KeyStore, kek []byte, cfg Config, metrics *Metrics, relay OutboxRelay, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A hash to check unknown emails against, so that they cost the same time
	// as known ones.
	dummy, err := argon2id.CreateHash(rand.Text(), &cfg.Password)
	if err != nil {
		return nil, err
	}
	if relay == nil {
		relay = notifier{pool: pool, log: log}
	}
	slots, queue, wait := cfg.hashBounds()
	return &Service{
		pool:      pool,
		keys:      keys,
		cfg:       cfg,
		signer:    tokens.Signer{Issuer: cfg.Issuer, Audience: cfg.Audience},
		verifier:  tokens.NewVerifier(cfg.Issuer, cfg.Audience, cfg.Leeway),
		verified:  newVerifiedTokens(verifiedTokensMax),
		rotKey:    DeriveKey(kek, "refresh-rotation"),
		dummyHash: dummy,
		hasher:    newHasher(cfg.Password, slots, queue, wait, metrics),
		metrics:   metrics,
		log:       log,
		now:       cfg.now(),
		relay:     relay,
		ruleWake:  make(chan struct{}, 1),
		tracer:    telemetry.Tracer(cfg.Tracer),
		traced:    telemetry.Records(cfg.Tracer),
	}, nil
}

// inTx runs f in a transaction (pgx.BeginFunc), traced as a span named
// "tx <name>" from BEGIN to COMMIT: where a request's time in PostgreSQL
// goes, the commit's WAL flush included.
func (s *Service) inTx(ctx context.Context, name string, f func(pgx.Tx) error) error {
	ctx, end := s.traceTx(ctx, name)
	err := pgx.BeginFunc(ctx, s.pool, f)
	end(err)
	return err
}

// traceTx starts the span of a transaction (nothing when untraced); end
// ends it with the transaction's outcome.
func (s *Service) traceTx(ctx context.Context, name string) (_ context.Context, end func(error)) {
	if !s.traced {
		return ctx, func(error) {}
	}
	ctx, span := s.tracer.Start(ctx, "tx "+name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemPostgreSQL, attribute.String("db.operation.name", name)))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// RefreshTTL is how long a refresh token (and so a portal's cookie of it)
// lives.
func (s *Service) RefreshTTL() time.Duration { return s.cfg.RefreshTTL }

// JWKS is the public key document to serve; false before the keys are
// loaded.
func (s *Service) JWKS() ([]byte, bool) {
	ks := s.keys.Current()
	if ks == nil {
		return nil, false
	}
	return ks.JWKS(), true
}

// Principal is an authenticated caller.
type Principal struct {
	UserID    string
	OrgID     string
	SessionID string
	Role      string
	TokenID   string
}

// IsAdmin reports whether p is an org or global admin.
func (p Principal) IsAdmin() bool {
	return p.Role == tokens.RoleOrgAdmin || p.Role == tokens.RoleGlobalAdmin
}

// ClientMeta describes the client of a request.
type ClientMeta struct {
	IP        netip.Addr
	UserAgent string
	// ReasonText is what the person acting typed to say why (the portal's
	// confirmations), kept in the audit log of the action.
	ReasonText string
}

// check refuses a reason text that cannot be kept.
func (m ClientMeta) check() error {
	if len(m.ReasonText) > maxReasonText || !storable(m.ReasonText) || !printable(m.ReasonText) {
		return Invalid("reason_text must be text of at most %d bytes, without control characters", maxReasonText)
	}
	return nil
}

// noted adds the typed reason, if any, to an audit entry's detail.
func (m ClientMeta) noted(d map[string]any) map[string]any {
	if m.ReasonText != "" {
		d["reason_text"] = m.ReasonText
	}
	return d
}

// TokenPair is the answer to a login or refresh.
type TokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	SessionID    string `json:"session_id"`
}

// Authenticate verifies an access token and checks it against the
// authoritative revocation state: the session must be live, the user neither
// disabled nor erased, the token not revoked by jti nor issued before the
// user's not-before. Errors wrap ErrUnauthorized (with the reason) or
// ErrUnavailable.
func (s *Service) Authenticate(ctx context.Context, raw string) (Principal, error) {
	c, err := s.authenticated(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	return Principal{UserID: c.Subject, OrgID: c.Org, SessionID: c.SessionID, Role: c.Role, TokenID: c.ID}, nil
}

// authenticated is Authenticate's check, answering the token's claims.
func (s *Service) authenticated(ctx context.Context, raw string) (tokens.Claims, error) {
	now := s.now()
	c, err := s.verify(ctx, raw, now)
	if err != nil {
		return tokens.Claims{}, err
	}
	var st tokenState
	err = s.pool.QueryRow(ctx, `SELECT `+tokenStateColumns+` FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.user_id = $2`,
		c.SessionID, c.Subject, now, c.ID).Scan(st.dest()...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return tokens.Claims{}, fmt.Errorf("%w: unknown session", ErrUnauthorized)
	case err != nil:
		return tokens.Claims{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return c, st.check(c)
}

// tokenStateColumns are the columns of a tokenState, read from sessions s
// joined with users u, with the session's id as $1, the user's as $2, now
// as $3 and the token's jti as $4.
var tokenStateColumns = `s.revoked_at IS NOT NULL OR s.expires_at <= $3 OR ` + ruleCovers("s.", "$3") + `,
	u.disabled_at IS NOT NULL OR u.erased_at IS NOT NULL, u.tokens_not_before,
	EXISTS (SELECT 1 FROM revocations r WHERE r.kind = 'token' AND r.value = $4)`

// tokenState is what the database says of a verified access token: nil
// fields when its session is unknown.
type tokenState struct {
	sessionDead, userDead, tokenRevoked *bool
	notBefore                           *time.Time
}

func (st *tokenState) dest() []any {
	return []any{&st.sessionDead, &st.userDead, &st.notBefore, &st.tokenRevoked}
}

// check is nil for a live token, else ErrUnauthorized with the reason.
func (st tokenState) check(c tokens.Claims) error {
	switch {
	case st.sessionDead == nil || st.userDead == nil || st.tokenRevoked == nil:
		return fmt.Errorf("%w: unknown session", ErrUnauthorized)
	case *st.sessionDead:
		return fmt.Errorf("%w: session revoked", ErrUnauthorized)
	case *st.userDead:
		return fmt.Errorf("%w: user disabled", ErrUnauthorized)
	case *st.tokenRevoked:
		return fmt.Errorf("%w: token revoked", ErrUnauthorized)
	case st.notBefore != nil && c.IssuedAt.Before(*st.notBefore):
		return fmt.Errorf("%w: token revoked", ErrUnauthorized)
	}
	return nil
}

// verifiedTokensMax bounds each generation of the verified-token cache: 2
// × 16,384 tokens of about 1 KiB with their claims.
const verifiedTokensMax = 16384

// verify checks raw's signature and claims, once per token (see
// verifiedTokens), and returns its claims.
func (s *Service) verify(ctx context.Context, raw string, now time.Time) (tokens.Claims, error) {
	if c, ok := s.verified.get(raw, now, s.cfg.Leeway); ok {
		return c, nil
	}
	c, err := s.verifier.Verify(s.keys.Current(), raw, now)
	if errors.Is(err, tokens.ErrUnknownKey) && s.keys.ReloadSoon(ctx) {
		c, err = s.verifier.Verify(s.keys.Current(), raw, now)
	}
	if err != nil {
		return tokens.Claims{}, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	if !isUUID(c.SessionID) || !isUUID(c.Subject) || !isUUID(c.ID) {
		return tokens.Claims{}, fmt.Errorf("%w: malformed claims", ErrUnauthorized)
	}
	s.verified.put(raw, *c)
	return *c, nil
}

// issuedAt is the iat of an access token issued at now for a user whose
// tokens before notBefore are revoked: now to the microsecond, but at least
// a microsecond after notBefore, so that no verifier, however it rounds a
// NumericDate, reads the token as issued before the revocation. The caller
// holds the user's row (FOR SHARE, or stronger) while it reads notBefore
// and records the result in sessions.access_issued_at, in one transaction:
// a user-level revocation then orders exactly against it (revokeUser).
func issuedAt(now time.Time, notBefore *time.Time) time.Time {
	iat := now.Truncate(time.Microsecond)
	if notBefore != nil && !iat.After(*notBefore) {
		iat = notBefore.Truncate(time.Microsecond).Add(time.Microsecond)
	}
	return iat
}

// issue signs an access token for a session and builds the answer. iat
// comes from issuedAt; signedIn, the session's created_at, is its
// auth_time (to the microsecond, as PostgreSQL keeps it).
func (s *Service) issue(userID, orgID, sessionID, role, refresh string, now, iat, signedIn time.Time) (TokenPair, error) {
	g := tokens.Grant{Subject: userID, SessionID: sessionID, Org: orgID, Role: role, Now: now, IssuedAt: iat,
		AuthTime: signedIn.Truncate(time.Microsecond), TTL: s.cfg.AccessTTL, ID: uuid.NewString()}
	at, _, err := s.signer.Sign(s.keys.Current(), g)
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{AccessToken: at, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTTL / time.Second), SessionID: sessionID}, nil
}

// newRefreshToken returns 256 random bits, base64url.
func newRefreshToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// successor derives the token that replaces tok on rotation. It is a keyed
// PRF of tok, so only the server can compute it, and concurrent refreshes of
// the same token within the reuse grace all receive the same successor
// without the server ever storing a token in plain text.
func (s *Service) successor(tok string) string {
	m := hmac.New(sha256.New, s.rotKey)
	m.Write([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

func plausibleRefreshToken(tok string) bool {
	if len(tok) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(tok)
	return err == nil
}

// querier is what both a pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// nullable turns "" into NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullableIP(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a
}

func normEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// storable reports whether PostgreSQL can store s as text: valid UTF-8
// without NUL. Text the client chose (an email, a device or org name) that
// is not storable is refused with ErrInvalid.
func storable(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// cleanHeaderText makes text the client did not choose to send as input (a
// User-Agent) storable and printable: invalid UTF-8 becomes U+FFFD and
// control characters are dropped, then it is cut to n bytes.
func cleanHeaderText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	return truncate(s, n)
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// SystemPrincipal acts for the operator's CLI: a global admin with no user,
// recorded in the audit log with no actor.
var SystemPrincipal = Principal{Role: tokens.RoleGlobalAdmin}
