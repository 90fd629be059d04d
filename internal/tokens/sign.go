package tokens

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grant says what an access token is for.
type Grant struct {
	Subject   string
	SessionID string
	Org       string
	Role      string
	// Now is the time of issue: nbf (whole seconds), and the start of the TTL.
	Now time.Time
	// IssuedAt is the token's iat, to the microsecond; zero means Now. The
	// issuer sets it after the user's latest not-before, so that no
	// user-level revocation covers a token issued after it.
	IssuedAt time.Time
	// AuthTime is when the token's session signed in (OpenID Connect's
	// auth_time), to the microsecond; zero leaves it out. A rule that
	// revokes the sessions of an org signed in before an instant compares
	// it (revocations.v1.org).
	AuthTime time.Time
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

// wireClaims is what is signed: aud as a single string, exp and nbf in
// whole seconds, iat and auth_time to the microsecond.
type wireClaims struct {
	Issuer    string     `json:"iss"`
	Subject   string     `json:"sub"`
	Audience  string     `json:"aud"`
	ExpiresAt int64      `json:"exp"`
	IssuedAt  microDate  `json:"iat"`
	NotBefore int64      `json:"nbf"`
	AuthTime  *microDate `json:"auth_time,omitempty"`
	ID        string     `json:"jti"`
	SessionID string     `json:"sid"`
	Org       string     `json:"org"`
	Role      string     `json:"role"`
}

func (w wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (w wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (w wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (w wireClaims) GetIssuer() (string, error)                   { return w.Issuer, nil }
func (w wireClaims) GetSubject() (string, error)                  { return w.Subject, nil }
func (w wireClaims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings{w.Audience}, nil }

// microDate is a NumericDate in microseconds, written as a JSON number with
// at most six decimals ("1764583200.123457"; "1764583200" for a whole
// second). Six decimals survive a round trip through a float64 until the
// year 2255, so every verifier that reads numbers reads the same instant.
type microDate int64

// MarshalJSON implements json.Marshaler.
func (d microDate) MarshalJSON() ([]byte, error) {
	us := int64(d)
	if us < 0 {
		return nil, fmt.Errorf("tokens: negative NumericDate %d", us)
	}
	b := strconv.AppendInt(nil, us/1e6, 10)
	if frac := us % 1e6; frac != 0 {
		digits := strconv.AppendInt(nil, frac+1e6, 10)[1:] // six digits, leading zeros kept
		for digits[len(digits)-1] == '0' {
			digits = digits[:len(digits)-1]
		}
		b = append(append(b, '.'), digits...)
	}
	return b, nil
}

// Sign returns a signed access token and its expiry.
func (s Signer) Sign(ks *KeySet, g Grant) (string, time.Time, error) {
	if ks == nil || ks.signing == nil {
		return "", time.Time{}, ErrNoSigningKey
	}
	iat := g.IssuedAt
	if iat.IsZero() {
		iat = g.Now
	}
	nbf := g.Now.Truncate(time.Second)
	exp := g.Now.Add(g.TTL).Truncate(time.Second)
	var authTime *microDate
	if !g.AuthTime.IsZero() {
		at := microDate(g.AuthTime.UnixMicro())
		authTime = &at
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, wireClaims{
		AuthTime:  authTime,
		Issuer:    s.Issuer,
		Subject:   g.Subject,
		Audience:  s.Audience,
		ExpiresAt: exp.Unix(),
		IssuedAt:  microDate(iat.UnixMicro()),
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
