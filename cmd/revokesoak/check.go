package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// The invariants the checker holds a history to.
const (
	invRevokedAccepted = "a revocation the API confirmed is refused at every gateway once the gateway is current again"
	invLiveRefused     = "no token that was never revoked is refused by a current gateway"
	invAudit           = "every confirmed revocation has its audit row"
	invErasure         = "every erasure request is confirmed exactly once per delivery, with nothing of the user left"
	invOutbox          = "the outbox drains"
	invRefreshHeads    = "no refresh family ever has two live heads"
	invNo5xx           = "no 5xx outside a fault window"
	invRecovered       = "every fault heals"
	invRevokedInDB     = "a confirmed revocation is durable"
	invReuse           = "a refresh token presented after its rotation and grace is refused"
)

// violation is a broken invariant with the ops that show it.
type violation struct {
	Invariant string
	What      string
	Ops       []Op
}

// issue is how a token came to be: its session, user and expiry.
type issue struct {
	op      Op
	session string
	user    string
	exp     time.Time
}

// sessionInfo is a session as the history knows it.
type sessionInfo struct {
	user  string
	login Op
	// confirmed: the first confirmed revocation covering it (zero End:
	// none); attempted: the earliest start of any operation that may have
	// revoked it (confirmed, unknown, ambiguous), or that leaves its state
	// unknown (an unanswered refresh).
	confirmed    Op
	confirmedAt  time.Time
	attempted    time.Time
	attemptedBy  Op
	erasedBy     string // the erasure request that covers it
	sessionLevel bool   // its confirmed revocation named the session (audit by session)
}

type window struct{ start, end time.Time }

type checker struct {
	h        Header
	ops      []Op
	last     time.Time
	tokens   map[string]issue
	sessions map[string]*sessionInfo
	byUser   map[string][]string
	faults   []Op
	windows  []window
	erased   map[string][]Op // erasure request → its confirmations
	erases   map[string]Op   // erasure request → the request
	out      []violation
}

// check holds a history to every invariant and returns what broke.
func check(h Header, ops []Op) []violation {
	c := &checker{h: h, ops: ops, tokens: map[string]issue{}, sessions: map[string]*sessionInfo{}, byUser: map[string][]string{}, erased: map[string][]Op{}, erases: map[string]Op{}}
	for _, op := range ops {
		c.last = later(c.last, op.Start, op.End, op.Healed)
	}
	c.learn()
	c.cover()
	c.checkOps()
	c.checkErasures()
	c.checkFinal()
	return c.out
}

func later(t time.Time, ts ...time.Time) time.Time {
	for _, x := range ts {
		if x.After(t) {
			t = x
		}
	}
	return t
}

func ok2xx(op Op) bool   { return op.Status >= 200 && op.Status < 300 }
func unknown(op Op) bool { return op.Status == 0 || op.Status >= 500 }
func (c *checker) add(inv, what string, ops ...Op) {
	ops = slices.DeleteFunc(ops, func(o Op) bool { return o.Kind == "" })
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Line < ops[j].Line })
	c.out = append(c.out, violation{Invariant: inv, What: what, Ops: ops})
}

// learn reads the sessions, tokens, faults and erasure confirmations.
func (c *checker) learn() {
	for _, op := range c.ops {
		switch op.Kind {
		case opLogin:
			if ok2xx(op) && op.Session != "" {
				c.sessions[op.Session] = &sessionInfo{user: op.User, login: op}
				c.byUser[op.User] = append(c.byUser[op.User], op.Session)
				c.tokens[op.Token] = issue{op: op, session: op.Session, user: op.User, exp: op.Exp}
			}
		case opRefresh:
			if ok2xx(op) && op.Token != "" {
				c.tokens[op.Token] = issue{op: op, session: op.Session, user: op.User, exp: op.Exp}
			}
		case opFault:
			end := op.Healed
			if end.IsZero() {
				end = c.last
				c.add(invRecovered, fmt.Sprintf("%s of %s never healed", op.Fault, op.Target), op)
			}
			if op.Fault == faultClock {
				continue // a clock step within the leeway must change nothing: it opens no window
			}
			c.faults = append(c.faults, op)
			c.windows = append(c.windows, window{op.Start, end.Add(c.h.Grace)})
		case opErased:
			c.erased[op.Event] = append(c.erased[op.Event], op)
		case opErase:
			c.erases[op.Event] = op
		}
	}
}

// attempt notes an operation that may have revoked s (or left it unknown).
func (c *checker) attempt(s string, op Op) {
	si := c.sessions[s]
	if si == nil {
		return
	}
	if si.attempted.IsZero() || op.Start.Before(si.attempted) {
		si.attempted, si.attemptedBy = op.Start, op
	}
}

// confirm notes a confirmed revocation of s at `at`.
func (c *checker) confirm(s string, op Op, at time.Time, sessionLevel bool) {
	si := c.sessions[s]
	if si == nil {
		return
	}
	c.attempt(s, op)
	if si.confirmedAt.IsZero() || at.Before(si.confirmedAt) {
		si.confirmed, si.confirmedAt, si.sessionLevel = op, at, sessionLevel
	}
}

