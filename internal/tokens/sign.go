package tokens

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grant says what an access token is for.
type Grant struct {
	Subject   string
	SessionID string
	Org       string
	Role      string
	// Now is the time of issue: nbf, and the start of the TTL.
	Now time.Time
	// IssuedAt is the token's iat; it may be up to a second after Now so
	// that it is never before a user-level revocation's not_before (which
	// is a whole second). Zero means Now.
	IssuedAt time.Time
	TTL      time.Duration
	ID       string // jti
}

// Signer issues access tokens for one issuer and audience.
type Signer struct {
	Issuer   string
	Audience string
}

// ErrNoSigningKey is returned when the key set has no private key.
var ErrNoSigningKey = errors.New("tokens: no signing key")

// Sign returns a signed access token and its expiry.
func (s Signer) Sign(ks *KeySet, g Grant) (string, time.Time, error) {
	if ks == nil || ks.signing == nil {
		return "", time.Time{}, ErrNoSigningKey
	}
	nbf := g.Now.Truncate(time.Second)
	iat := nbf
	if g.IssuedAt.After(iat) {
		iat = g.IssuedAt.Truncate(time.Second)
	}
	exp := g.Now.Add(g.TTL).Truncate(time.Second)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, wireClaims{
		Issuer:    s.Issuer,
		Subject:   g.Subject,
		Audience:  s.Audience,
		ExpiresAt: exp.Unix(),
		IssuedAt:  iat.Unix(),
		NotBefore: nbf.Unix(),
		ID:        g.ID,
		SessionID: g.SessionID,
		Org:       g.Org,
		Role:      g.Role,
	})
	tok.Header["typ"] = TokenType
	tok.Header["kid"] = ks.signing.ID
	out, err := tok.SignedString(ks.signing.Private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: sign: %w", err)
	}
	return out, exp, nil
}
