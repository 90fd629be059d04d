package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Domain errors. Wrap them with %w and a client-safe message; Explain turns
// any error into what a client is told, for the API and the portal alike.
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
	// ErrTooSoon refuses a request made sooner than its interval allows (a
	// Shared Signals verification within min_verification_interval).
	ErrTooSoon = errors.New("too soon")
)

// rateLimitedError says that logins are refused until RetryAfter has passed.
type rateLimitedError struct{ RetryAfter time.Duration }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("too many failed login attempts; retry after %s", e.RetryAfter.Round(time.Second))
}

// Invalid returns an error wrapping ErrInvalid with a client-safe message.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Forbidden returns an error wrapping ErrForbidden with a client-safe message.
func Forbidden(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrForbidden, fmt.Sprintf(format, args...))
}

// domainOr keeps domain errors and turns anything else into ErrUnavailable.
func domainOr(err error, op string) error {
	for _, f := range failures {
		if f.sentinel != nil && errors.Is(err, f.sentinel) {
			return err
		}
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// isDataException reports whether PostgreSQL refused a value the client
// sent (SQLSTATE class 22: text that is not valid UTF-8 or holds NUL, a
// number out of range). Validation is meant to catch such input first; this
// keeps anything it missed a 400, never a 503.
func isDataException(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && len(pe.Code) == 5 && pe.Code[:2] == "22"
}

// Failure is how an error reaches a client: the API answers it as a problem
// document (RFC 9457), the portal as an error page.
type Failure struct {
	Status int
	// Slug names the problem type (urn:sessionguard:problem:<slug>).
	Slug string
	// Detail is what the API says: the error's own client-safe message, or
	// a fixed one where the error's text is not for clients.
	Detail string
	// Message is what a page says, as a sentence.
	Message string
	// RetryAfter, when positive, is sent as Retry-After.
	RetryAfter time.Duration
	// Log is true for failures whose error's full text belongs in the log
	// (never to the client): the service's faults, and input that only the
	// database refused.
	Log bool
}

// LogLevel is the level of the failure's log line: error for the
// service's faults, warn for the rest.
func (f Failure) LogLevel() slog.Level {
	if f.Status >= 500 {
		return slog.LevelError
	}
	return slog.LevelWarn
}

// failure is one row of the table: errors that wrap sentinel (or, with no
// sentinel, that match) are told this way. detail and message "" mean the
// error's own text after the sentinel's (capitalised, for message), so a
// row with match and no sentinel always carries its own detail.
type failure struct {
	sentinel error
	match    func(error) bool
	status   int
	slug     string
	detail   string
	message  string
	retry    time.Duration
	log      bool
}

// failures is the one table from errors to what clients are told; the first
// row that matches wins, and an error that matches none is a 500.
var failures = []failure{
	{match: isRateLimited, status: http.StatusTooManyRequests, slug: "rate-limited",
		detail: "too many failed login attempts; try again later", message: "Too many failed sign-in attempts. Try again later."},
	{sentinel: ErrInvalid, status: http.StatusBadRequest, slug: "invalid-request"},
	{sentinel: ErrUnauthorized, status: http.StatusUnauthorized, slug: "unauthorized"},
	{sentinel: ErrForbidden, status: http.StatusForbidden, slug: "forbidden"},
	{sentinel: ErrNotFound, status: http.StatusNotFound, slug: "not-found"},
	{sentinel: ErrSessionLimit, status: http.StatusConflict, slug: "session_limit"},
	{sentinel: ErrConflict, status: http.StatusConflict, slug: "conflict"},
	{sentinel: ErrTooSoon, status: http.StatusTooManyRequests, slug: "too-soon", retry: time.Second},
	{sentinel: ErrOverloaded, status: http.StatusServiceUnavailable, slug: "overloaded", retry: time.Second,
		detail: "too many sign-ins at once; retry in a second", message: "Too many sign-ins at once. Try again in a second."},
	{match: isDataException, status: http.StatusBadRequest, slug: "invalid-request",
		detail:  "the request holds text or a value that cannot be stored (invalid UTF-8, or a NUL character)",
		message: "The form holds text that cannot be stored (invalid characters).", log: true},
	{sentinel: ErrUnavailable, status: http.StatusServiceUnavailable, slug: "unavailable", retry: time.Second, log: true,
		detail: "the service is temporarily unavailable; retry shortly", message: "The service is temporarily unavailable. Try again in a moment."},
	{match: isDeadline, status: http.StatusServiceUnavailable, slug: "unavailable", retry: time.Second, log: true,
		detail: "the service is temporarily unavailable; retry shortly", message: "The service is temporarily unavailable. Try again in a moment."},
}

func isRateLimited(err error) bool {
	var rl *rateLimitedError
	return errors.As(err, &rl)
}

func isDeadline(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

// Explain tells how err reaches a client, from the one table of failures.
func Explain(err error) Failure {
	for _, f := range failures {
		if (f.sentinel != nil && errors.Is(err, f.sentinel)) || (f.match != nil && f.match(err)) {
			out := Failure{Status: f.status, Slug: f.slug, Detail: f.detail, Message: f.message, RetryAfter: f.retry, Log: f.log}
			if out.Detail == "" { // a sentinel's row: the message it was wrapped with
				out.Detail = strings.TrimPrefix(err.Error(), f.sentinel.Error()+": ")
			}
			if out.Message == "" {
				out.Message = sentence(out.Detail)
			}
			var rl *rateLimitedError
			if errors.As(err, &rl) {
				out.RetryAfter = rl.RetryAfter
				wait := waitText(rl.RetryAfter)
				out.Detail = "too many failed login attempts; try again in " + wait
				out.Message = "Too many failed sign-in attempts. Try again in " + wait + ", or ask an administrator to clear the lockout."
			}
			return out
		}
	}
	return Failure{Status: http.StatusInternalServerError, Slug: "internal", Detail: "internal error", Message: "Something went wrong on our side.", Log: true}
}

// sentence capitalises a detail and ends it with a full stop.
func sentence(d string) string {
	if d == "" {
		return d
	}
	return strings.ToUpper(d[:1]) + d[1:] + "."
}

// waitText says how long a wait is, as a person would: "40 seconds",
// "1 minute", "14 minutes" (rounded up).
func waitText(d time.Duration) string {
	if d < time.Minute {
		n := max(1, int((d+time.Second-1)/time.Second))
		return plural(n, "second")
	}
	return plural(int((d+time.Minute-1)/time.Minute), "minute")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// DomainOr is for the service's other rooms (the Shared Signals
// transmitter): it keeps an error that the table of failures knows and
// makes any other ErrUnavailable, saying op.
func DomainOr(err error, op string) error { return domainOr(err, op) }
