package sessions

import (
	"fmt"
	"time"

	"github.com/alexedwards/argon2id"
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
	// LoginLimit failed logins per account and per client IP within
	// LoginWindow; then every attempt gets 429 until the window has passed.
	LoginLimit  int
	LoginWindow time.Duration
	// Leeway tolerates clock skew when checking exp and nbf.
	Leeway time.Duration
	// Password hashing cost (argon2id).
	Password argon2id.Params
}

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
	case c.LoginLimit <= 0 || c.LoginWindow <= 0:
		return fmt.Errorf("sessions: LOGIN_RATE_LIMIT must be N/duration with N and duration positive")
	case c.Password.Memory == 0 || c.Password.Iterations == 0 || c.Password.Parallelism == 0:
		return fmt.Errorf("sessions: password hashing parameters are required")
	}
	return nil
}
