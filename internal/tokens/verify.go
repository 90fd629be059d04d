package tokens

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// ErrInvalidToken is wrapped by every verification failure; the message says why.
var ErrInvalidToken = errors.New("invalid token")

// ErrUnknownKey is wrapped when the token's kid is not in the key set, so a
// caller may refresh its keys and try again.
var ErrUnknownKey = errors.New("unknown signing key")

// The refusals an operator tells apart (the gateway counts decisions by
// them), each wrapped, beside ErrInvalidToken, by the error that says so.
// Any other refusal is a malformed token.
var (
	ErrExpired       = errors.New("token is expired")
	ErrNotYetValid   = errors.New("token is not valid yet")
	ErrBadSignature  = errors.New("signature is invalid")
	ErrWrongIssuer   = errors.New("token has invalid issuer")
	ErrWrongAudience = errors.New("token has invalid audience")
)

// invalidAs is a refusal for one of the reasons above.
func invalidAs(reason error) error { return fmt.Errorf("%w: %w", ErrInvalidToken, reason) }

// Verifier checks access tokens: algorithm pinned to EdDSA, typ at+jwt, key
// by kid, issuer, audience, exp and nbf with a leeway. It is the one verifier
// of this system: the gateway, the Go middleware and sessiond all use it, so
// that they accept exactly the same tokens.
//
// It accepts only the compact JWS that this system issues, read strictly:
// canonical unpadded base64url, no crit header, every member of the header
// and claims exactly once, member names without escapes, each claim of its
// JSON type (no null), times as non-negative numbers. JSON readers disagree
// on escaped and duplicate member names ("\u0072ole" is "role" to
// encoding/json, last one wins), so a token that carries them could mean one
// thing here and another to a third-party verifier; such a token is refused.
// It decodes header and claims into fixed structs without reflection, so the
// cost beyond the Ed25519 check is a few microseconds. Every token it
// accepts, golang-jwt accepts too, with the same claims (a differential fuzz
// test holds it to that).
type Verifier struct {
	issuer   string
	audience string
	leeway   time.Duration
}

// NewVerifier returns a verifier for tokens of issuer and audience.
func NewVerifier(issuer, audience string, leeway time.Duration) *Verifier {
	return &Verifier{issuer: issuer, audience: audience, leeway: leeway}
}

type header struct {
	Alg, Typ, Kid string
	Crit          bool
}

type wireRead struct {
	Iss, Sub, Jti, Sid, Org, Role string
	Aud                           json.RawMessage
	Exp, Iat, Nbf, AuthTime       *float64
}

var errMember = errors.New("unexpected member")

// stringValue stores a string member.
func stringValue(raw []byte, dst *string) error {
	v, ok := jsonString(raw)
	if !ok {
		return errMember
	}
	*dst = v
	return nil
}

// numberValue stores a number member.
func numberValue(raw []byte, dst **float64) error {
	f, ok := jsonNumber(raw)
	if !ok {
		return errMember
	}
	*dst = &f
	return nil
}

// unknownMember accepts a member this verifier does not read, unless its
// name differs from one it reads only in case: encoding/json (and so
// golang-jwt) would match that one case-insensitively.
func unknownMember(key string, known ...string) error {
	for _, k := range known {
		if strings.EqualFold(key, k) {
			return errMember
		}
	}
	return nil
}

// parseHeader decodes a JOSE header of valid JSON.
func parseHeader(b []byte, h *header) error {
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
			h.Crit = true
			return nil
		}
		return unknownMember(k, "alg", "typ", "kid", "crit")
	})
}

// parseClaims decodes the claims of valid JSON.
func parseClaims(b []byte, c *wireRead) error {
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
		case "auth_time":
			return numberValue(raw, &c.AuthTime)
		case "jti":
			return stringValue(raw, &c.Jti)
		case "sid":
			return stringValue(raw, &c.Sid)
		case "org":
			return stringValue(raw, &c.Org)
		case "role":
			return stringValue(raw, &c.Role)
		}
		return unknownMember(k, "iss", "sub", "aud", "exp", "iat", "nbf", "auth_time", "jti", "sid", "org", "role")
	})
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// MaxTokenSize bounds the compact serialisation a verifier reads.
const MaxTokenSize = 8 << 10

