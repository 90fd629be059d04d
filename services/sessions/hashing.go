package sessions

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/prometheus/client_golang/prometheus"
)

// hasher computes argon2id password hashes a bounded number at a time. Each
// hash takes Config.Password.Memory (19 MiB by default) and tens of
// milliseconds of one core, and logins need no authentication, so without a
// bound a burst of them takes the process's memory: 80 at once took sessiond
// to 1.09 GB. A hash waits for one of slots turns in a short queue; past the
// queue, or after wait, the caller gets ErrOverloaded (503 with Retry-After)
// at once rather than piling up.
type hasher struct {
	params  argon2id.Params
	slots   chan struct{}
	queue   int
	wait    time.Duration
	shed    prometheus.Counter
	running prometheus.Gauge

	mu      sync.Mutex
	waiting int
	peak    int // the most turns ever taken at once (tests read it)
}

func newHasher(params argon2id.Params, slots, queue int, wait time.Duration, m *Metrics) *hasher {
	return &hasher{params: params, slots: make(chan struct{}, slots), queue: queue, wait: wait, shed: m.hashesShed, running: m.hashesRunning}
}

// acquire waits for a turn; release must follow a nil error.
func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
	default:
		h.mu.Lock()
		if h.waiting >= h.queue {
			h.mu.Unlock()
			h.shed.Inc()
			return fmt.Errorf("%w: every password hashing turn is taken", ErrOverloaded)
		}
		h.waiting++
		h.mu.Unlock()
		t := time.NewTimer(h.wait)
		defer t.Stop()
		var err error
		select {
		case h.slots <- struct{}{}:
		case <-t.C:
			h.shed.Inc()
			err = fmt.Errorf("%w: no password hashing turn within %s", ErrOverloaded, h.wait)
		case <-ctx.Done():
			err = fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
		h.mu.Lock()
		h.waiting--
		h.mu.Unlock()
		if err != nil {
			return err
		}
	}
	h.mu.Lock()
	h.peak = max(h.peak, len(h.slots))
	h.mu.Unlock()
	h.running.Inc()
	return nil
}

func (h *hasher) release() {
	h.running.Dec()
	<-h.slots
}

// compare checks password against an encoded hash. Errors: ErrOverloaded,
// ErrUnavailable (ctx ended while waiting).
func (h *hasher) compare(ctx context.Context, password, hash string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	ok, err := argon2id.ComparePasswordAndHash(password, hash)
	return ok && err == nil, nil
}

// create hashes a new password. Errors: ErrOverloaded, ErrUnavailable.
func (h *hasher) create(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	hash, err := argon2id.CreateHash(password, &h.params)
	if err != nil {
		return "", fmt.Errorf("%w: hash password: %w", ErrUnavailable, err)
	}
	return hash, nil
}
