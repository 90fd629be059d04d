package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Blocklist snapshots. A starting gateway that loads a recent snapshot of
// the live blocklist and then replays only the stream's tail after it is
// ready in a fraction of a full replay's time. A snapshot holds every entry
// a replay would make (tokens, sessions, users with their not-before,
// org rules), each with the expiry the blocklist keeps (already bounded by
// its message's age), in a compact binary form:
//
//	"RVKSNAP1", then four sections (tokens, sessions, users, rules), each a
//	uvarint count and its entries:
//	  token, session: id [16] | expires int64 (unix ns)
//	  user:           id [16] | notBefore int64 (unix µs) | expires int64
//	  rule:           org [16] | role length uvarint | role | authBefore int64 (unix µs) | expires int64
//
// Integers are big-endian. Entries of a snapshot are applied as a replay
// applies events: idempotent, in any order, so a snapshot that holds a
// little more than its stamped sequence (entries applied while it was
// written) and a tail replayed over it give exactly the full replay.

const snapshotMagic = "RVKSNAP1"

// snapshotEntries is a parsed snapshot, checked whole before any of it is
// applied.
type snapshotEntries struct {
	tokens, sessions []idExpiry
	users            []userSnap
	rules            []ruleSnap
}

type idExpiry struct {
	id      ID
	expires int64
}

type userSnap struct {
	id ID
	userEntry
}

type ruleSnap struct {
	org ID
	orgRule
}

// WriteSnapshot writes the blocklist's live entries at now to w.
func (b *Blocklist) WriteSnapshot(w io.Writer, now time.Time) error {
	n := now.UnixNano()
	var e snapshotEntries
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.RLock()
		for id, exp := range s.tokens {
			if exp > n {
				e.tokens = append(e.tokens, idExpiry{id, exp})
			}
		}
		for id, exp := range s.sessions {
			if exp > n {
				e.sessions = append(e.sessions, idExpiry{id, exp})
			}
		}
		for id, u := range s.users {
			if u.expires > n {
				e.users = append(e.users, userSnap{id, u})
			}
		}
		for org, rules := range *s.orgs.Load() {
			for _, r := range rules {
				if r.expires > n {
					e.rules = append(e.rules, ruleSnap{org, r})
				}
			}
		}
		s.mu.RUnlock()
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var buf [binary.MaxVarintLen64 + 32]byte
	put := func(p []byte) { _, _ = bw.Write(p) }
	count := func(k int) { put(binary.AppendUvarint(buf[:0], uint64(k))) }
	i64 := func(v int64) { put(binary.BigEndian.AppendUint64(buf[:0], uint64(v))) }
	put([]byte(snapshotMagic))
	for _, list := range [][]idExpiry{e.tokens, e.sessions} {
		count(len(list))
		for _, x := range list {
			put(x.id[:])
			i64(x.expires)
		}
	}
	count(len(e.users))
	for _, u := range e.users {
		put(u.id[:])
		i64(u.notBefore)
		i64(u.expires)
	}
	count(len(e.rules))
	for _, r := range e.rules {
		put(r.org[:])
		count(len(r.role))
		put([]byte(r.role))
		i64(r.authBefore)
		i64(r.expires)
	}
	return bw.Flush()
}

// errSnapshot is wrapped by every error of a snapshot that cannot be read.
var errSnapshot = errors.New("malformed blocklist snapshot")

// maxSnapshotEntries bounds a snapshot's counts, so that a corrupt count
// does not ask for the machine's memory.
const maxSnapshotEntries = 100_000_000

// snapshotVisitor takes a snapshot's entries as scanSnapshot reads them.
type snapshotVisitor struct {
	token, session func(idExpiry)
	user           func(userSnap)
	rule           func(ruleSnap)
}

