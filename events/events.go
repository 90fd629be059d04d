// Package events defines the wire contract between sessiond, the gateways and
// the GDPR erasure pipeline: subjects, streams and JSON payloads. It imports
// the standard library only, so any consumer can take it.
//
// Every event carries an event_id (a UUID) that is also sent as the
// Nats-Msg-Id header, so JetStream drops duplicates; applying any event twice
// or out of order changes nothing.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Subjects.
const (
	SubjectSessionRevoked = "revocations.v1.session"
	SubjectTokenRevoked   = "revocations.v1.token"
	SubjectUserRevoked    = "revocations.v1.user"
	SubjectOrgRevoked     = "revocations.v1.org"
	SubjectUserDeleted    = "identity.v1.user.deleted"
	SubjectUserErased     = "sessions.v1.user.erased"
	// SubjectSessionCreated announces every sign-in, for notifiers ("a new
	// device signed in to your account").
	SubjectSessionCreated = "sessions.v1.session.created"
	// SubjectSessionActivity carries the gateways' last-seen reports to
	// sessiond. It is internal to this system (not in the public contract),
	// best effort, on core NATS outside every stream: a lost report only
	// delays a session's last_active_at.
	SubjectSessionActivity = "gateway.v1.activity"
	// SubjectGatewayApplied carries each gateway's watermark: the highest
	// REVOCATIONS sequence it has applied, on core NATS, promptly after it
	// applies and at least once a second. Every sessiond replica hears every
	// report and answers revocation receipts from them.
	SubjectGatewayApplied = "gateway.v1.applied"
)

// HeaderAwaited, set to "1" on a REVOCATIONS message, says that a caller
// waits for the receipt of the revocation it belongs to: a gateway reports
// its watermark at once after applying it. Progress nobody waits for may be
// reported coalesced (at most every GATEWAY_REPORT_INTERVAL in gatewayd), so
// that thousands of gateways under thousands of revocations a second send
// sessiond a bounded number of reports. A gateway that ignores the header
// and reports after every apply is correct too, only costlier to hear.
const HeaderAwaited = "Revocation-Awaited"

// Gateway states, as a gateway reports them.
const (
	GatewayCurrent       = "current"        // confirmed current within its bound, recently
	GatewayStale         = "stale"          // still deciding, but its last confirmation is overdue
	GatewayFailingClosed = "failing_closed" // answering 503: not confirmed current within its bound
)

// GatewayApplied is one gateway's report of what it has applied. It is a
// status report on core NATS, not a stream event: GatewayID stands for the
// event id, and the latest report of a gateway replaces the ones before.
type GatewayApplied struct {
	GatewayID     string    `json:"gateway_id"`
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	AppliedSeq    uint64    `json:"applied_seq"`
	StreamLastSeq uint64    `json:"stream_last_seq"`
	State         string    `json:"state"`
	At            time.Time `json:"at"`
}

// Subject implements Event.
func (GatewayApplied) Subject() string { return SubjectGatewayApplied }

// ID implements Event: the gateway's id.
func (e GatewayApplied) ID() string { return e.GatewayID }

// Validate implements Event.
func (e GatewayApplied) Validate() error {
	var c checker
	c.uuid("gateway_id", e.GatewayID)
	c.time("started_at", e.StartedAt)
	c.time("at", e.At)
	switch e.State {
	case GatewayCurrent, GatewayStale, GatewayFailingClosed:
	default:
		c.errs = append(c.errs, fmt.Sprintf("state %q is not current, stale or failing_closed", e.State))
	}
	if len(e.Name) > 200 || len(e.Version) > 100 {
		c.errs = append(c.errs, "name (200) or version (100) too long")
	}
	return c.err(e.Subject())
}

// Reason says why a revocation happened.
type Reason string

// The reasons of the contract.
const (
	ReasonLogout        Reason = "logout"
	ReasonSelfRevoke    Reason = "self_revoke"
	ReasonAdminRevoke   Reason = "admin_revoke"
	ReasonUserRevokeAll Reason = "user_revoke_all"
	ReasonRefreshReuse  Reason = "refresh_reuse"
	ReasonUserDisabled  Reason = "user_disabled"
	ReasonErasure       Reason = "erasure"
	// ReasonAdminBulkRevoke is a revocation by rule (POST /v1/revocations).
	ReasonAdminBulkRevoke Reason = "admin_bulk_revoke"
	// ReasonReplaced: a new sign-in from the same device (device.id) ended
	// the device's previous session.
	ReasonReplaced Reason = "replaced"
	// Session policies: revoke_oldest past the cap, idle, over age.
	ReasonSessionLimit Reason = "session_limit"
	ReasonIdleTimeout  Reason = "idle_timeout"
	ReasonMaxLifetime  Reason = "max_lifetime"
	// ReasonTokenRevoke: a token revoked by RFC 7009.
	ReasonTokenRevoke Reason = "token_revoke"
)

