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
	if r, _ := b.Revoked(zero, zero, sub, nb.Unix()-1, now.Add(45*time.Second).UnixNano()); !r {
		t.Fatal("merged user entry lost its later not_before or expiry")
	}
	if r, _ := b.Revoked(zero, zero, sub, nb.Unix(), now.UnixNano()); r {
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
