package tokens

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// EdgeVerifier checks access tokens like Verifier, for the gateway's hot
// path: it accepts exactly the compact JWS that this system issues (EdDSA,
// typ at+jwt, kid, no crit) and decodes header and claims into fixed structs,
// so the cost beyond the Ed25519 check is a few microseconds. Every token it
// accepts, Verifier accepts too (a differential fuzz test holds them to it).
type EdgeVerifier struct {
	issuer   string
	audience string
	leeway   time.Duration
}

// NewEdgeVerifier returns an edge verifier for tokens of issuer and audience.
func NewEdgeVerifier(issuer, audience string, leeway time.Duration) *EdgeVerifier {
	return &EdgeVerifier{issuer: issuer, audience: audience, leeway: leeway}
}

type edgeHeader struct {
	Alg, Typ, Kid string
	Crit          json.RawMessage
}

type edgeClaims struct {
	Iss, Sub, Jti, Sid, Org, Role string
	Aud                           json.RawMessage
	Exp, Iat, Nbf                 *float64
}

var errMember = errors.New("unexpected member")

// stringValue stores a string member (null clears it).
func stringValue(raw []byte, dst *string) error {
	if string(raw) == "null" {
		*dst = ""
		return nil
	}
	v, ok := jsonString(raw)
	if !ok {
		return errMember
	}
	*dst = v
	return nil
}

// numberValue stores a number member (null clears it).
func numberValue(raw []byte, dst **float64) error {
	if string(raw) == "null" {
		*dst = nil
		return nil
	}
	f, ok := jsonNumber(raw)
	if !ok {
		return errMember
	}
	*dst = &f
	return nil
}

// unknownMember accepts a member this verifier does not read, unless its
// name differs from one it reads only in case: encoding/json (and so the
// reference verifier) would match that one case-insensitively.
func unknownMember(key string, known ...string) error {
	for _, k := range known {
		if strings.EqualFold(key, k) {
			return errMember
		}
	}
	return nil
}

// parseHeader decodes a JOSE header of valid JSON.
func parseHeader(b []byte, h *edgeHeader) error {
	if !json.Valid(b) {
		return errScan
	}
	return scanObject(b, func(k string, raw []byte) error {
		switch k {
		case "alg":
			return stringValue(raw, &h.Alg)
		case "typ":
			return stringValue(raw, &h.Typ)
		case "kid":
			return stringValue(raw, &h.Kid)
		case "crit":
			h.Crit = raw
			return nil
		}
		return unknownMember(k, "alg", "typ", "kid", "crit")
	})
}

// parseClaims decodes the claims of valid JSON.
func parseClaims(b []byte, c *edgeClaims) error {
	if !json.Valid(b) {
		return errScan
	}
	return scanObject(b, func(k string, raw []byte) error {
		switch k {
		case "iss":
			return stringValue(raw, &c.Iss)
		case "sub":
			return stringValue(raw, &c.Sub)
		case "aud":
			c.Aud = raw
			return nil
		case "exp":
			return numberValue(raw, &c.Exp)
		case "iat":
			return numberValue(raw, &c.Iat)
		case "nbf":
			return numberValue(raw, &c.Nbf)
		case "jti":
			return stringValue(raw, &c.Jti)
		case "sid":
			return stringValue(raw, &c.Sid)
		case "org":
			return stringValue(raw, &c.Org)
		case "role":
			return stringValue(raw, &c.Role)
		}
		return unknownMember(k, "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "org", "role")
	})
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// Verify parses and checks raw against ks at now. Errors wrap
// ErrInvalidToken, and also ErrUnknownKey when the kid is not in ks.
func (v *EdgeVerifier) Verify(ks *KeySet, raw string, now time.Time) (*Claims, error) {
	if len(raw) > 8<<10 {
		return nil, invalidf("token too long")
	}
	dot1 := strings.IndexByte(raw, '.')
	dot2 := strings.LastIndexByte(raw, '.')
	if dot1 <= 0 || dot2 <= dot1+1 || dot2 == len(raw)-1 || strings.IndexByte(raw[dot1+1:dot2], '.') >= 0 {
		return nil, invalidf("token is malformed")
	}
	var buf [2048]byte
	hb, err := decodeSegment(buf[:0], raw[:dot1])
	if err != nil {
		return nil, invalidf("header is malformed")
	}
	var h edgeHeader
	if err := parseHeader(hb, &h); err != nil {
		return nil, invalidf("header is malformed")
	}
	if h.Alg != jwt.SigningMethodEdDSA.Alg() {
		return nil, invalidf("signing method %q is invalid", h.Alg)
	}
	if h.Typ != TokenType {
		return nil, invalidf("typ must be %s", TokenType)
	}
	if h.Crit != nil {
		return nil, invalidf("crit header not supported")
	}
	if ks == nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUnknownKey)
	}
	pub, ok := ks.Lookup(h.Kid)
	if !ok {
		return nil, fmt.Errorf("%w: %w %q", ErrInvalidToken, ErrUnknownKey, h.Kid)
	}
	var sigBuf [ed25519.SignatureSize + 2]byte
	sig, err := decodeSegment(sigBuf[:0], raw[dot2+1:])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, invalidf("signature is malformed")
	}
	if !ed25519.Verify(pub, []byte(raw[:dot2]), sig) {
		return nil, invalidf("signature is invalid")
	}
	cb, err := decodeSegment(buf[:0], raw[dot1+1:dot2])
	if err != nil {
		return nil, invalidf("claims are malformed")
	}
	var c edgeClaims
	if err := parseClaims(cb, &c); err != nil {
		return nil, invalidf("claims are malformed")
	}
	return v.check(&c, now)
}

