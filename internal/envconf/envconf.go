// Package envconf reads a daemon's configuration from its environment. A
// Reader collects every problem, so that a daemon started with several bad
// settings names them all at once instead of one per attempt.
package envconf

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"
)

// Reader reads settings through getenv and gathers what is wrong with them.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// New returns a reader of getenv (os.Getenv, or a map in tests).
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// Raw is the value of name as it is ("" when unset).
func (r *Reader) Raw(name string) string { return r.getenv(name) }

// String is the value of name, or def when it is unset.
func (r *Reader) String(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

// Required is the value of name; unset, it is a problem that shows example.
func (r *Reader) Required(name, example string) string {
	v := r.getenv(name)
	if v == "" {
		r.Fail(fmt.Errorf("%s is required (e.g. %s)", name, example))
	}
	return v
}

// Duration is name as a Go duration of at least min (def when unset).
func (r *Reader) Duration(name string, def, min time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		r.Fail(fmt.Errorf("%s: %q is not a duration such as 10s, 5m or 720h", name, v))
	case d < min:
		r.Fail(fmt.Errorf("%s: %q must be at least %s", name, v, min))
	}
	return d
}

// Bool is name as true or false (def when unset).
func (r *Reader) Bool(name string, def bool) bool {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.Fail(fmt.Errorf("%s: %q must be true or false", name, v))
	}
	return b
}

// Int is name as an integer from min to max (def when unset).
func (r *Reader) Int(name string, def, min, max int) int {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.Fail(fmt.Errorf("%s: %q must be %d to %d", name, v, min, max))
	}
	return n
}

// Fail records a problem (nil is ignored).
func (r *Reader) Fail(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// OK reports whether no problem was found so far.
func (r *Reader) OK() bool { return len(r.errs) == 0 }

// Err is every problem found, joined; nil when there is none.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// LogLevel reads a log level: debug, info (the default), warn or error,
// or a level relative to one (info+2); anything else is an error, not a
// silent info.
func LogLevel(getenv func(string) string, name string) (slog.Level, error) {
	s := getenv(name)
	if s == "" {
		return slog.LevelInfo, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%s: %q is not a log level (debug, info, warn, error)", name, s)
	}
	return l, nil
}

// URL reads a required absolute http(s) URL, example showing its form.
func (r *Reader) URL(name, example string) string {
	s := r.Required(name, example)
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.Fail(fmt.Errorf("%s: %q is not an http(s) URL (e.g. %s)", name, s, example))
		return ""
	}
	return s
}
