package gateway

import (
	"crypto/rand"
	"runtime"
	"sync"
	"testing"
	"time"
)

func randomID() ID {
	var id ID
	_, _ = rand.Read(id[:])
	return id
}

// TestBlocklistKeepsEveryEntry inserts 1M entries from many goroutines and
// checks every one: the blocklist must never drop a live entry.
func TestBlocklistKeepsEveryEntry(t *testing.T) {
	t.Parallel()
	const n, workers = 1_000_000, 16
	b := NewBlocklist()
	now := time.Now()
	exp := now.Add(5 * time.Minute)
	ids := make([]ID, n)
	for i := range ids {
		ids[i] = randomID()
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				switch i % 3 {
				case 0:
					b.AddSession(ids[i], exp, now)
				case 1:
					b.AddToken(ids[i], exp, now)
				default:
					b.AddUser(ids[i], now.Truncate(time.Second).Add(time.Second), exp, now)
				}
			}
		}()
	}
	wg.Wait()
	if b.Len() != n {
		t.Fatalf("Len %d, want %d", b.Len(), n)
	}
	var zero ID
	ns := now.UnixNano()
	iat := now.Unix() // before the users' not_before
	missing := 0
	for i, id := range ids {
		var revoked bool
		switch i % 3 {
		case 0:
			revoked, _ = b.Revoked(zero, id, zero, iat, ns)
		case 1:
			revoked, _ = b.Revoked(id, zero, zero, iat, ns)
		default:
			revoked, _ = b.Revoked(zero, zero, id, iat, ns)
		}
		if !revoked {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d entries missing", missing, n)
	}
	// A token of an unrelated id is not revoked.
	if r, _ := b.Revoked(randomID(), randomID(), randomID(), iat, ns); r {
		t.Fatal("unrelated token revoked")
	}
}

func TestBlocklistExpiryAndMerge(t *testing.T) {
	t.Parallel()
	b := NewBlocklist()
	now := time.Now()
	sid, sub, gone := randomID(), randomID(), randomID()
	b.AddSession(sid, now.Add(time.Minute), now)
	b.AddSession(gone, now.Add(-time.Second), now) // already expired: ignored
	nb := now.Truncate(time.Second).Add(time.Second)
	b.AddUser(sub, nb, now.Add(time.Minute), now)
	b.AddUser(sub, nb.Add(-time.Hour), now.Add(30*time.Second), now) // older: keeps the later not_before and expiry
	var zero ID
	if r, _ := b.Revoked(zero, gone, zero, 0, now.UnixNano()); r {
		t.Fatal("an expired entry was added")
	}
	if r, _ := b.Revoked(zero, zero, sub, nb.UnixMicro()-1, now.Add(45*time.Second).UnixNano()); !r {
		t.Fatal("merged user entry lost its later not_before or expiry")
	}
	if r, _ := b.Revoked(zero, zero, sub, nb.UnixMicro(), now.UnixNano()); r {
		t.Fatal("a token issued at not_before is revoked")
	}
	// After expiry the entries stop applying, and a sweep removes them.
	later := now.Add(2 * time.Minute)
	if r, _ := b.Revoked(zero, sid, zero, 0, later.UnixNano()); r {
		t.Fatal("an expired session entry still applies")
	}
	if removed := b.Sweep(later); removed != 2 || b.Len() != 0 {
		t.Fatalf("sweep removed %d, %d left", removed, b.Len())
	}
}

// TestUserNotBeforeIsExactToTheMicrosecond: a user entry refuses exactly
// the tokens whose iat is before its not-before, read to the microsecond,
// however many revocations share a second; a not-before with nanoseconds
// covers the microsecond it falls in.
func TestUserNotBeforeIsExactToTheMicrosecond(t *testing.T) {
	t.Parallel()
	now := time.Now()
	sec := now.Truncate(time.Second)
	for _, tc := range []struct {
		name      string
		notBefore []time.Time // applied in this order
		iat       time.Time
		revoked   bool
	}{
		{"a microsecond before", []time.Time{sec.Add(400 * time.Millisecond)}, sec.Add(400*time.Millisecond - time.Microsecond), true},
		{"at not_before", []time.Time{sec.Add(400 * time.Millisecond)}, sec.Add(400 * time.Millisecond), false},
		{"a microsecond after", []time.Time{sec.Add(400 * time.Millisecond)}, sec.Add(400*time.Millisecond + time.Microsecond), false},
		{"between two in one second", []time.Time{sec.Add(100 * time.Millisecond), sec.Add(900 * time.Millisecond)}, sec.Add(500 * time.Millisecond), true},
		{"between two, applied out of order", []time.Time{sec.Add(900 * time.Millisecond), sec.Add(100 * time.Millisecond)}, sec.Add(500 * time.Millisecond), true},
		{"after both", []time.Time{sec.Add(100 * time.Millisecond), sec.Add(900 * time.Millisecond)}, sec.Add(900*time.Millisecond + time.Microsecond), false},
		{"in the microsecond of a nanosecond not_before", []time.Time{sec.Add(400*time.Millisecond + 500)}, sec.Add(400 * time.Millisecond), true},
		{"after the microsecond of a nanosecond not_before", []time.Time{sec.Add(400*time.Millisecond + 500)}, sec.Add(400*time.Millisecond + time.Microsecond), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBlocklist()
			sub := randomID()
			for _, nb := range tc.notBefore {
				b.AddUser(sub, nb, now.Add(time.Minute), now)
			}
			var zero ID
			if r, _ := b.Revoked(zero, zero, sub, tc.iat.UnixMicro(), now.UnixNano()); r != tc.revoked {
				t.Fatalf("revoked %v, want %v", r, tc.revoked)
			}
		})
	}
}

// TestBlocklistSaturatesFarFutureExpiry: an expiry past the nanosecond
// clock's end (2262) neither wraps around nor leaves the count behind.
func TestBlocklistSaturatesFarFutureExpiry(t *testing.T) {
	t.Parallel()
	b := NewBlocklist()
	now := time.Now()
	id, sub := randomID(), randomID()
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	b.AddSession(id, far, now)
	b.AddUser(sub, now, far, now)
	var zero ID
	if r, _ := b.Revoked(zero, id, zero, 0, now.UnixNano()); !r {
		t.Fatal("an entry expiring in 3000 does not apply")
	}
	if b.Len() != 2 {
		t.Fatalf("Len %d, want 2", b.Len())
	}
	if removed := b.Sweep(now.Add(time.Hour)); removed != 0 || b.Len() != 2 {
		t.Fatalf("sweep removed %d, %d left", removed, b.Len())
	}
}

// TestBlocklistMemoryPerEntry measures the heap the blocklist holds per
// entry (the target is 150 bytes or less).
func TestBlocklistMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 500k entries")
	}
	const n = 500_000
	ids := make([]ID, n)
	for i := range ids {
		ids[i] = randomID()
	}
	now := time.Now()
	exp := now.Add(5 * time.Minute)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := NewBlocklist()
	for i, id := range ids {
		if i%2 == 0 {
			b.AddSession(id, exp, now)
		} else {
			b.AddToken(id, exp, now)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("blocklist: %.1f bytes per entry", per)
	if per > 150 {
		t.Fatalf("%.1f bytes per entry, want 150 or less", per)
	}
	runtime.KeepAlive(b)
}
