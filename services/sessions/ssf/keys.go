package ssf

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/revoke/services/sessions"
)

// The SET signing keys. The CAEP interoperability profile has every event
// signed with RS256 and a key of at least 2048 bits; the access tokens'
// Ed25519 keys cannot serve, and the gateways' JWKS holds those only, so
// the transmitter keeps RSA keys of its own, sealed under the KEK like the
// others, and publishes them at its own jwks_uri.

// keyBits is the size of a SET signing key.
const keyBits = 2048

// signingKey is one RSA key with its RFC 7638 thumbprint as kid.
type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// keySet is the keys in force: the newest signs, all are published.
type keySet struct {
	signer signingKey
	jwks   []byte
}

// Keys holds the transmitter's signing keys.
type Keys struct {
	pool *pgxpool.Pool
	aead cipher.AEAD
	cur  atomic.Pointer[keySet]
}

// NewKeys returns the key store sealing with kek; Init loads it.
func NewKeys(pool *pgxpool.Pool, kek []byte) (*Keys, error) {
	block, err := aes.NewCipher(sessions.DeriveKey(kek, "ssf-signing-key-seal"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Keys{pool: pool, aead: aead}, nil
}

// Init makes sure a signing key exists (the first is made under an
// advisory lock, so replicas that start together agree on it) and loads
// the unretired keys.
func (k *Keys) Init(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, k.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('ssf_signing_keys'))"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM ssf_signing_keys WHERE retired_at IS NULL").Scan(&n); err != nil || n > 0 {
			return err
		}
		return k.insert(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("ssf: init signing keys: %w", err)
	}
	return k.Reload(ctx)
}

func (k *Keys) insert(ctx context.Context, tx pgx.Tx) error {
	priv, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return err
	}
	kid := thumbprint(&priv.PublicKey)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := k.aead.Seal(nonce, nonce, x509.MarshalPKCS1PrivateKey(priv), []byte(kid))
	_, err = tx.Exec(ctx, "INSERT INTO ssf_signing_keys (kid, public_key, private_key, created_at) VALUES ($1, $2, $3, clock_timestamp())",
		kid, x509.MarshalPKCS1PublicKey(&priv.PublicKey), sealed)
	return err
}

// Reload reads the unretired keys and installs them.
func (k *Keys) Reload(ctx context.Context) error {
	rows, err := k.pool.Query(ctx, "SELECT kid, private_key FROM ssf_signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid")
	if err != nil {
		return fmt.Errorf("ssf: load signing keys: %w", err)
	}
	defer rows.Close()
	var keys []signingKey
	for rows.Next() {
		var (
			kid    string
			sealed []byte
		)
		if err := rows.Scan(&kid, &sealed); err != nil {
			return fmt.Errorf("ssf: load signing keys: %w", err)
		}
		ns := k.aead.NonceSize()
		if len(sealed) < ns {
			return fmt.Errorf("ssf: signing key %s: sealed key too short", kid)
		}
		der, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(kid))
		if err != nil {
			return fmt.Errorf("ssf: signing key %s does not open with this KEY_ENCRYPTION_KEY", kid)
		}
		priv, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return fmt.Errorf("ssf: signing key %s: %w", kid, err)
		}
		priv.Precompute()
		keys = append(keys, signingKey{kid: kid, priv: priv})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("ssf: load signing keys: %w", err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("ssf: no signing key (Init makes one)")
	}
	type jwk struct {
		Kty string `json:"kty"`
		Use string `json:"use"`
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		N   string `json:"n"`
		E   string `json:"e"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, key := range keys {
		n, e := publicParts(&key.priv.PublicKey)
		set.Keys = append(set.Keys, jwk{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: key.kid, N: n, E: e})
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return err
	}
	k.cur.Store(&keySet{signer: keys[0], jwks: jwks})
	return nil
}

// JWKS is the published key set (RFC 7517).
func (k *Keys) JWKS() []byte { return k.cur.Load().jwks }

// sign makes a compact JWS of the SET claims, RS256, typ secevent+jwt
// (RFC 8417 section 2.3), with the signing key's kid. The claims' JSON is
// canonical (encoding/json sorts map keys), and PKCS #1 v1.5 signatures
// are deterministic, so the same SET signed again is the same bytes.
func (k *Keys) sign(claims map[string]any) (string, error) {
	ks := k.cur.Load()
	header, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "secevent+jwt", "kid": ks.signer.kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, ks.signer.priv, crypto.SHA256, digest[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// publicParts is the JWK n and e of pub.
func publicParts(pub *rsa.PublicKey) (n, e string) {
	enc := base64.RawURLEncoding
	return enc.EncodeToString(pub.N.Bytes()), enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
}

// thumbprint is the RFC 7638 JWK thumbprint of pub: SHA-256 over the
// required members in lexicographic order, base64url.
func thumbprint(pub *rsa.PublicKey) string {
	n, e := publicParts(pub)
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
