package sessions

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHasherShedsPastItsQueue is the unit rule: slots turns, queue waiters,
// and waiting at most wait.
func TestHasherShedsPastItsQueue(t *testing.T) {
	t.Parallel()
	h := newHasher(DefaultPasswordParams, 2, 1, 50*time.Millisecond, NewMetrics(prometheus.NewRegistry()))
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := h.acquire(ctx); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
	}
	start := time.Now()
	if err := h.acquire(ctx); err == nil || !strings.Contains(err.Error(), "no password hashing turn within") {
		t.Fatalf("a waiter past the wait: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("gave up after %s, before the wait", d)
	}
	h.mu.Lock()
	h.waiting = 1 // the queue is full
	h.mu.Unlock()
	if err := h.acquire(ctx); err == nil || !strings.Contains(err.Error(), "every password hashing turn is taken") {
		t.Fatalf("past the queue: %v", err)
	}
	h.mu.Lock()
	h.waiting = 0
	h.mu.Unlock()
	h.release()
	if err := h.acquire(ctx); err != nil {
		t.Fatalf("a freed turn: %v", err)
	}
}
