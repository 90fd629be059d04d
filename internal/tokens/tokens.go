// Package tokens signs and verifies the access tokens of the contract: JWTs
// signed with Ed25519 (alg EdDSA, typ at+jwt, kid), and publishes the public
// keys as a JWKS (RFC 7517, RFC 8037).
package tokens

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"
)

// TokenType is the typ header of an access token (RFC 9068).
const TokenType = "at+jwt"

// Roles.
const (
	RoleUser        = "user"
	RoleOrgAdmin    = "org_admin"
	RoleGlobalAdmin = "global_admin"
)

// Claims are the claims of an access token, as a verifier read them. The
// times are NumericDates read to the microsecond (RFC 7519 section 2 allows
// fractions; iat carries them, so that revocations within one second order
// exactly against it).
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time // zero when the token has no nbf
	AuthTime  time.Time // when its session signed in; zero when the token has no auth_time
	ID        string    // jti
	SessionID string    // sid
	Org       string
	Role      string
}

// Key is one Ed25519 key pair; Private is nil for a verify-only key.
type Key struct {
	ID        string
	Public    ed25519.PublicKey
	Private   ed25519.PrivateKey
	CreatedAt time.Time
}

// NewKey generates a key with a kid derived from its public key (RFC 7638 thumbprint).
func NewKey(now time.Time) (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("tokens: generate key: %w", err)
	}
	return Key{ID: Thumbprint(pub), Public: pub, Private: priv, CreatedAt: now.UTC()}, nil
}

// Thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key.
func Thumbprint(pub ed25519.PublicKey) string {
	// Members in lexicographic order, no white space.
	canon := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// KeySet is an immutable set of keys: one signs (the newest with a private
// half), all verify.
type KeySet struct {
	byID    map[string]ed25519.PublicKey
	signing *Key
	jwks    []byte
}

// NewKeySet builds a key set. It returns an error when keys is empty.
func NewKeySet(keys []Key) (*KeySet, error) {
	if len(keys) == 0 {
		return nil, errors.New("tokens: empty key set")
	}
	ks := &KeySet{byID: make(map[string]ed25519.PublicKey, len(keys))}
	sorted := append([]Key(nil), keys...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].CreatedAt.After(sorted[j].CreatedAt) })
	doc := JWKS{Keys: make([]JWK, 0, len(sorted))}
	for i := range sorted {
		k := sorted[i]
		if len(k.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("tokens: key %q: bad public key size", k.ID)
		}
		ks.byID[k.ID] = k.Public
		if ks.signing == nil && k.Private != nil {
			ks.signing = &k
		}
		doc.Keys = append(doc.Keys, JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.Public), Kid: k.ID, Use: "sig", Alg: "EdDSA"})
	}
	var err error
	if ks.jwks, err = json.Marshal(doc); err != nil {
		return nil, err
	}
	return ks, nil
}

// Lookup returns the public key with kid.
func (ks *KeySet) Lookup(kid string) (ed25519.PublicKey, bool) {
	k, ok := ks.byID[kid]
	return k, ok
}

// JWKS is the public document, ready to serve.
func (ks *KeySet) JWKS() []byte { return ks.jwks }

// SigningKeyID is the kid that signs new tokens ("" for a verify-only set).
func (ks *KeySet) SigningKeyID() string {
	if ks.signing == nil {
		return ""
	}
	return ks.signing.ID
}

// JWK is one Ed25519 public key in a JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// ParseJWKS reads a JWKS document into verify-only keys. Keys that are not
// Ed25519 are skipped; it returns an error when none is left.
func ParseJWKS(data []byte) ([]Key, error) {
	var doc JWKS
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("tokens: jwks: %w", err)
	}
	var keys []Key
	for _, k := range doc.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid == "" || (k.Alg != "" && k.Alg != "EdDSA") {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue
		}
		keys = append(keys, Key{ID: k.Kid, Public: ed25519.PublicKey(x)})
	}
	if len(keys) == 0 {
		return nil, errors.New("tokens: jwks holds no usable Ed25519 key")
	}
	return keys, nil
}

// Holder holds the current key set and swaps it atomically on rotation.
type Holder struct{ p atomic.Pointer[KeySet] }

// Load returns the current key set (nil before the first Store).
func (h *Holder) Load() *KeySet { return h.p.Load() }

// Store installs ks.
func (h *Holder) Store(ks *KeySet) { h.p.Store(ks) }