// Reasons are the contract's reasons, every one.
var Reasons = []Reason{ReasonLogout, ReasonSelfRevoke, ReasonAdminRevoke, ReasonUserRevokeAll,
	ReasonRefreshReuse, ReasonUserDisabled, ReasonErasure, ReasonAdminBulkRevoke,
	ReasonReplaced, ReasonSessionLimit, ReasonIdleTimeout, ReasonMaxLifetime, ReasonTokenRevoke}

// Valid reports whether r is one of the contract's reasons: what a
// producer may send. A consumer accepts any reason (Decode): the contract
// makes it informational, so that reasons can be added.
func (r Reason) Valid() bool { return slices.Contains(Reasons, r) }

// ErrInvalid is wrapped by every decoding and validation error.
var ErrInvalid = errors.New("invalid event")

// Event is any payload of the contract.
type Event interface {
	// Subject is the NATS subject the event is published on.
	Subject() string
	// ID is the event_id, also the Nats-Msg-Id.
	ID() string
	// Validate returns an error wrapping ErrInvalid when a field is missing or malformed.
	Validate() error
}

// Revocation is an event that revokes access tokens for a while: a
// SessionRevoked, TokenRevoked, UserRevoked or OrgRevoked.
type Revocation interface {
	Event
	// Span is when the revocation was made and until when it applies.
	Span() (revokedAt, expiresAt time.Time)
	// Until is the same revocation applying until expiresAt instead.
	Until(expiresAt time.Time) Revocation
}

