package sessions

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/alexedwards/argon2id"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/events"
)

// Config is the behaviour of the session service.
type Config struct {
	Issuer     string
	Audience   string
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	// ReuseGrace is how long after its rotation a refresh token may still be
	// presented (concurrent tabs, retries) without counting as reuse.
	ReuseGrace time.Duration
	// LoginLimit is the failed logins allowed per account, LoginIPLimit per
	// client IP; past either, every attempt gets 429 until the window has
	// passed.
	LoginLimit   RateLimit
	LoginIPLimit RateLimit
	// Leeway tolerates clock skew when checking exp and nbf. It must not
	// exceed events.RevocationLeeway: a revoked token would then be
	// accepted after its blocklist entry has expired.
	Leeway time.Duration
	// Password hashing cost (argon2id).
	Password argon2id.Params
	// Tracer traces the service's transactions (nil: not traced), each a
	// span in the trace of the request that asked for it.
	Tracer trace.TracerProvider
	// HashConcurrency bounds the password hashes computed at once (each
	// takes Password.Memory); zero means one per CPU. HashQueue is how many
	// more may wait for a turn; past it, or after HashWait, a login gets 503.
	HashConcurrency int
	HashQueue       int
	HashWait        time.Duration
	// Now is the service's clock (nil: time.Now); tests set it.
	Now func() time.Time
}

func (c Config) now() func() time.Time {
	if c.Now != nil {
		return c.Now
	}
	return time.Now
}

// RateLimit is N events per Window.
type RateLimit struct {
	N      int
	Window time.Duration
}

func (r RateLimit) String() string { return fmt.Sprintf("%d/%s", r.N, r.Window) }

// DefaultPasswordParams are OWASP's argon2id minimums (19 MiB, t=2, p=1).
var DefaultPasswordParams = argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.Issuer == "" || c.Audience == "":
		return fmt.Errorf("sessions: issuer and audience are required")
	case c.AccessTTL <= 0 || c.RefreshTTL <= 0:
		return fmt.Errorf("sessions: token TTLs must be positive")
	case c.ReuseGrace < 0:
		return fmt.Errorf("sessions: REFRESH_REUSE_GRACE must not be negative")
	case c.LoginLimit.N <= 0 || c.LoginLimit.Window <= 0:
		return fmt.Errorf("sessions: LOGIN_RATE_LIMIT must be N/duration with N and duration positive")
	case c.LoginIPLimit.N <= 0 || c.LoginIPLimit.Window <= 0:
		return fmt.Errorf("sessions: LOGIN_IP_RATE_LIMIT must be N/duration with N and duration positive")
	case c.Leeway < 0:
		return fmt.Errorf("sessions: TOKEN_LEEWAY must not be negative")
	case c.Leeway > events.RevocationLeeway:
		return fmt.Errorf("sessions: TOKEN_LEEWAY (%s) must not exceed the revocation leeway (%s): a revoked token would be accepted after its blocklist entry expired", c.Leeway, events.RevocationLeeway)
	case c.Password.Memory == 0 || c.Password.Iterations == 0 || c.Password.Parallelism == 0:
		return fmt.Errorf("sessions: password hashing parameters are required")
	case c.HashConcurrency < 0 || c.HashQueue < 0 || c.HashWait < 0:
		return fmt.Errorf("sessions: password hashing bounds must not be negative")
	}
	return nil
}

// hashBounds are the concurrency, queue and wait of password hashing, with
// the defaults filled in: one hash per CPU, a queue of four per CPU, and 2 s
// at most in it (a hash takes tens of milliseconds).
func (c Config) hashBounds() (slots, queue int, wait time.Duration) {
	slots, queue, wait = c.HashConcurrency, c.HashQueue, c.HashWait
	if slots == 0 {
		slots = runtime.GOMAXPROCS(0)
	}
	if queue == 0 {
		queue = 4 * slots
	}
	if wait == 0 {
		wait = 2 * time.Second
	}
	return slots, queue, wait
}

// ParseRateLimit parses the setting name's value "N/duration", e.g. "10/15m".
func ParseRateLimit(name, s string) (RateLimit, error) {
	n, d, ok := strings.Cut(s, "/")
	limit, err1 := strconv.Atoi(n)
	window, err2 := time.ParseDuration(d)
	if !ok || err1 != nil || err2 != nil || limit < 1 || window <= 0 {
		return RateLimit{}, fmt.Errorf("%s: %q must be N/duration, e.g. 10/15m", name, s)
	}
	return RateLimit{N: limit, Window: window}, nil
}
