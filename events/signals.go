package events

import (
	"fmt"
	"strings"
	"time"
)

// Signals feed sessiond's OpenID Shared Signals transmitter: what it turns
// into Security Event Tokens for the receivers that subscribe. They are
// internal to this system (not in the public contract; a receiver sees only
// the SETs), written to the outbox in the transaction of the change they
// tell of, and kept in the SIGNALS stream, where every SSF stream is a
// durable consumer. Their subjects name the org (or the SSF stream), so a
// consumer of one org's signals filters by subject.
const (
	// SignalsPrefix is the subject prefix of every signal.
	SignalsPrefix = "signals.v1."
	// signalsOrg + <org> + "." + kind: an org's signals.
	signalsOrg = SignalsPrefix + "org."
	// signalsStream + <stream id>: the signals of one SSF stream
	// (verification, stream-updated).
	signalsStream = SignalsPrefix + "stream."
)

// StreamSignals is the name of the stream of signals.
const StreamSignals = "SIGNALS"

// SignalsMaxAge is how long the SIGNALS stream keeps a signal: a receiver
// may be away (or its stream paused) this long and still get every SET.
const SignalsMaxAge = 7 * 24 * time.Hour

// SignalsStream carries the transmitter's signals.
func SignalsStream() Stream {
	return Stream{Name: StreamSignals, Subjects: []string{SignalsPrefix + ">"}, MaxAge: SignalsMaxAge}
}

// OrgSignals is the subject filter of every signal of org; "" for every
// org's.
func OrgSignals(org string) string {
	if org == "" {
		return signalsOrg + ">"
	}
	return signalsOrg + org + ".>"
}

// StreamSignalsSubject is the subject of the signals of one SSF stream.
func StreamSignalsSubject(streamID string) string { return signalsStream + streamID }

// SessionsSignalSubject is the subject of the SessionsSignal of org, for
// the SQL that writes it.
func SessionsSignalSubject(org string) string { return signalsOrg + org + ".sessions" }

// SessionsSignal tells of the sessions of one org that one transaction
// revoked: one signal, however many sessions, so that a revocation's
// transaction writes one row for the transmitter, not one per session.
type SessionsSignal struct {
	EventID string `json:"event_id"`
	Org     string `json:"org"`
	Reason  Reason `json:"reason"`
	// ActorID is the user who revoked them; "" for the system.
	ActorID string `json:"actor_id,omitempty"`
	// Note is the reason the person acting typed, if any.
	Note      string          `json:"note,omitempty"`
	RevokedAt time.Time       `json:"revoked_at"`
	Sessions  []SignalSession `json:"sessions"`
}

// SignalSession is one revoked session: its id, its user and the user's
// email ("" once erased).
type SignalSession struct {
	SID   string `json:"sid"`
	Sub   string `json:"sub"`
	Email string `json:"email,omitempty"`
}

// Subject implements Event.
func (e SessionsSignal) Subject() string { return SessionsSignalSubject(e.Org) }

// ID implements Event.
func (e SessionsSignal) ID() string { return e.EventID }

// Validate implements Event.
func (e SessionsSignal) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("org", e.Org)
	c.reason(e.Reason)
	if e.ActorID != "" {
		c.uuid("actor_id", e.ActorID)
	}
	c.time("revoked_at", e.RevokedAt)
	if len(e.Sessions) == 0 {
		c.errs = append(c.errs, "sessions must not be empty")
	}
	for _, s := range e.Sessions {
		c.uuid("sessions[].sid", s.SID)
		c.uuid("sessions[].sub", s.Sub)
	}
	return c.err(signalsOrg + "*.sessions")
}

// Account changes a signal tells of.
const (
	AccountDisabled = "disabled"
	AccountEnabled  = "enabled"
	AccountPurged   = "purged" // erased: sent once the erasure has committed
)

// AccountSignal tells that a user's account was disabled, enabled or
// erased.
type AccountSignal struct {
	EventID string `json:"event_id"`
	Org     string `json:"org"`
	Sub     string `json:"sub"`
	// Email is the account's address ("" for one without); a purge's is
	// the one its transaction erases.
	Email   string    `json:"email,omitempty"`
	Change  string    `json:"change"`
	ActorID string    `json:"actor_id,omitempty"`
	At      time.Time `json:"at"`
}

// Subject implements Event.
func (e AccountSignal) Subject() string { return signalsOrg + e.Org + ".account" }

// ID implements Event.
func (e AccountSignal) ID() string { return e.EventID }

// Validate implements Event.
func (e AccountSignal) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("org", e.Org)
	c.uuid("sub", e.Sub)
	switch e.Change {
	case AccountDisabled, AccountEnabled, AccountPurged:
	default:
		c.errs = append(c.errs, fmt.Sprintf("change %q is not disabled, enabled or purged", e.Change))
	}
	if e.ActorID != "" {
		c.uuid("actor_id", e.ActorID)
	}
	c.time("at", e.At)
	return c.err(signalsOrg + "*.account")
}

// Kinds of StreamSignal.
const (
	StreamVerification = "verification"
	StreamUpdated      = "stream-updated"
)

// StreamSignal is a signal to one SSF stream: a verification its receiver
// asked for (State, as the receiver sent it) or a change of its status
// (Status and Reason).
type StreamSignal struct {
	EventID  string    `json:"event_id"`
	StreamID string    `json:"stream_id"`
	Kind     string    `json:"kind"`
	State    string    `json:"state,omitempty"`
	Status   string    `json:"status,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// Subject implements Event.
func (e StreamSignal) Subject() string { return StreamSignalsSubject(e.StreamID) }

// ID implements Event.
func (e StreamSignal) ID() string { return e.EventID }

// Validate implements Event.
func (e StreamSignal) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("stream_id", e.StreamID)
	switch e.Kind {
	case StreamVerification:
	case StreamUpdated:
		if e.Status == "" {
			c.errs = append(c.errs, "status is required for stream-updated")
		}
	default:
		c.errs = append(c.errs, fmt.Sprintf("kind %q is not verification or stream-updated", e.Kind))
	}
	c.time("at", e.At)
	return c.err(signalsStream + "*")
}

// DecodeSignal parses a signal's payload by its subject. It returns an
// error wrapping ErrInvalid for a subject that names no signal, malformed
// JSON, a missing or malformed field, or a payload whose org or stream is
// not its subject's.
func DecodeSignal(subject string, data []byte) (Event, error) {
	var (
		e   Event
		err error
	)
	switch rest, ok := strings.CutPrefix(subject, signalsOrg); {
	case ok && strings.HasSuffix(rest, ".sessions"):
		e, err = decodeAs[SessionsSignal](data)
	case ok && strings.HasSuffix(rest, ".account"):
		e, err = decodeAs[AccountSignal](data)
	case strings.HasPrefix(subject, signalsStream):
		e, err = decodeAs[StreamSignal](data)
	default:
		return nil, fmt.Errorf("%w: %q is not a signal's subject", ErrInvalid, subject)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, subject, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.Subject() != subject {
		return nil, fmt.Errorf("%w: %s: the payload belongs on %s", ErrInvalid, subject, e.Subject())
	}
	return e, nil
}

func (e SessionsSignal) reasonOf() Reason { return e.Reason }
