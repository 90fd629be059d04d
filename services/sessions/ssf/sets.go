package ssf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sessionguard/revoke/events"
)

// Event types (CAEP 1.0, RISC 1.0, SSF 1.0).
const (
	EventSessionRevoked  = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventAccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	EventAccountEnabled  = "https://schemas.openid.net/secevent/risc/event-type/account-enabled"
	EventAccountPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	EventVerification    = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	EventStreamUpdated   = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// eventsSupported is what every stream of this transmitter can carry.
var eventsSupported = []string{EventSessionRevoked, EventAccountDisabled, EventAccountEnabled, EventAccountPurged, EventVerification, EventStreamUpdated}

// set is one Security Event Token to deliver: its jti and compact JWS.
type set struct {
	jti string
	jwt string
}

// revocationText is how a revocation's reason reads in a session-revoked
// event: who initiated it (CAEP's initiating_entity) and what an
// administrator and the user are told (reason_admin, reason_user).
type revocationText struct {
	entity, admin, user string
}

// revocationTexts covers every reason of the contract; reasonText falls
// back for one added later.
var revocationTexts = map[events.Reason]revocationText{
	events.ReasonLogout:          {"user", "The user signed out of this session.", "You signed out."},
	events.ReasonSelfRevoke:      {"user", "The user ended this session from another of their sessions.", "You ended this session."},
	events.ReasonUserRevokeAll:   {"user", "The user signed out of all their other sessions.", "You signed out of your other sessions."},
	events.ReasonTokenRevoke:     {"user", "A token of this session was revoked (RFC 7009).", "You signed out."},
	events.ReasonAdminRevoke:     {"admin", "An administrator revoked this session.", "An administrator ended your session."},
	events.ReasonAdminBulkRevoke: {"admin", "An administrator revoked the sessions of a group of users at once.", "An administrator ended your session."},
	events.ReasonUserDisabled:    {"admin", "An administrator disabled the account.", "Your account has been disabled."},
	events.ReasonRefreshReuse:    {"system", "A refresh token of this session was used twice, a sign of token theft.", "Your session was ended for your security."},
	events.ReasonErasure:         {"system", "The account was erased (a data-erasure request).", "Your account has been deleted."},
	events.ReasonReplaced:        {"policy", "A new sign-in from the same device replaced this session.", "You signed in again on this device."},
	events.ReasonSessionLimit:    {"policy", "The organisation's limit of sessions per user ended the oldest session.", "You signed in on too many devices."},
	events.ReasonIdleTimeout:     {"policy", "The organisation's idle timeout ended this session.", "Your session expired after a period of inactivity."},
	events.ReasonMaxLifetime:     {"policy", "The organisation's maximum session lifetime ended this session.", "Your session reached its maximum length."},
}

func reasonText(r events.Reason) revocationText {
	if t, ok := revocationTexts[r]; ok {
		return t
	}
	return revocationText{"system", "The session was revoked (" + string(r) + ").", "Your session has ended."}
}

// builder turns signals into the SETs of one stream.
type builder struct {
	issuer string
	keys   *Keys
	st     *Stream
	subs   subjectChoices
	// excluded is set when build left a SET out for the stream's subject
	// choices.
	excluded bool
}

// jtiOf is the jti of the i-th SET that the signal eventID makes for the
// stream: the same at every delivery, so a receiver that got a SET before
// a crash recognises it when it comes again (RFC 8935 section 2).
func (b *builder) jtiOf(eventID string, i int) string {
	h := sha256.Sum256([]byte(b.st.ID + "/" + eventID + "/" + strconv.Itoa(i)))
	return hex.EncodeToString(h[:16])
}

// delivers reports whether the stream carries events of type typ.
func (b *builder) delivers(typ string) bool { return slices.Contains(b.st.EventsDelivered, typ) }

// claims is the SET around one event: iss, aud, iat, jti, txn, sub_id and
// events with exactly one member (the profile's rule); never sub or exp
// (SSF 1.0 section 4.1).
func (b *builder) claims(jti, txn string, iat int64, subID map[string]any, typ string, event map[string]any) map[string]any {
	return map[string]any{"iss": b.issuer, "aud": b.st.Aud, "iat": iat, "jti": jti, "txn": txn, "sub_id": subID,
		"events": map[string]any{typ: event}}
}

// userID is the subject identifier of a user: email, or iss_sub once the
// email is gone (an erased account).
func (b *builder) userID(sub, email string) map[string]any {
	if email != "" {
		return map[string]any{"format": "email", "email": email}
	}
	return map[string]any{"format": "iss_sub", "iss": b.issuer, "sub": sub}
}

// build signs the SETs that ev makes for the stream, in order; the subjects
// the receiver removed and the event types it does not take are left out
// (verification and stream-updated always go: SSF 1.0 sections 8.1.4 and
// 8.1.5).
func (b *builder) build(ev events.Event) ([]set, error) {
	var todo []toSign
	b.excluded = false
	excludes := func(es eventSubject) bool {
		if b.subs.excludes(es, b.issuer) {
			b.excluded = true
			return true
		}
		return false
	}
	add := func(i int, txn string, iat int64, subID map[string]any, typ string, event map[string]any) error {
		jti := b.jtiOf(txn, i)
		todo = append(todo, toSign{jti: jti, claims: b.claims(jti, txn, iat, subID, typ, event)})
		return nil
	}
	switch e := ev.(type) {
	case events.SessionsSignal:
		if !b.delivers(EventSessionRevoked) {
			return nil, nil
		}
		t := reasonText(e.Reason)
		admin := t.admin
		if e.ActorID != "" {
			admin += " Actor: user " + e.ActorID + "."
		}
		if e.Note != "" {
			admin += " Reason given: " + e.Note
		}
		at := e.RevokedAt.Unix()
		for i, s := range e.Sessions {
			if excludes(eventSubject{userID: s.Sub, email: s.Email, sessionID: s.SID, orgID: e.Org}) {
				continue
			}
			subID := map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": s.SID},
				"user": b.userID(s.Sub, s.Email), "tenant": map[string]any{"format": "opaque", "id": e.Org}}
			event := map[string]any{"event_timestamp": at, "initiating_entity": t.entity,
				"reason_admin": map[string]string{"en": admin}, "reason_user": map[string]string{"en": t.user}}
			if err := add(i, e.EventID, at, subID, EventSessionRevoked, event); err != nil {
				return nil, err
			}
		}
	case events.AccountSignal:
		typ := map[string]string{events.AccountDisabled: EventAccountDisabled, events.AccountEnabled: EventAccountEnabled,
			events.AccountPurged: EventAccountPurged}[e.Change]
		if !b.delivers(typ) || excludes(eventSubject{userID: e.Sub, email: e.Email, orgID: e.Org}) {
			return nil, nil
		}
		if err := add(0, e.EventID, e.At.Unix(), b.userID(e.Sub, e.Email), typ, map[string]any{}); err != nil {
			return nil, err
		}
	case events.StreamSignal:
		subID := map[string]any{"format": "opaque", "id": b.st.ID}
		var (
			typ   string
			event = map[string]any{}
		)
		switch e.Kind {
		case events.StreamVerification:
			typ = EventVerification
			if e.State != "" {
				event["state"] = e.State
			}
		default:
			typ = EventStreamUpdated
			event["status"] = e.Status
			if e.Reason != "" {
				event["reason"] = e.Reason
			}
		}
		if err := add(0, e.EventID, e.At.Unix(), subID, typ, event); err != nil {
			return nil, err
		}
	}
	return b.keys.signAll(todo)
}

// toSign is a SET's claims, to be signed.
type toSign struct {
	jti    string
	claims map[string]any
}

// signAll signs the SETs of one signal, in order. A signal of many
// sessions (a bulk revocation, a user's every session) is signed on every
// core: an RS256 signature is a millisecond of CPU, the rest of a SET's
// delivery a fraction of one.
func (k *Keys) signAll(todo []toSign) ([]set, error) {
	out := make([]set, len(todo))
	workers := min(len(todo), runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i, s := range todo {
			jwt, err := k.sign(s.claims)
			if err != nil {
				return nil, err
			}
			out[i] = set{jti: s.jti, jwt: jwt}
		}
		return out, nil
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(todo); i = int(next.Add(1) - 1) {
				jwt, err := k.sign(todo[i].claims)
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = set{jti: todo[i].jti, jwt: jwt}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
