package sessions

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
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
	// ErrOverloaded says that the work was shed rather than queued for
	// long (password hashing past its queue); the client may retry shortly.
	ErrOverloaded = errors.New("overloaded")
)

// isDataException reports whether PostgreSQL refused a value the client
// sent (SQLSTATE class 22: text that is not valid UTF-8 or holds NUL, a
// number out of range). Validation is meant to catch such input first; this
// keeps anything it missed a 400, never a 503.
func isDataException(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && len(pe.Code) == 5 && pe.Code[:2] == "22"
}

// RateLimitedError says that logins are refused until RetryAfter has passed.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed login attempts; retry after %s", e.RetryAfter.Round(time.Second))
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
