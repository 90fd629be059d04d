package tokens

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidToken is wrapped by every verification failure; the message says why.
var ErrInvalidToken = errors.New("invalid token")

// ErrUnknownKey is wrapped when the token's kid is not in the key set, so a
// caller may refresh its keys and try again.
var ErrUnknownKey = errors.New("unknown signing key")

// Verifier checks access tokens: algorithm pinned to EdDSA, typ at+jwt, key by
// kid, issuer, audience, exp and nbf with a small leeway.
type Verifier struct {
	parser *jwt.Parser
}

// NewVerifier returns a verifier for tokens of issuer and audience.
func NewVerifier(issuer, audience string, leeway time.Duration) *Verifier {
	return &Verifier{parser: jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
	)}
}

// Verify parses and checks raw against ks. Errors wrap ErrInvalidToken, and
// also ErrUnknownKey when the kid is not in ks.
func (v *Verifier) Verify(ks *KeySet, raw string) (*Claims, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != TokenType {
			return nil, fmt.Errorf("typ must be %s", TokenType)
		}
		kid, _ := t.Header["kid"].(string)
		if ks == nil {
			return nil, ErrUnknownKey
		}
		k, ok := ks.Lookup(kid)
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
		}
		return k, nil
	})
	if err != nil {
		if errors.Is(err, ErrUnknownKey) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if c.ID == "" || c.SessionID == "" || c.Subject == "" || c.Org == "" || c.IssuedAt == nil {
		return nil, fmt.Errorf("%w: missing jti, sid, sub, org or iat", ErrInvalidToken)
	}
	switch c.Role {
	case RoleUser, RoleOrgAdmin, RoleGlobalAdmin:
	default:
		return nil, fmt.Errorf("%w: unknown role", ErrInvalidToken)
	}
	return &c, nil
}
