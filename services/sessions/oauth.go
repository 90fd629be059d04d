package sessions

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/tokens"
)

// The OAuth endpoints: RFC 7009 token revocation and RFC 7662 token
// introspection, for the tokens sessiond issues to users.

// RevokeToken is RFC 7009: the user's refresh or access token revokes the
// session it belongs to (reason token_revoke). A token that is invalid,
// unknown, expired or of a session already ended changes nothing and is
// no error (section 2.2). hint ("refresh_token", "access_token" or "")
// says which kind to try first.
//
// It returns the action's receipt and, when the token was a user's, that
// user as the principal who may read the receipt. A token that revoked
// nothing gets a receipt too (enforced at once, as the contract says of
// every revoking call), with no principal.
func (s *Service) RevokeToken(ctx context.Context, token, hint string, meta ClientMeta) (string, Principal, error) {
	sessionID, userID, orgID, err := s.tokenSession(ctx, token, hint)
	if err != nil {
		return "", Principal{}, err
	}
	r := newRevocation(ctx, events.ReasonTokenRevoke, userID, orgID, meta.IP)
	if sessionID == "" {
		b := &pgx.Batch{}
		queueReceipt(b, r, "", 0)
		if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
			return "", Principal{}, fmt.Errorf("%w: revoke token: %w", ErrUnavailable, err)
		}
		return r.receipt, Principal{}, nil
	}
	if _, err := s.revokeInTx(ctx, sessionFilter{sessionID: sessionID}, r); err != nil {
		return "", Principal{}, err
	}
	return r.receipt, Principal{UserID: userID, OrgID: orgID}, nil
}