// SessionRevoked revokes every access token of one session.
type SessionRevoked struct {
	EventID   string    `json:"event_id"`
	SID       string    `json:"sid"`
	Sub       string    `json:"sub"`
	Org       string    `json:"org"`
	Reason    Reason    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// TokenRevoked revokes one access token by its jti.
type TokenRevoked struct {
	EventID   string    `json:"event_id"`
	JTI       string    `json:"jti"`
	SID       string    `json:"sid"`
	Sub       string    `json:"sub"`
	Org       string    `json:"org"`
	Reason    Reason    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// UserRevoked revokes every access token of a user whose iat is before
// NotBefore, compared to the microsecond. sessiond sets NotBefore after the
// iat of every token it issued the user before, and never issues a token
// for that user with an earlier iat afterwards, by a microsecond at least
// on both sides.
type UserRevoked struct {
	EventID   string    `json:"event_id"`
	Sub       string    `json:"sub"`
	Org       string    `json:"org"`
	NotBefore time.Time `json:"not_before"`
	Reason    Reason    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// OrgRevoked is a rule: every access token of the org (of the role, when
// Role is set; every role when it is empty) whose auth_time is before
// AuthBefore is revoked. A token without auth_time counts as signed in
// before every rule: it was issued by a sessiond that predates them, and a
// refresh gives the session a token that carries it.
type OrgRevoked struct {
	EventID    string    `json:"event_id"`
	Org        string    `json:"org"`
	Role       string    `json:"role"`
	AuthBefore time.Time `json:"auth_before"`
	Reason     Reason    `json:"reason"`
	RevokedAt  time.Time `json:"revoked_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// UserDeleted is the GDPR erasure pipeline's request.
type UserDeleted struct {
	EventID     string    `json:"event_id"`
	UserID      string    `json:"user_id"`
	OrgID       string    `json:"org_id"`
	RequestedAt time.Time `json:"requested_at"`
}

// UserErased confirms that an erasure request has been carried out.
type UserErased struct {
	EventID         string    `json:"event_id"`
	RequestEventID  string    `json:"request_event_id"`
	UserID          string    `json:"user_id"`
	SessionsRevoked int       `json:"sessions_revoked"`
	CompletedAt     time.Time `json:"completed_at"`
}

// SessionCreated is a sign-in. NewDevice is true when the user has not
// signed in from that device (its device.id, else its client label) in the
// last 90 days.
type SessionCreated struct {
	EventID    string    `json:"event_id"`
	SessionID  string    `json:"session_id"`
	UserID     string    `json:"user_id"`
	OrgID      string    `json:"org_id"`
	DeviceType string    `json:"device_type"`
	Client     string    `json:"client"`
	IP         *string   `json:"ip"`
	NewDevice  bool      `json:"new_device"`
	CreatedAt  time.Time `json:"created_at"`
}

// Subject implements Event.
func (SessionCreated) Subject() string { return SubjectSessionCreated }

// ID implements Event.
func (e SessionCreated) ID() string { return e.EventID }

// Validate implements Event.
func (e SessionCreated) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("session_id", e.SessionID)
	c.uuid("user_id", e.UserID)
	c.uuid("org_id", e.OrgID)
	if e.DeviceType == "" {
		c.errs = append(c.errs, "device_type is required")
	}
	c.time("created_at", e.CreatedAt)
	return c.err(e.Subject())
}

// SessionActivity reports when sessions were last seen at a gateway.
type SessionActivity struct {
	EventID  string        `json:"event_id"`
	Sessions []SessionSeen `json:"sessions"`
}

// SessionSeen is one session's last request at a gateway.
type SessionSeen struct {
	SID    string    `json:"sid"`
	SeenAt time.Time `json:"seen_at"`
}

// Subject implements Event.
func (SessionActivity) Subject() string { return SubjectSessionActivity }

// ID implements Event.
func (e SessionActivity) ID() string { return e.EventID }

// Validate implements Event.
func (e SessionActivity) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	if len(e.Sessions) == 0 {
		c.errs = append(c.errs, "sessions must not be empty")
	}
	for _, s := range e.Sessions {
		c.uuid("sessions[].sid", s.SID)
		c.time("sessions[].seen_at", s.SeenAt)
	}
	return c.err(e.Subject())
}

// Span implements Revocation.
func (e SessionRevoked) Span() (time.Time, time.Time) { return e.RevokedAt, e.ExpiresAt }

// Until implements Revocation.
func (e SessionRevoked) Until(t time.Time) Revocation { e.ExpiresAt = t; return e }

// Span implements Revocation.
func (e TokenRevoked) Span() (time.Time, time.Time) { return e.RevokedAt, e.ExpiresAt }

// Until implements Revocation.
func (e TokenRevoked) Until(t time.Time) Revocation { e.ExpiresAt = t; return e }

// Span implements Revocation.
func (e UserRevoked) Span() (time.Time, time.Time) { return e.RevokedAt, e.ExpiresAt }

// Until implements Revocation.
func (e UserRevoked) Until(t time.Time) Revocation { e.ExpiresAt = t; return e }

// Span implements Revocation.
func (e OrgRevoked) Span() (time.Time, time.Time) { return e.RevokedAt, e.ExpiresAt }

// Until implements Revocation.
func (e OrgRevoked) Until(t time.Time) Revocation { e.ExpiresAt = t; return e }

// Subject implements Event.
func (SessionRevoked) Subject() string { return SubjectSessionRevoked }

// Subject implements Event.
func (TokenRevoked) Subject() string { return SubjectTokenRevoked }

// Subject implements Event.
func (UserRevoked) Subject() string { return SubjectUserRevoked }

// Subject implements Event.
func (OrgRevoked) Subject() string { return SubjectOrgRevoked }

// Subject implements Event.
func (UserDeleted) Subject() string { return SubjectUserDeleted }

// Subject implements Event.
func (UserErased) Subject() string { return SubjectUserErased }

// ID implements Event.
func (e SessionRevoked) ID() string { return e.EventID }

// ID implements Event.
func (e TokenRevoked) ID() string { return e.EventID }

// ID implements Event.
func (e UserRevoked) ID() string { return e.EventID }

// ID implements Event.
func (e OrgRevoked) ID() string { return e.EventID }

// ID implements Event.
func (e UserDeleted) ID() string { return e.EventID }

// ID implements Event.
func (e UserErased) ID() string { return e.EventID }

type checker struct{ errs []string }

func (c *checker) uuid(name, v string) {
	if !IsUUID(v) {
		c.errs = append(c.errs, name+" must be a UUID")
	}
}

func (c *checker) time(name string, v time.Time) {
	if v.IsZero() {
		c.errs = append(c.errs, name+" is required")
	}
}

// reason checks that an event has a reason; one it does not know is
// accepted (see Reason.Valid), Encode refuses it.
func (c *checker) reason(r Reason) {
	if r == "" {
		c.errs = append(c.errs, "reason is required")
	}
}

func (c *checker) err(subject string) error {
	if len(c.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %v", ErrInvalid, subject, c.errs)
}

// Validate implements Event.
func (e SessionRevoked) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("sid", e.SID)
	c.uuid("sub", e.Sub)
	c.uuid("org", e.Org)
	c.reason(e.Reason)
	c.time("revoked_at", e.RevokedAt)
	c.time("expires_at", e.ExpiresAt)
	return c.err(e.Subject())
}

// Validate implements Event.
func (e TokenRevoked) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("jti", e.JTI)
	c.uuid("sid", e.SID)
	c.uuid("sub", e.Sub)
	c.uuid("org", e.Org)
	c.reason(e.Reason)
	c.time("revoked_at", e.RevokedAt)
	c.time("expires_at", e.ExpiresAt)
	return c.err(e.Subject())
}

// Validate implements Event.
func (e OrgRevoked) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("org", e.Org)
	switch e.Role {
	case "", "user", "org_admin", "global_admin":
	default:
		c.errs = append(c.errs, fmt.Sprintf("role %q is not empty, user, org_admin or global_admin", e.Role))
	}
	c.time("auth_before", e.AuthBefore)
	c.reason(e.Reason)
	c.time("revoked_at", e.RevokedAt)
	c.time("expires_at", e.ExpiresAt)
	return c.err(e.Subject())
}

func (e UserRevoked) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("sub", e.Sub)
	c.uuid("org", e.Org)
	c.time("not_before", e.NotBefore)
	c.reason(e.Reason)
	c.time("revoked_at", e.RevokedAt)
	c.time("expires_at", e.ExpiresAt)
	return c.err(e.Subject())
}

// Validate implements Event.
func (e UserDeleted) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("user_id", e.UserID)
	c.uuid("org_id", e.OrgID)
	c.time("requested_at", e.RequestedAt)
	return c.err(e.Subject())
}

// Validate implements Event.
func (e UserErased) Validate() error {
	var c checker
	c.uuid("event_id", e.EventID)
	c.uuid("request_event_id", e.RequestEventID)
	c.uuid("user_id", e.UserID)
	if e.SessionsRevoked < 0 {
		c.errs = append(c.errs, "sessions_revoked must not be negative")
	}
	c.time("completed_at", e.CompletedAt)
	return c.err(e.Subject())
}

// Encode validates e and returns its JSON payload.
func Encode(e Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if r, ok := e.(interface{ reasonOf() Reason }); ok && !r.reasonOf().Valid() {
		return nil, fmt.Errorf("%w: %s: reason %q is not one of the contract's", ErrInvalid, e.Subject(), string(r.reasonOf()))
	}
	return json.Marshal(e)
}

func (e SessionRevoked) reasonOf() Reason { return e.Reason }
func (e TokenRevoked) reasonOf() Reason   { return e.Reason }
func (e UserRevoked) reasonOf() Reason    { return e.Reason }
func (e OrgRevoked) reasonOf() Reason     { return e.Reason }

// Decode parses the payload of a message on subject. It returns an error
// wrapping ErrInvalid for an unknown subject (or version), malformed JSON, or
// a missing or malformed field. Unknown fields are ignored, so producers may
// add fields without breaking consumers.
func Decode(subject string, data []byte) (Event, error) {
	var e Event
	var err error
	switch subject {
	case SubjectSessionRevoked:
		e, err = decodeAs[SessionRevoked](data)
	case SubjectTokenRevoked:
		e, err = decodeAs[TokenRevoked](data)
	case SubjectUserRevoked:
		e, err = decodeAs[UserRevoked](data)
	case SubjectOrgRevoked:
		e, err = decodeAs[OrgRevoked](data)
	case SubjectUserDeleted:
		e, err = decodeAs[UserDeleted](data)
	case SubjectUserErased:
		e, err = decodeAs[UserErased](data)
	case SubjectSessionActivity:
		e, err = decodeAs[SessionActivity](data)
	case SubjectSessionCreated:
		e, err = decodeAs[SessionCreated](data)
	case SubjectGatewayApplied:
		e, err = decodeAs[GatewayApplied](data)
	default:
		return nil, fmt.Errorf("%w: unknown subject %q", ErrInvalid, subject)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, subject, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

func decodeAs[T Event](data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}

// IsUUID reports whether s is a UUID in its canonical 36-character text form.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