// userSessions splits a user's sessions by how they stand to an operation
// over [start, end]: signed in before it began (covered), or while it ran
// (it may or may not have covered them).
func (c *checker) userSessions(user string, start, end time.Time) (before, during []string) {
	for _, s := range c.byUser[user] {
		l := c.sessions[s].login
		switch {
		case l.End.Before(start):
			before = append(before, s)
		case l.Start.Before(end):
			during = append(during, s)
		}
	}
	return before, during
}

// cover works out which revocations cover which sessions.
func (c *checker) cover() {
	for _, op := range c.ops {
		switch op.Kind {
		case opLogout, opRevokeSelf, opRevokeAdmin:
			switch {
			case ok2xx(op):
				c.confirm(op.Session, op, op.End, true)
			case unknown(op):
				c.attempt(op.Session, op)
			}
		case opReuse:
			switch {
			case op.Status == 401:
				c.confirm(op.Session, op, op.End, true)
			case ok2xx(op):
				c.add(invReuse, "a refresh token rotated past the grace was accepted", c.sessions[op.Session].loginOp(), op)
				c.attempt(op.Session, op)
			default:
				c.attempt(op.Session, op)
			}
		case opRefresh:
			if !ok2xx(op) {
				c.attempt(op.Session, op) // unanswered: rotated or not; 4xx: checked below
			}
		case opRevokeUser, opRevokeBulk:
			before, during := c.userSessions(op.User, op.Start, op.End)
			for _, s := range during {
				c.attempt(s, op)
			}
			for _, s := range before {
				if ok2xx(op) {
					c.confirm(s, op, op.End, false)
				} else if unknown(op) {
					c.attempt(s, op)
				}
			}
		case opErase:
			if !ok2xx(op) && !unknown(op) {
				continue
			}
			before, during := c.userSessions(op.User, op.Start, op.End)
			conf := c.erased[op.Event]
			for _, s := range append(during, before...) {
				c.attempt(s, op)
			}
			if ok2xx(op) && len(conf) > 0 {
				for _, s := range before {
					c.confirm(s, conf[0], conf[0].End, false)
					if si := c.sessions[s]; si.confirmed.Line == conf[0].Line {
						si.erasedBy = op.Event // the erasure is what revoked it first
					}
				}
			}
		}
	}
}

// deadline is when a revocation confirmed at r must be refused everywhere:
// the propagation allowance after it, pushed past every fault window that
// overlaps the wait (and the allowance again after it).
func (c *checker) deadline(r time.Time) time.Time {
	d := r.Add(c.h.Staleness + c.h.Propagation)
	for changed := true; changed; {
		changed = false
		for _, w := range c.windows {
			if w.start.Before(d) && w.end.After(r) {
				if nd := w.end.Add(c.h.Staleness + c.h.Propagation); nd.After(d) {
					d, changed = nd, true
				}
			}
		}
	}
	return d
}

func (c *checker) inWindow(t time.Time) bool {
	for _, w := range c.windows {
		if !t.Before(w.start) && !t.After(w.end) {
			return true
		}
	}
	return false
}

// faultsDuring are the faults whose windows overlap [from, to].
func (c *checker) faultsDuring(from, to time.Time) []Op {
	var out []Op
	for i, w := range c.windows {
		if w.start.Before(to) && w.end.After(from) {
			out = append(out, c.faults[i])
		}
	}
	return out
}

func (si *sessionInfo) loginOp() Op {
	if si == nil {
		return Op{}
	}
	return si.login
}

// checkOps holds every check and every answer to the invariants about them.
func (c *checker) checkOps() {
	// When each erased user's erasure was first confirmed.
	erasedAt := map[string]Op{}
	for ev, conf := range c.erased {
		if e, ok := c.erases[ev]; ok && len(conf) > 0 {
			if prev, seen := erasedAt[e.User]; !seen || conf[0].End.Before(prev.End) {
				erasedAt[e.User] = conf[0]
			}
		}
	}
	for _, op := range c.ops {
		if (op.Kind != opFault && op.Kind != opFinal && op.Kind != opErased && op.Kind != opErase) && (op.Status >= 500 || op.Status == 0 && op.Err != "") &&
			!c.inWindow(op.Start) && !c.inWindow(op.End) {
			c.add(invNo5xx, fmt.Sprintf("%s at %s answered %d %s with no fault active", op.Kind, op.Target, op.Status, op.Err), op)
		}
		switch op.Kind {
		case opCheck:
			c.checkCheck(op)
		case opRefresh:
			si := c.sessions[op.Session]
			if op.Status == 401 && si != nil && (si.attempted.IsZero() || !si.attempted.Before(op.Start)) {
				c.add(invLiveRefused, "a session nothing revoked could not refresh", si.login, op)
			}
		case opLogin:
			// An erased user signs in no more.
			if conf, ok := erasedAt[op.User]; ok && ok2xx(op) && op.Start.After(conf.End) {
				c.add(invErasure, "an erased user signed in again", c.erases[conf.Event], conf, op)
			}
		}
	}
}