// tokenSession finds the session of a user's token: a refresh token by its
// hash (rotated ones too: their holder had the session), an access token by
// its signature and claims (an expired one is invalid, and changes
// nothing). "" when it is neither.
func (s *Service) tokenSession(ctx context.Context, token, hint string) (sessionID, userID, orgID string, err error) {
	tryRefresh := func() (bool, error) {
		if !plausibleRefreshToken(token) {
			return false, nil
		}
		err := s.pool.QueryRow(ctx, `SELECT s.id::text, s.user_id::text, s.org_id::text FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
			WHERE rt.token_hash = $1`, hashToken(token)).Scan(&sessionID, &userID, &orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return true, nil
	}
	tryAccess := func() bool {
		c, err := s.verify(ctx, token, s.now())
		if err != nil || c.SessionID == "" {
			return false
		}
		sessionID, userID, orgID = c.SessionID, c.Subject, c.Org
		return true
	}
	if hint == "access_token" && tryAccess() {
		return sessionID, userID, orgID, nil
	}
	ok, err := tryRefresh()
	if err != nil || ok {
		return sessionID, userID, orgID, err
	}
	if hint != "access_token" && tryAccess() {
		return sessionID, userID, orgID, nil
	}
	return "", "", "", nil
}

// Introspection is an RFC 7662 answer (a struct, not a map: it is written
// thousands of times a second); Active false hides every other
// field.
type Introspection struct {
	Active    bool     `json:"active"`
	TokenType string   `json:"token_type,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       *float64 `json:"iat,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	AuthTime  *float64 `json:"auth_time,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	SID       string   `json:"sid,omitempty"`
	Org       string   `json:"org,omitempty"`
	Role      string   `json:"role,omitempty"`
}

// inactive is the answer for anything not active.
var inactive = Introspection{}

// Introspect is RFC 7662 for client c: whether a user's token is active,
// checked as a gateway checks it (signature, times, the session, the
// user's not-before, a revoked jti, the org's rules), and its claims. A
// client of one org sees only that org's tokens as active.
func (s *Service) Introspect(ctx context.Context, c Client, token, hint string) (Introspection, error) {
	// The hint says which kind to try first; the other is tried too (RFC
	// 7662 section 2.1).
	if hint == "refresh_token" {
		if out, err := s.introspectRefresh(ctx, c, token); err != nil || out.Active {
			return out, err
		}
	}
	cl, err := s.authenticated(ctx, token)
	switch {
	case errors.Is(err, ErrUnauthorized) && hint == "refresh_token":
		return inactive, nil // tried as a refresh token already
	case errors.Is(err, ErrUnauthorized):
		return s.introspectRefresh(ctx, c, token)
	case err != nil:
		return Introspection{}, err
	case c.OrgID != nil && *c.OrgID != cl.Org:
		return inactive, nil
	}
	return activeAccess(cl), nil
}

// activeAccess is the answer for an active access token of claims cl.
func activeAccess(cl tokens.Claims) Introspection {
	iat := numericDate(cl.IssuedAt)
	out := Introspection{Active: true, TokenType: "access_token", Iss: cl.Issuer, Sub: cl.Subject, Aud: cl.Audience,
		Exp: cl.ExpiresAt.Unix(), Iat: &iat, JTI: cl.ID, SID: cl.SessionID, Org: cl.Org, Role: cl.Role}
	if !cl.NotBefore.IsZero() {
		out.Nbf = cl.NotBefore.Unix()
	}
	if !cl.AuthTime.IsZero() {
		at := numericDate(cl.AuthTime)
		out.AuthTime = &at
	}
	return out
}

// IntrospectAs is the introspection endpoint's work: it authenticates the
// client id and secret (HTTP Basic) and introspects token for it, in one
// database round trip for an access token whose signature was verified
// before (the common case: a resource server asks about the same token
// many times). It returns the client, so that the caller can check its
// scope before it tells anything; errBadClient (ErrUnauthorized) for
// credentials that are wrong, whatever the token.
func (s *Service) IntrospectAs(ctx context.Context, id, secret, token, hint string) (Client, Introspection, error) {
	if !isUUID(id) || secret == "" {
		return Client{}, Introspection{}, errBadClient
	}
	now := s.now()
	cl, verr := s.verify(ctx, token, now)
	if verr != nil || hint == "refresh_token" {
		c, err := s.AuthenticateClient(ctx, id, secret)
		if err != nil {
			return Client{}, Introspection{}, err
		}
		out, err := s.Introspect(ctx, c, token, hint)
		return c, out, err
	}
	var (
		c    Client
		hash []byte
		st   tokenState
	)
	err := s.pool.QueryRow(ctx, `SELECT c.id::text, c.name, c.org_id::text, c.scopes, c.created_at, c.secret_hash, x.*
		FROM api_clients c LEFT JOIN LATERAL (SELECT `+tokenStateColumns+` FROM sessions s JOIN users u ON u.id = s.user_id
			WHERE s.id = $1 AND s.user_id = $2) x ON true
		WHERE c.id = $5 AND c.deleted_at IS NULL`, cl.SessionID, cl.Subject, now, cl.ID, id).
		Scan(append([]any{&c.ID, &c.Name, &c.OrgID, &c.Scopes, &c.CreatedAt, &hash}, st.dest()...)...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Client{}, Introspection{}, errBadClient
	case err != nil:
		return Client{}, Introspection{}, fmt.Errorf("%w: introspect: %w", ErrUnavailable, err)
	case subtle.ConstantTimeCompare(hash, hashToken(secret)) != 1:
		return Client{}, Introspection{}, errBadClient
	case st.check(cl) != nil || (c.OrgID != nil && *c.OrgID != cl.Org):
		return c, inactive, nil
	}
	return c, activeAccess(cl), nil
}

// introspectRefresh is Introspect for a refresh token: active while it is
// the live head of its session's rotation.
func (s *Service) introspectRefresh(ctx context.Context, c Client, token string) (Introspection, error) {
	if !plausibleRefreshToken(token) {
		return inactive, nil
	}
	now := s.now()
	var (
		sub, sid, org         string
		exp, created, lastUse time.Time
		pol                   Policy
	)
	err := s.pool.QueryRow(ctx, `SELECT s.user_id::text, s.id::text, s.org_id::text, rt.expires_at, s.created_at, s.last_active_at,
			COALESCE(op.idle_timeout, '0s'), COALESCE(op.max_session_lifetime, '0s')
		FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id JOIN users u ON u.id = s.user_id
		LEFT JOIN org_policies op ON op.org_id = s.org_id
		WHERE rt.token_hash = $1 AND rt.rotated_at IS NULL AND rt.expires_at > $2
		  AND s.revoked_at IS NULL AND s.expires_at > $2 AND NOT `+ruleCovers("s.", "$2")+`
		  AND u.disabled_at IS NULL AND u.erased_at IS NULL`, hashToken(token), now).
		Scan(&sub, &sid, &org, &exp, &created, &lastUse, &pol.IdleTimeout, &pol.MaxSessionLifetime)
	if errors.Is(err, pgx.ErrNoRows) {
		return inactive, nil
	}
	if err != nil {
		return Introspection{}, fmt.Errorf("%w: introspect: %w", ErrUnavailable, err)
	}
	if _, ended := pol.ended(created, lastUse, now); ended || (c.OrgID != nil && *c.OrgID != org) {
		return inactive, nil // a session the org's policy ends refreshes no more
	}
	return Introspection{Active: true, TokenType: "refresh_token", Sub: sub, SID: sid, Org: org, Exp: exp.Unix()}, nil
}

// numericDate is t as a NumericDate to the microsecond, as the tokens
// carry it.
func numericDate(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }
