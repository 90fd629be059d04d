package gateway

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/events"
)

// ID is a UUID in binary form: the blocklist's keys.
type ID [16]byte

// ParseID parses a canonical UUID string.
func ParseID(s string) (ID, bool) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return ID{}, false
	}
	return ID(u), true
}

const shards = 64

// Blocklist is the exact set of live revocations: it never drops or evicts a
// live entry. Entries are keyed by token id (jti), session id (sid), user
// (sub, with a not-before time) and org (rules: a role and an auth_time
// bound), and expire at their expires_at, so memory is bounded by the
// revocation rate times the access-token TTL. Applying an entry twice, or
// entries in any order, gives the same set.
type Blocklist struct {
	shards [shards]shard
	size   atomic.Int64
	rules  atomic.Int64 // org rules held: with none, a decision skips their lookup
}

type shard struct {
	mu       sync.RWMutex
	tokens   map[ID]int64 // jti -> expires (unix ns)
	sessions map[ID]int64 // sid -> expires
	users    map[ID]userEntry
	// orgs is copied on every change (under mu) and read without a lock:
	// rules are few and rarely added, and the cached decision reads them on
	// every request.
	orgs atomic.Pointer[map[ID][]orgRule]
}

// orgRule revokes the tokens of an org (of one role, or every role when
// role is "") whose session signed in before authBefore.
type orgRule struct {
	role       string
	authBefore int64 // unix µs: tokens with auth_time below it are revoked
	expires    int64 // unix ns
}

type userEntry struct {
	notBefore int64 // unix µs: tokens with iat below it are revoked
	expires   int64 // unix ns
}

// NewBlocklist returns an empty blocklist.
func NewBlocklist() *Blocklist {
	b := &Blocklist{}
	for i := range b.shards {
		b.shards[i].tokens = map[ID]int64{}
		b.shards[i].sessions = map[ID]int64{}
		b.shards[i].users = map[ID]userEntry{}
		b.shards[i].orgs.Store(&map[ID][]orgRule{})
	}
	return b
}

func (b *Blocklist) shard(id ID) *shard { return &b.shards[id[0]%shards] }

// Apply adds the entry that a revocation event carries; it reports false
// for an event that is not a revocation or names no valid id. Entries that
// have already expired are ignored.
func (b *Blocklist) Apply(ev events.Event, now time.Time) bool {
	switch e := ev.(type) {
	case events.SessionRevoked:
		id, ok := ParseID(e.SID)
		if ok {
			b.AddSession(id, e.ExpiresAt, now)
		}
		return ok
	case events.TokenRevoked:
		id, ok := ParseID(e.JTI)
		if ok {
			b.AddToken(id, e.ExpiresAt, now)
		}
		return ok
	case events.UserRevoked:
		id, ok := ParseID(e.Sub)
		if ok {
			b.AddUser(id, e.NotBefore, e.ExpiresAt, now)
		}
		return ok
	case events.OrgRevoked:
		id, ok := ParseID(e.Org)
		if ok {
			b.AddOrgRule(id, e.Role, e.AuthBefore, e.ExpiresAt, now)
		}
		return ok
	}
	return false
}

func (b *Blocklist) add(id ID, expires, now time.Time, m func(*shard) map[ID]int64) {
	if !expires.After(now) {
		return
	}
	exp := unixNano(expires)
	s := b.shard(id)
	s.mu.Lock()
	mm := m(s)
	old, ok := mm[id]
	if !ok {
		b.size.Add(1)
	}
	if !ok || exp > old {
		mm[id] = exp
	}
	s.mu.Unlock()
}

// AddSession revokes every token of a session until expires.
func (b *Blocklist) AddSession(sid ID, expires, now time.Time) {
	b.add(sid, expires, now, func(s *shard) map[ID]int64 { return s.sessions })
}

// AddToken revokes one token until expires.
func (b *Blocklist) AddToken(jti ID, expires, now time.Time) {
	b.add(jti, expires, now, func(s *shard) map[ID]int64 { return s.tokens })
}

// AddUser revokes every token of a user issued before notBefore, until
// expires. Of several entries for one user the latest not-before and the
// latest expiry hold: both grow with the revocation time.
func (b *Blocklist) AddUser(sub ID, notBefore, expires, now time.Time) {
	if !expires.After(now) {
		return
	}
	e := userEntry{notBefore: notBefore.UnixMicro(), expires: unixNano(expires)}
	if notBefore.Nanosecond()%1000 != 0 { // iat is read to the µs: iat < ceil(nb) ⟺ iat < nb
		e.notBefore++
	}
	s := b.shard(sub)
	s.mu.Lock()
	old, ok := s.users[sub]
	if !ok {
		b.size.Add(1)
	}
	s.users[sub] = userEntry{notBefore: max(old.notBefore, e.notBefore), expires: max(old.expires, e.expires)}
	s.mu.Unlock()
}

// AddOrgRule revokes, until expires, every token of org (of role; of every
// role when role is "") whose auth_time is before authBefore. A rule that
// another of the same role covers (a later bound that lasts as long) is
// not kept; one that covers others replaces them.
func (b *Blocklist) AddOrgRule(org ID, role string, authBefore, expires, now time.Time) {
	if !expires.After(now) {
		return
	}
	r := orgRule{role: role, authBefore: authBefore.UnixMicro(), expires: unixNano(expires)}
	if authBefore.Nanosecond()%1000 != 0 { // auth_time is read to the µs: at < ceil(ab) ⟺ at < ab
		r.authBefore++
	}
	s := b.shard(org)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := *s.orgs.Load()
	rules := cur[org]
	for _, o := range rules {
		if o.role == r.role && o.authBefore >= r.authBefore && o.expires >= r.expires {
			return // covered already
		}
	}
	keep := make([]orgRule, 0, len(rules)+1)
	for _, o := range rules {
		if o.role == r.role && r.authBefore >= o.authBefore && r.expires >= o.expires {
			b.size.Add(-1)
			b.rules.Add(-1)
			continue // the new rule covers it
		}
		keep = append(keep, o)
	}
	next := make(map[ID][]orgRule, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[org] = append(keep, r)
	s.orgs.Store(&next)
	b.size.Add(1)
	b.rules.Add(1)
}

// RuleRevoked reports whether an org rule revokes a token of org and role
// whose session signed in at authTime (unix µs; 0 for a token without
// auth_time, which every rule of its org covers) at now (unix ns).
func (b *Blocklist) RuleRevoked(org ID, role string, authTime, now int64) bool {
	if b.rules.Load() == 0 {
		return false
	}
	for _, r := range (*b.shard(org).orgs.Load())[org] {
		if r.expires > now && (r.role == "" || r.role == role) && authTime < r.authBefore {
			return true
		}
	}
	return false
}

// Revoked reports whether a token is revoked at now (unix ns): by its jti,
// its session, or its user's not-before (iat in unix µs), and which, as the
// reason of gateway_decisions_total (revoked_token, revoked_session,
// revoked_user).
func (b *Blocklist) Revoked(jti, sid, sub ID, iat, now int64) (bool, string) {
	if exp, ok := b.lookup(jti, func(s *shard) map[ID]int64 { return s.tokens }); ok && exp > now {
		return true, reasonRevokedToken
	}
	if exp, ok := b.lookup(sid, func(s *shard) map[ID]int64 { return s.sessions }); ok && exp > now {
		return true, reasonRevokedSession
	}
	s := b.shard(sub)
	s.mu.RLock()
	u, ok := s.users[sub]
	s.mu.RUnlock()
	if ok && u.expires > now && iat < u.notBefore {
		return true, reasonRevokedUser
	}
	return false, ""
}

func (b *Blocklist) lookup(id ID, m func(*shard) map[ID]int64) (int64, bool) {
	s := b.shard(id)
	s.mu.RLock()
	exp, ok := m(s)[id]
	s.mu.RUnlock()
	return exp, ok
}

// unixNano is t in unix nanoseconds, saturated where int64 ends (the year
// 2262) instead of wrapping around to a time in the past.
func unixNano(t time.Time) int64 {
	if t.After(maxTime) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

var maxTime = time.Unix(0, math.MaxInt64)

// Len is the number of entries held, live or expired but not yet swept.
func (b *Blocklist) Len() int { return int(b.size.Load()) }

// Sweep deletes expired entries, one shard at a time so no lock is held
// for long, and returns how many it deleted.
func (b *Blocklist) Sweep(now time.Time) int {
	n := now.UnixNano()
	removed := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for k, exp := range s.tokens {
			if exp <= n {
				delete(s.tokens, k)
				removed++
			}
		}
		for k, exp := range s.sessions {
			if exp <= n {
				delete(s.sessions, k)
				removed++
			}
		}
		for k, u := range s.users {
			if u.expires <= n {
				delete(s.users, k)
				removed++
			}
		}
		if cur := *s.orgs.Load(); len(cur) > 0 {
			next, changed := make(map[ID][]orgRule, len(cur)), false
			for k, rules := range cur {
				keep := make([]orgRule, 0, len(rules))
				for _, r := range rules {
					if r.expires > n {
						keep = append(keep, r)
					}
				}
				if gone := len(rules) - len(keep); gone > 0 {
					removed += gone
					b.rules.Add(-int64(gone))
					changed = true
				}
				if len(keep) > 0 {
					next[k] = keep
				}
			}
			if changed {
				s.orgs.Store(&next)
			}
		}
		s.mu.Unlock()
	}
	b.size.Add(-int64(removed))
	return removed
}
