package tokens

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// referenceVerifier checks tokens with golang-jwt, a widely used verifier
// that reads the same rules (EdDSA pinned, typ, kid, iss, aud, exp, nbf with
// leeway). The differential fuzz tests hold Verifier to accepting a subset
// of what it accepts, with the same claims.
type referenceVerifier struct {
	parser *jwt.Parser
}

func newReferenceVerifier(issuer, audience string, leeway time.Duration, now func() time.Time) *referenceVerifier {
	return &referenceVerifier{parser: jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	)}
}

type referenceClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ID        string           `json:"jti"`
	SessionID string           `json:"sid"`
	Org       string           `json:"org"`
	Role      string           `json:"role"`
}

func (c *referenceClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *referenceClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *referenceClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *referenceClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *referenceClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *referenceClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

func (v *referenceVerifier) Verify(ks *KeySet, raw string) (*referenceClaims, error) {
	var c referenceClaims
	_, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != TokenType {
			return nil, fmt.Errorf("typ must be %s", TokenType)
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := ks.Lookup(kid)
		if !ok {
			return nil, ErrUnknownKey
		}
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	if c.ID == "" || c.SessionID == "" || c.Subject == "" || c.Org == "" || c.IssuedAt == nil {
		return nil, errors.New("missing jti, sid, sub, org or iat")
	}
	switch c.Role {
	case RoleUser, RoleOrgAdmin, RoleGlobalAdmin:
	default:
		return nil, errors.New("unknown role")
	}
	return &c, nil
}
