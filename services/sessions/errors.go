package sessions

import (
	"errors"
	"fmt"
	"time"
)

// Domain errors. The HTTP layer maps them to problem responses in one place
// (writeError); wrap them with %w and a client-safe message.
var (
	ErrInvalid      = errors.New("invalid input")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrUnavailable  = errors.New("unavailable")
)

// RateLimitedError says that logins are refused until RetryAfter has passed.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed login attempts; retry after %s", e.RetryAfter.Round(time.Second))
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
