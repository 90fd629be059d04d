package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// The kinds of operation in a history.
const (
	opHeader      = "header"       // the run's parameters (first line)
	opLogin       = "login"        // POST /v1/auth/login
	opRefresh     = "refresh"      // POST /v1/auth/refresh with the session's latest refresh token
	opReuse       = "reuse"        // POST /v1/auth/refresh with a rotated one, past the grace
	opCheck       = "check"        // GET /v1/check at a gateway
	opLogout      = "logout"       // POST /v1/auth/logout
	opRevokeSelf  = "revoke_self"  // DELETE /v1/me/sessions/{id}
	opRevokeAdmin = "revoke_admin" // DELETE /v1/sessions/{id}
	opRevokeUser  = "revoke_user"  // DELETE /v1/users/{id}/sessions
	opRevokeBulk  = "revoke_bulk"  // POST /v1/revocations {org_id, user_id}
	opErase       = "erase"        // identity.v1.user.deleted published (acked)
	opErased      = "erased"       // sessions.v1.user.erased observed
	opCreateUser  = "create_user"  // POST /v1/users
	opFault       = "fault"        // the nemesis: Start → Healed
	opFinal       = "final"        // a fact read at the end (Detail names it)
)

// Op is one line of the history: an operation with its start, end and
// outcome, a fault, or a fact read at the end.
type Op struct {
	Kind   string    `json:"op"`
	Client int       `json:"client,omitempty"`
	Start  time.Time `json:"start,omitzero"`
	End    time.Time `json:"end,omitzero"`
	// Status is the HTTP status; 0 with Err: no answer (refused, reset,
	// timed out): the outcome is unknown.
	Status int    `json:"status,omitempty"`
	Err    string `json:"err,omitempty"`
	// Target is the process that answered or was faulted (sessiond-1,
	// gateway-3, nats-2, postgres, leaf-link).
	Target  string `json:"target,omitempty"`
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
	// Token is an access token's jti (login and refresh: the one issued;
	// check: the one presented), Exp its expiry.
	Token string    `json:"token,omitempty"`
	Exp   time.Time `json:"exp,omitzero"`
	// Event is an erasure request's event id (erase, erased).
	Event string `json:"event,omitempty"`
	// Fault is the nemesis's kind of fault; Healed when its target was
	// back (zero: never).
	Fault  string    `json:"fault,omitempty"`
	Healed time.Time `json:"healed,omitzero"`
	Detail string    `json:"detail,omitempty"`
	// List carries a final fact's ids.
	List []string `json:"list,omitempty"`
	N    int      `json:"n,omitempty"`

	// Line is the op's line in the history file (set when read).
	Line int `json:"-"`
}

// Header is the first line's parameters, which the checker needs.
type Header struct {
	Kind     string    `json:"op"`
	Seed     int64     `json:"seed"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	// Staleness is the gateways' GATEWAY_MAX_STALENESS, Propagation the
	// allowance for a revocation to reach every gateway with no fault
	// active, Grace how long a fault's effects outlive its heal.
	Staleness   time.Duration `json:"staleness_ns"`
	Propagation time.Duration `json:"propagation_ns"`
	Grace       time.Duration `json:"grace_ns"`
	Gateways    []string      `json:"gateways"`
	Plan        string        `json:"plan"` // the fault schedule's digest
}

// recorder writes ops to the history file, one JSON object a line, in the
// order they are handed to it.
type recorder struct {
	mu  sync.Mutex
	w   *bufio.Writer
	f   *os.File
	n   int
	err error
}

func newRecorder(path string, h Header) (*recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	r := &recorder{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	h.Kind = opHeader
	r.write(h)
	return r, r.err
}

func (r *recorder) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		r.err = err
		return
	}
	b = append(b, '\n')
	if _, err := r.w.Write(b); err != nil && r.err == nil {
		r.err = err
	}
}

// add records an op.
func (r *recorder) add(op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.write(op)
}

// count is how many ops were recorded.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *recorder) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = err
	}
	return r.err
}

// readHistory reads a history file: its header and ops.
func readHistory(rd io.Reader) (Header, []Op, error) {
	var h Header
	var ops []Op
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Kind != opHeader {
				return h, nil, fmt.Errorf("line 1: not a soak history header (%v)", err)
			}
			continue
		}
		var op Op
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			return h, nil, fmt.Errorf("line %d: %w", line, err)
		}
		op.Line = line
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		return h, nil, err
	}
	if line == 0 {
		return h, nil, fmt.Errorf("empty history")
	}
	return h, ops, nil
}
