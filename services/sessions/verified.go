package sessions

import (
	"sync"
	"time"

	"github.com/sessionguard/revoke/internal/tokens"
)

// verifiedTokens remembers the claims of access tokens whose signature
// sessiond has checked, so that a client making many calls with one token
// (an admin's console, a script revoking thousands of sessions) pays for the
// Ed25519 verification once, not on every call: it was a fifth of
// sessiond's CPU per revocation through HTTP. Only the signature check is
// saved: expiry is checked on every use, and whether the session, the user
// or the token is revoked is still read from PostgreSQL on every call.
//
// Two generations bound its size: when the current one is full it becomes
// the previous one and the oldest is dropped; a hit in the previous
// generation moves the entry back to the current one.
type verifiedTokens struct {
	mu        sync.Mutex
	max       int
	cur, prev map[string]tokens.Claims
}

func newVerifiedTokens(max int) *verifiedTokens {
	return &verifiedTokens{max: max, cur: make(map[string]tokens.Claims)}
}

// get returns raw's claims if raw was verified and is valid at now, with
// leeway as at its verification.
func (v *verifiedTokens) get(raw string, now time.Time, leeway time.Duration) (tokens.Claims, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cur[raw]
	if !ok {
		if c, ok = v.prev[raw]; ok {
			v.putLocked(raw, c)
		}
	}
	if !ok || !now.Before(c.ExpiresAt.Add(leeway)) || (!c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore)) ||
		now.Add(leeway).Before(c.IssuedAt) {
		return tokens.Claims{}, false
	}
	return c, true
}

// put remembers raw's verified claims.
func (v *verifiedTokens) put(raw string, c tokens.Claims) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.putLocked(raw, c)
}

func (v *verifiedTokens) putLocked(raw string, c tokens.Claims) {
	if len(v.cur) >= v.max {
		v.prev, v.cur = v.cur, make(map[string]tokens.Claims, v.max)
	}
	v.cur[raw] = c
}