func (c *checker) checkCheck(op Op) {
	is, known := c.tokens[op.Token]
	if !known {
		return
	}
	si := c.sessions[is.session]
	if si == nil {
		return
	}
	switch op.Status {
	case 200:
		if !si.confirmedAt.IsZero() {
			if d := c.deadline(si.confirmedAt); op.Start.After(d) {
				ex := append([]Op{is.op, si.confirmed, op}, c.faultsDuring(si.confirmedAt, op.Start)...)
				c.add(invRevokedAccepted, fmt.Sprintf("%s accepted a token of session %s %s after its revocation was confirmed (due by %s)",
					op.Target, is.session, op.Start.Sub(si.confirmedAt).Round(time.Millisecond), d.Sub(si.confirmedAt).Round(time.Millisecond)), ex...)
			}
		}
	case 401:
		if (si.attempted.IsZero() || !si.attempted.Before(op.End)) && op.End.Before(is.exp) {
			c.add(invLiveRefused, fmt.Sprintf("%s refused a token of session %s that nothing revoked", op.Target, is.session), is.op, op)
		}
	}
}

// checkErasures: every acknowledged request confirmed, once unless a fault
// could have made it delivered twice.
func (c *checker) checkErasures() {
	for _, op := range c.ops {
		if op.Kind != opErase || !ok2xx(op) {
			continue
		}
		conf := c.erased[op.Event]
		switch {
		case len(conf) == 0:
			c.add(invErasure, "an acknowledged erasure request was never confirmed", op)
		case len(conf) > 1 && len(c.faultsDuring(op.Start, conf[len(conf)-1].End)) == 0:
			c.add(invErasure, fmt.Sprintf("confirmed %d times with no fault that could redeliver it", len(conf)), append([]Op{op}, conf...)...)
		}
	}
}

// checkFinal holds the facts read at the end to the invariants.
func (c *checker) checkFinal() {
	facts := map[string]Op{}
	for _, op := range c.ops {
		if op.Kind == opFinal {
			facts[op.Detail] = op
		}
	}
	need := func(name string) (Op, bool) {
		f, ok := facts[name]
		if !ok {
			c.add(invOutbox, "the history has no final fact "+name+": the run did not finish")
		}
		return f, ok
	}
	if f, ok := need("outbox_unsent"); ok && f.N > 0 {
		c.add(invOutbox, fmt.Sprintf("%d outbox rows still unsent at the end", f.N), f)
	}
	if f, ok := need("refresh_heads"); ok && len(f.List) > 0 {
		c.add(invRefreshHeads, fmt.Sprintf("sessions with two or more live refresh tokens: %s", strings.Join(f.List, ", ")), f)
	}
	revoked, okR := need("revoked_sessions")
	audS, okS := need("audited_sessions")
	audU, okU := need("audited_users")
	erasedU, okE := need("erased_users_audited")
	if okR && okS && okU && okE {
		rev, as, au, eu := set(revoked.List), set(audS.List), set(audU.List), set(erasedU.List)
		reported := map[string]bool{} // a user's missing audit, once
		ids := make([]string, 0, len(c.sessions))
		for s := range c.sessions {
			ids = append(ids, s)
		}
		sort.Strings(ids)
		for _, s := range ids {
			si := c.sessions[s]
			if si.confirmedAt.IsZero() {
				continue
			}
			if !rev[s] {
				c.add(invRevokedInDB, "session "+s+" was confirmed revoked but is live in the database", si.login, si.confirmed)
			}
			switch {
			case si.erasedBy != "":
				if !eu[si.user] && !reported[si.user] {
					reported[si.user] = true
					c.add(invAudit, "user "+si.user+" was erased with no user_erased audit row", c.erases[si.erasedBy])
				}
			case si.sessionLevel:
				if !as[s] {
					c.add(invAudit, "session "+s+" was revoked with no audit row", si.confirmed)
				}
			default:
				if !as[s] && !au[si.user] && !reported[si.user] {
					reported[si.user] = true
					c.add(invAudit, "user "+si.user+"'s sessions were revoked with no audit row", si.confirmed)
				}
			}
		}
	}
	for _, op := range c.ops {
		if op.Kind == opFinal && op.Detail == "erased_user_left" && op.N > 0 {
			c.add(invErasure, fmt.Sprintf("%d things of erased user %s left (live sessions, refresh tokens, session metadata)", op.N, op.User), op)
		}
	}
}

func set(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, x := range l {
		m[x] = true
	}
	return m
}

// report prints the violations: each invariant, what broke, and the
// excerpt of the history that shows it (with line numbers).
func report(w io.Writer, seed int64, vs []violation) {
	fmt.Fprintf(w, "%d violations (seed %d; run again with -seed %d)\n", len(vs), seed, seed)
	for i, v := range vs {
		fmt.Fprintf(w, "\n%d. %s\n   %s\n", i+1, v.Invariant, v.What)
		for _, op := range v.Ops {
			b, _ := json.Marshal(op)
			fmt.Fprintf(w, "   line %d: %s\n", op.Line, b)
		}
	}
}
