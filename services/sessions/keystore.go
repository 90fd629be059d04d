package sessions

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/revoke/internal/loop"
	"github.com/sessionguard/revoke/internal/tokens"
)

// KeyStore keeps the Ed25519 signing keys in PostgreSQL, their private halves
// sealed with AES-256-GCM under the key-encryption key, and holds the current
// key set in memory for signing, verifying and the JWKS.
type KeyStore struct {
	pool   *pgxpool.Pool
	aead   cipher.AEAD
	keep   time.Duration // how long a retired key stays published
	holder tokens.Holder
	log    *slog.Logger

	mu         sync.Mutex
	lastReload time.Time
}

// KeyRetention is how long a retired signing key stays published: until
// every token it signed has expired, with the verifiers' leeway.
func KeyRetention(c Config) time.Duration { return c.AccessTTL + c.Leeway + time.Minute }

// ParseKEK decodes KEY_ENCRYPTION_KEY: 32 bytes, base64 (std or URL, padded or not).
func ParseKEK(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("KEY_ENCRYPTION_KEY must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")
}

// NewKeyStore returns a key store sealing with kek. Retired keys stay in the
// JWKS for keep (the access-token TTL plus leeway), so tokens they signed
// still verify until they expire.
func NewKeyStore(pool *pgxpool.Pool, kek []byte, keep time.Duration, log *slog.Logger) (*KeyStore, error) {
	block, err := aes.NewCipher(DeriveKey(kek, "signing-key-seal"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KeyStore{pool: pool, aead: aead, keep: keep, log: log}, nil
}

// DeriveKey derives the key for one purpose from the key-encryption key, so
// that every replica derives the same and no two purposes share one.
func DeriveKey(kek []byte, purpose string) []byte {
	m := hmac.New(sha256.New, kek)
	m.Write([]byte("sessionguard/v1/" + purpose))
	return m.Sum(nil)
}

// Current is the key set in force (nil before Init).
func (k *KeyStore) Current() *tokens.KeySet { return k.holder.Load() }

// Init makes sure a signing key exists (creating the first one under an
// advisory lock, so replicas starting together agree) and loads the key set.
func (k *KeyStore) Init(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, k.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('signing_keys'))"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		return k.insert(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("sessions: init signing keys: %w", err)
	}
	return k.Reload(ctx)
}

// Rotate adds a new signing key and retires the others; they stay published
// until every token they signed has expired. It returns the new kid.
func (k *KeyStore) Rotate(ctx context.Context) (string, error) {
	var kid string
	err := pgx.BeginFunc(ctx, k.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('signing_keys'))"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL"); err != nil {
			return err
		}
		return k.insertReturning(ctx, tx, &kid)
	})
	if err != nil {
		return "", fmt.Errorf("sessions: rotate signing key: %w", err)
	}
	return kid, k.Reload(ctx)
}

func (k *KeyStore) insert(ctx context.Context, tx pgx.Tx) error {
	var kid string
	return k.insertReturning(ctx, tx, &kid)
}

func (k *KeyStore) insertReturning(ctx context.Context, tx pgx.Tx, kid *string) error {
	key, err := tokens.NewKey(time.Now())
	if err != nil {
		return err
	}
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := k.aead.Seal(nonce, nonce, key.Private.Seed(), []byte(key.ID))
	*kid = key.ID
	_, err = tx.Exec(ctx, "INSERT INTO signing_keys (kid, public_key, private_key, created_at) VALUES ($1, $2, $3, clock_timestamp())", key.ID, []byte(key.Public), sealed)
	return err
}

// Reload reads the published keys from PostgreSQL and installs them.
func (k *KeyStore) Reload(ctx context.Context) error {
	rows, err := k.pool.Query(ctx, `SELECT kid, public_key, private_key, created_at, retired_at IS NULL
		FROM signing_keys WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)
		ORDER BY created_at DESC`, k.keep.Seconds())
	if err != nil {
		return fmt.Errorf("sessions: load signing keys: %w", err)
	}
	defer rows.Close()
	var keys []tokens.Key
	for rows.Next() {
		var (
			kid         string
			pub, sealed []byte
			created     time.Time
			active      bool
		)
		if err := rows.Scan(&kid, &pub, &sealed, &created, &active); err != nil {
			return err
		}
		key := tokens.Key{ID: kid, Public: ed25519.PublicKey(pub), CreatedAt: created}
		if active {
			ns := k.aead.NonceSize()
			if len(sealed) < ns {
				return fmt.Errorf("sessions: signing key %s: sealed key too short", kid)
			}
			seed, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(kid))
			if err != nil {
				return fmt.Errorf("sessions: signing key %s cannot be opened: wrong KEY_ENCRYPTION_KEY?", kid)
			}
			key.Private = ed25519.NewKeyFromSeed(seed)
		}
		keys = append(keys, key)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	ks, err := tokens.NewKeySet(keys)
	if err != nil {
		return fmt.Errorf("sessions: %w (run sessiond once, or `revokectl keys rotate`)", err)
	}
	if ks.SigningKeyID() == "" {
		return errors.New("sessions: no active signing key: run `revokectl keys rotate`")
	}
	k.holder.Store(ks)
	k.mu.Lock()
	k.lastReload = time.Now()
	k.mu.Unlock()
	return nil
}

// ReloadSoon reloads unless a reload happened in the last second; it lets a
// replica pick up a key that another replica rotated in, without letting
// tokens with made-up kids hammer the database.
func (k *KeyStore) ReloadSoon(ctx context.Context) bool {
	k.mu.Lock()
	if time.Since(k.lastReload) < time.Second {
		k.mu.Unlock()
		return false
	}
	k.lastReload = time.Now()
	k.mu.Unlock()
	if err := k.Reload(ctx); err != nil {
		k.log.WarnContext(ctx, "signing key reload failed", "error", err.Error())
		return false
	}
	return true
}

// Run reloads the keys every interval until ctx ends, so rotations made by
// another replica or by revokectl are picked up.
func (k *KeyStore) Run(ctx context.Context, interval time.Duration) {
	loop.Every(ctx, interval, func(ctx context.Context) {
		if err := k.Reload(ctx); err != nil && ctx.Err() == nil {
			k.log.WarnContext(ctx, "signing key reload failed", "error", err.Error())
		}
	})
}