// Verify parses and checks raw against ks at now. Errors wrap
// ErrInvalidToken, and also ErrUnknownKey when the kid is not in ks.
func (v *Verifier) Verify(ks *KeySet, raw string, now time.Time) (*Claims, error) {
	if len(raw) > MaxTokenSize {
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
	var h header
	if err := parseHeader(hb, &h); err != nil {
		return nil, invalidf("header is malformed")
	}
	if h.Alg != "EdDSA" {
		return nil, invalidf("signing method %q is invalid", h.Alg)
	}
	if h.Typ != TokenType {
		return nil, invalidf("typ must be %s", TokenType)
	}
	if h.Crit {
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
		return nil, invalidAs(ErrBadSignature)
	}
	cb, err := decodeSegment(buf[:0], raw[dot1+1:dot2])
	if err != nil {
		return nil, invalidf("claims are malformed")
	}
	var c wireRead
	if err := parseClaims(cb, &c); err != nil {
		return nil, invalidf("claims are malformed")
	}
	return v.check(&c, now)
}

func (v *Verifier) check(c *wireRead, now time.Time) (*Claims, error) {
	if c.Exp == nil {
		return nil, invalidf("token has no exp")
	}
	exp, ok := numericDate(*c.Exp)
	if !ok {
		return nil, invalidf("exp is malformed")
	}
	if !now.Before(exp.Add(v.leeway)) {
		return nil, invalidAs(ErrExpired)
	}
	var nbf time.Time
	if c.Nbf != nil {
		if nbf, ok = numericDate(*c.Nbf); !ok {
			return nil, invalidf("nbf is malformed")
		}
		if now.Add(v.leeway).Before(nbf) {
			return nil, invalidAs(ErrNotYetValid)
		}
	}
	if c.Iat == nil {
		return nil, invalidf("missing jti, sid, sub, org or iat")
	}
	iat, ok := numericDate(*c.Iat)
	if !ok {
		return nil, invalidf("iat is malformed")
	}
	if c.Iss != v.issuer {
		return nil, invalidAs(ErrWrongIssuer)
	}
	aud, err := audience(c.Aud)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(aud, v.audience) {
		return nil, invalidAs(ErrWrongAudience)
	}
	if c.Jti == "" || c.Sid == "" || c.Sub == "" || c.Org == "" {
		return nil, invalidf("missing jti, sid, sub, org or iat")
	}
	switch c.Role {
	case RoleUser, RoleOrgAdmin, RoleGlobalAdmin:
	default:
		return nil, invalidf("unknown role")
	}
	var authTime time.Time
	if c.AuthTime != nil {
		// Not held against iat: sign-in and issue may be stamped by the
		// clocks of two replicas.
		if authTime, ok = numericDate(*c.AuthTime); !ok {
			return nil, invalidf("auth_time is malformed")
		}
	}
	return &Claims{Issuer: c.Iss, Subject: c.Sub, Audience: aud, ExpiresAt: exp, IssuedAt: iat, NotBefore: nbf, AuthTime: authTime,
		ID: c.Jti, SessionID: c.Sid, Org: c.Org, Role: c.Role}, nil
}

// maxNumericDate bounds the NumericDates a verifier takes (the year 2286):
// far enough for any token, near enough that microseconds stay exact.
const maxNumericDate = 1e10

// numericDate reads a NumericDate to the nearest microsecond. A float64
// holds a time of this era to about a quarter of a microsecond, so rounding
// recovers exactly the microsecond that the issuer wrote.
func numericDate(f float64) (time.Time, bool) {
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	return time.UnixMicro(int64(math.Round(f * 1e6))), true
}

func audience(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return nil, invalidAs(ErrWrongAudience)
	case raw[0] == '"':
		s, ok := jsonString(raw)
		if !ok {
			return nil, invalidf("aud is malformed")
		}
		return []string{s}, nil
	case raw[0] == '[':
		var list []string
		err := scanArray(raw, func(elem []byte) error {
			s, ok := jsonString(elem)
			if !ok {
				return errMember
			}
			list = append(list, s)
			return nil
		})
		if err != nil || len(list) == 0 {
			return nil, invalidf("aud is malformed")
		}
		return list, nil
	}
	return nil, invalidf("aud is malformed")
}

var (
	errSegment = errors.New("bad base64url segment")
	strictB64  = base64.RawURLEncoding.Strict()
)

// decodeSegment appends the base64url (unpadded, canonical) decoding of s
// to dst.
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