// scanSnapshot reads a snapshot from r, handing each entry to v as it goes:
// a caller that must not act on part of a snapshot collects them where
// nothing sees them until scanSnapshot has returned nil. Errors wrap
// errSnapshot.
func scanSnapshot(r io.Reader, v snapshotVisitor) error {
	br := bufio.NewReaderSize(r, 1<<16)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return fmt.Errorf("%w: no magic", errSnapshot)
	}
	var fail error
	count := func() int {
		n, err := binary.ReadUvarint(br)
		if err != nil || n > maxSnapshotEntries {
			fail = errors.Join(fail, fmt.Errorf("%w: bad count", errSnapshot))
			return 0
		}
		return int(n)
	}
	var b8 [8]byte
	i64 := func() int64 {
		if _, err := io.ReadFull(br, b8[:]); err != nil {
			fail = errors.Join(fail, fmt.Errorf("%w: truncated", errSnapshot))
		}
		return int64(binary.BigEndian.Uint64(b8[:]))
	}
	id := func() (x ID) {
		if _, err := io.ReadFull(br, x[:]); err != nil {
			fail = errors.Join(fail, fmt.Errorf("%w: truncated", errSnapshot))
		}
		return x
	}
	for _, visit := range []func(idExpiry){v.token, v.session} {
		n := count()
		for i := 0; i < n && fail == nil; i++ {
			x := idExpiry{id(), i64()}
			if fail == nil {
				visit(x)
			}
		}
	}
	n := count()
	for i := 0; i < n && fail == nil; i++ {
		u := userSnap{id: id()}
		u.notBefore, u.expires = i64(), i64()
		if fail == nil {
			v.user(u)
		}
	}
	n = count()
	for i := 0; i < n && fail == nil; i++ {
		r := ruleSnap{org: id()}
		role := make([]byte, min(count(), 64))
		if _, err := io.ReadFull(br, role); err != nil {
			fail = errors.Join(fail, fmt.Errorf("%w: truncated", errSnapshot))
		}
		r.role = string(role)
		r.authBefore, r.expires = i64(), i64()
		if fail == nil {
			v.rule(r)
		}
	}
	if fail == nil {
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			// A read error here is the store's: its checksum, checked at
			// the end of the object.
			fail = fmt.Errorf("%w: trailing bytes or unreadable end: %v", errSnapshot, err)
		}
	}
	return fail
}

// loadSnapshot reads a snapshot from r into a blocklist of its own, keeping
// the entries live at now, and returns it: nothing of a snapshot that turns
// out malformed (or fails its checksum at its end) is ever in a blocklist
// a gateway decides with.
func loadSnapshot(r io.Reader, now time.Time) (*Blocklist, int, error) {
	b := NewBlocklist()
	n := now.UnixNano()
	added := 0
	err := scanSnapshot(r, snapshotVisitor{
		token: func(x idExpiry) {
			if x.expires > n {
				b.add(x.id, time.Unix(0, x.expires), now, func(s *shard) map[ID]int64 { return s.tokens })
				added++
			}
		},
		session: func(x idExpiry) {
			if x.expires > n {
				b.add(x.id, time.Unix(0, x.expires), now, func(s *shard) map[ID]int64 { return s.sessions })
				added++
			}
		},
		user: func(u userSnap) {
			if u.expires > n {
				b.AddUser(u.id, time.UnixMicro(u.notBefore), time.Unix(0, u.expires), now)
				added++
			}
		},
		rule: func(r ruleSnap) {
			if r.expires > n {
				b.AddOrgRule(r.org, r.role, time.UnixMicro(r.authBefore), time.Unix(0, r.expires), now)
				added++
			}
		},
	})
	if err != nil {
		return nil, 0, err
	}
	return b, added, nil
}

// adopt takes the entries of from, a blocklist nobody else holds, into b,
// which must be empty (a starting gateway's, before its feed applies
// anything): the maps move, nothing is copied.
func (b *Blocklist) adopt(from *Blocklist) {
	for i := range b.shards {
		s, o := &b.shards[i], &from.shards[i]
		s.mu.Lock()
		s.tokens, s.sessions, s.users = o.tokens, o.sessions, o.users
		s.orgs.Store(o.orgs.Load())
		s.mu.Unlock()
	}
	b.size.Store(from.size.Load())
	b.rules.Store(from.rules.Load())
}
