// Package httpx is the HTTP plumbing shared by the services: JSON in and out,
// RFC 9457 problem responses, request ids, access logs, panic recovery and
// client addresses.
package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ProblemTypeBase prefixes every problem type URI.
const ProblemTypeBase = "urn:sessionguard:problem:"

// Problem is an RFC 9457 problem document. RequestID (an extension member)
// is the request's X-Request-Id, so that a user's report of an error leads
// an operator to its log line.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id,omitempty"`
}

// WriteProblem writes a problem+json response; slug names the problem type.
// The request id is the one RequestIDMiddleware set on the response.
func WriteProblem(w http.ResponseWriter, status int, slug, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	id := w.Header().Get("X-Request-Id")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: ProblemTypeBase + slug, Title: http.StatusText(status), Status: status, Detail: detail, RequestID: id})
}

// SetRetryAfter sets Retry-After to d in whole seconds, rounded up, at
// least 1.
func SetRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int((d+time.Second-1)/time.Second))))
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// MaxBody bounds a JSON request body.
const MaxBody = 64 << 10

// ErrBadRequest is wrapped by every DecodeJSON error; the message is safe to
// show to the client.
var ErrBadRequest = errors.New("bad request")

// DecodeJSON reads exactly one JSON object from r's body into dst. Unknown
// fields, trailing data, a body over MaxBody and a non-JSON content type are
// errors wrapping ErrBadRequest.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("%w: Content-Type must be application/json", ErrBadRequest)
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return fmt.Errorf("%w: body larger than %d bytes", ErrBadRequest, MaxBody)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: body must be a JSON object", ErrBadRequest)
		case errors.As(err, &se):
			return fmt.Errorf("%w: malformed JSON at offset %d", ErrBadRequest, se.Offset)
		case errors.As(err, &te):
			return fmt.Errorf("%w: field %q must be %s", ErrBadRequest, te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return fmt.Errorf("%w: %s", ErrBadRequest, strings.TrimPrefix(err.Error(), "json: "))
		default:
			return fmt.Errorf("%w: malformed JSON", ErrBadRequest)
		}
	}
	if dec.More() {
		return fmt.Errorf("%w: body must hold a single JSON object", ErrBadRequest)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body must hold a single JSON object", ErrBadRequest)
	}
	return nil
}

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the request id that the RequestID middleware set.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// RequestIDMiddleware takes a sane incoming X-Request-Id or makes one, puts it
// in the context and echoes it in the response.
func RequestIDMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := EnsureRequestID(w, r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// EnsureRequestID returns r's X-Request-Id when it is sane (at most 64 of
// [A-Za-z0-9._-]), else a new one, which it sets on r (for a proxied
// upstream); either way the response carries it.
func EnsureRequestID(w http.ResponseWriter, r *http.Request) string {
	if v := r.Header[headerRequestID]; len(v) > 0 && saneID(v[0]) {
		w.Header()[headerRequestID] = v[:1:1]
		return v[0]
	}
	v := []string{newRequestID()} // one slice for both: a later Add copies it
	r.Header[headerRequestID] = v
	w.Header()[headerRequestID] = v
	return v[0]
}

const headerRequestID = "X-Request-Id" // canonical: set without canonicalising

// A new request id is this process's random prefix (64 bits) and a
// counter: unique across processes without reading the system's random
// source on every request (the gateway's hot path).
var (
	requestIDPrefix = func() string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	requestIDs atomic.Uint64
)

func newRequestID() string {
	var b [16 + 1 + 13]byte
	n := copy(b[:], requestIDPrefix)
	b[n] = '-'
	return string(strconv.AppendUint(b[:n+1], requestIDs.Add(1), 36))
}

func saneID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '-' || c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// StatusRecorder remembers the status code written through it.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

// WriteHeader implements http.ResponseWriter.
func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Code is the status answered: 200 when the handler wrote nothing.
func (s *StatusRecorder) Code() int {
	if s.Status == 0 {
		return http.StatusOK
	}
	return s.Status
}

// recorder is w as a StatusRecorder: w itself when a middleware further out
// records it already, so that a request's span, log line and metrics share
// one.
func recorder(w http.ResponseWriter) *StatusRecorder {
	if rec, ok := w.(*StatusRecorder); ok {
		return rec
	}
	return &StatusRecorder{ResponseWriter: w}
}

// Recover turns a panic into a 500 problem response and logs it; the client
// never sees a stack trace.
func Recover(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "panic", "panic", fmt.Sprint(v), "request_id", RequestID(r.Context()), "path", r.URL.Path)
					WriteProblem(w, http.StatusInternalServerError, "internal", "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// ClientIP returns the client's address: the peer address, or, when the
// peer is one of trusted (a reverse proxy), the right-most address in
// X-Forwarded-For that is not itself trusted.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if !inAny(peer, trusted) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer
		}
		a = a.Unmap()
		if !inAny(a, trusted) {
			return a
		}
	}
	return peer
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses a comma-separated list of CIDRs or addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("bad address or CIDR %q", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// BearerToken extracts the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(h[7:])
	return tok, tok != ""
}
