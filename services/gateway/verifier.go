package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/sessionguard/revoke/internal/tokens"
)

// Identity is what a verified access token says about its bearer.
type Identity struct {
	raw     string
	Subject string
	Org     string
	Session string
	Role    string

	sub, sid, jti, org ID
	iat                int64 // unix µs: NumericDates are read to the microsecond
	authTime           int64 // unix µs of auth_time; 0 when the token has none
	validUntil         int64 // unix ns: exp plus leeway

	lastReported atomic.Int64 // unix ns of the last activity report
}

// Verifier checks access tokens and caches the verified ones. A cache miss
// only costs a signature check, so the cache may drop entries freely; an
// entry never outlives its token. A token enters the cache on its second
// use: a doorkeeper remembers the first, so tokens used once never cost a
// cache insertion (the idea of TinyLFU's doorkeeper).
type Verifier struct {
	keys   *KeySource
	v      *tokens.Verifier
	leeway time.Duration
	cache  *ristretto.Cache[string, *Identity]
	door   doorkeeper
}

// doorkeeper is a direct-mapped table of token hashes seen once; a
// collision only makes a token wait one more use for the cache.
type doorkeeper struct {
	seed  maphash.Seed
	slots []atomic.Uint64
}

// seenBefore reports whether raw was seen before, and remembers it.
func (d *doorkeeper) seenBefore(raw string) bool {
	h := maphash.String(d.seed, raw) | 1 // never 0, the empty slot
	slot := &d.slots[h%uint64(len(d.slots))]
	if slot.Load() == h {
		return true
	}
	slot.Store(h)
	return false
}

// NewVerifier returns a verifier for tokens of issuer and audience, caching
// up to maxTokens verified tokens.
func NewVerifier(keys *KeySource, issuer, audience string, leeway time.Duration, maxTokens int64) (*Verifier, error) {
	cache, err := ristretto.NewCache(&ristretto.Config[string, *Identity]{
		NumCounters:        maxTokens * 10,
		MaxCost:            maxTokens,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, err
	}
	return &Verifier{keys: keys, v: tokens.NewVerifier(issuer, audience, leeway), leeway: leeway, cache: cache,
		door: doorkeeper{seed: maphash.MakeSeed(), slots: make([]atomic.Uint64, maxTokens)}}, nil
}

// Close releases the cache.
func (v *Verifier) Close() { v.cache.Close() }

// errors of Verify; their text is the error_description of the 401.
var (
	errNoToken = errors.New("missing bearer token")
)

// Verify returns the identity of a valid token. It never calls the network
// except for a rate-limited JWKS refresh when the token names an unknown kid.
func (v *Verifier) Verify(ctx context.Context, raw string, now time.Time) (*Identity, error) {
	if raw == "" {
		return nil, errNoToken
	}
	if id, ok := v.cache.Get(raw); ok && id.raw == raw {
		if now.UnixNano() < id.validUntil {
			return id, nil
		}
		return nil, fmt.Errorf("%w: %w", tokens.ErrInvalidToken, tokens.ErrExpired)
	}
	c, err := v.v.Verify(v.keys.Current(), raw, now)
	if errors.Is(err, tokens.ErrUnknownKey) && v.keys.RefreshForUnknownKid(ctx) {
		c, err = v.v.Verify(v.keys.Current(), raw, now)
	}
	if err != nil {
		return nil, err
	}
	id := &Identity{raw: raw, Subject: c.Subject, Org: c.Org, Session: c.SessionID, Role: c.Role, iat: c.IssuedAt.UnixMicro()}
	var ok1, ok2, ok3 bool
	id.sub, ok1 = ParseID(c.Subject)
	id.sid, ok2 = ParseID(c.SessionID)
	id.jti, ok3 = ParseID(c.ID)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("%w: sub, sid and jti must be UUIDs", tokens.ErrInvalidToken)
	}
	if id.org, ok1 = ParseID(c.Org); !ok1 {
		return nil, fmt.Errorf("%w: org must be a UUID", tokens.ErrInvalidToken)
	}
	if !c.AuthTime.IsZero() {
		id.authTime = c.AuthTime.UnixMicro()
	}
	until := c.ExpiresAt.Add(v.leeway)
	id.validUntil = until.UnixNano()
	if ttl := until.Sub(now); ttl > 0 && v.door.seenBefore(raw) {
		v.cache.SetWithTTL(raw, id, 1, ttl)
	}
	return id, nil
}