func (v *EdgeVerifier) check(c *edgeClaims, now time.Time) (*Claims, error) {
	if c.Exp == nil {
		return nil, invalidf("token has no exp")
	}
	exp, ok1 := numericDate(*c.Exp)
	if !ok1 {
		return nil, invalidf("exp is malformed")
	}
	if !now.Before(exp.Add(v.leeway)) {
		return nil, invalidf("token is expired")
	}
	var nbf, iat time.Time
	if c.Nbf != nil {
		var ok bool
		if nbf, ok = numericDate(*c.Nbf); !ok {
			return nil, invalidf("nbf is malformed")
		}
		if now.Add(v.leeway).Before(nbf) {
			return nil, invalidf("token is not valid yet")
		}
	}
	if c.Iat == nil {
		return nil, invalidf("missing jti, sid, sub, org or iat")
	}
	var ok bool
	if iat, ok = numericDate(*c.Iat); !ok {
		return nil, invalidf("iat is malformed")
	}
	if c.Iss != v.issuer {
		return nil, invalidf("token has invalid issuer")
	}
	aud, err := audience(c.Aud)
	if err != nil {
		return nil, err
	}
	found := false
	for _, a := range aud {
		found = found || a == v.audience
	}
	if !found {
		return nil, invalidf("token has invalid audience")
	}
	if c.Jti == "" || c.Sid == "" || c.Sub == "" || c.Org == "" {
		return nil, invalidf("missing jti, sid, sub, org or iat")
	}
	switch c.Role {
	case RoleUser, RoleOrgAdmin, RoleGlobalAdmin:
	default:
		return nil, invalidf("unknown role")
	}
	out := &Claims{Issuer: c.Iss, Subject: c.Sub, Audience: aud, ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(iat),
		ID: c.Jti, SessionID: c.Sid, Org: c.Org, Role: c.Role}
	if c.Nbf != nil {
		out.NotBefore = jwt.NewNumericDate(nbf)
	}
	return out, nil
}

func numericDate(f float64) (time.Time, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

func audience(raw json.RawMessage) (jwt.ClaimStrings, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, invalidf("token has invalid audience")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalidf("aud is malformed")
		}
		return jwt.ClaimStrings{s}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, invalidf("aud is malformed")
	}
	return list, nil
}

var (
	errSegment = errors.New("bad base64url segment")
	strictB64  = base64.RawURLEncoding.Strict()
)

// decodeSegment appends the base64url (unpadded) decoding of s to dst.
func decodeSegment(dst []byte, s string) ([]byte, error) {
	n := strictB64.DecodedLen(len(s))
	if cap(dst)-len(dst) < n {
		dst = make([]byte, 0, n)
	}
	out := dst[len(dst) : len(dst)+n]
	m, err := strictB64.Decode(out, []byte(s))
	if err != nil {
		return nil, errSegment
	}
	return out[:m], nil
}
