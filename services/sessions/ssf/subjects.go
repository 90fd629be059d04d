package ssf

import (
	"encoding/json"
	"fmt"
	"net/mail"
	"slices"
	"strings"

	"github.com/sessionguard/revoke/services/sessions"
)

// Subject identifiers (RFC 9493, SSF 1.0 section 3). The transmitter names
// a user by email (iss_sub once the account is erased), a session and an
// org (tenant) by opaque ids, and a stream by its id (opaque). A receiver
// may name subjects to remove from or add back to a stream in the formats
// the CAEP interoperability profile requires (email, iss_sub, opaque) and
// as complex subjects of those members.

// simple is a simple subject identifier.
type simple struct {
	Format string `json:"format"`
	Email  string `json:"email,omitempty"`
	Iss    string `json:"iss,omitempty"`
	Sub    string `json:"sub,omitempty"`
	ID     string `json:"id,omitempty"`
}

// key is s in a normal form: "email:<lowercase>", "iss_sub:<iss> <sub>",
// "opaque:<id>".
func (s simple) key() string {
	switch s.Format {
	case "email":
		return "email:" + strings.ToLower(s.Email)
	case "iss_sub":
		return "iss_sub:" + s.Iss + " " + s.Sub
	default:
		return "opaque:" + s.ID
	}
}

// members of a complex subject this transmitter understands.
var complexMembers = []string{"user", "session", "tenant"}

// subject is a subject as a receiver names it: a simple one stands for the
// user it names; a complex one has members among complexMembers.
type subject map[string]simple

// parseSubject reads a receiver's subject identifier. ErrInvalid (400) for
// anything malformed or of a format this transmitter cannot match.
func parseSubject(raw json.RawMessage) (subject, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, sessions.Invalid("subject is required")
	}
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, sessions.Invalid("subject must be a subject identifier object (RFC 9493)")
	}
	if head.Format != "complex" {
		s, err := parseSimple(raw, "subject")
		if err != nil {
			return nil, err
		}
		return subject{"user": s}, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, sessions.Invalid("subject: %v", err)
	}
	out := subject{}
	for name, m := range members {
		if name == "format" {
			continue
		}
		if !slices.Contains(complexMembers, name) {
			return nil, sessions.Invalid("subject: member %q of a complex subject is not one of %s", name, strings.Join(complexMembers, ", "))
		}
		s, err := parseSimple(m, "subject."+name)
		if err != nil {
			return nil, err
		}
		if name != "user" && s.Format != "opaque" {
			return nil, sessions.Invalid("subject.%s must be of format opaque", name)
		}
		out[name] = s
	}
	if len(out) == 0 {
		return nil, sessions.Invalid("subject: a complex subject needs at least one of %s", strings.Join(complexMembers, ", "))
	}
	return out, nil
}

// parseSimple reads one simple subject identifier named name.
func parseSimple(raw json.RawMessage, name string) (simple, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var s simple
	if err := dec.Decode(&s); err != nil {
		return simple{}, sessions.Invalid("%s must be a subject identifier of format email, iss_sub or opaque: %v", name, err)
	}
	switch s.Format {
	case "email":
		a, err := mail.ParseAddress(s.Email)
		if err != nil || a.Address != s.Email || len(s.Email) > 254 || s.Iss != "" || s.Sub != "" || s.ID != "" {
			return simple{}, sessions.Invalid("%s: format email needs email, an address (RFC 5322), and nothing else", name)
		}
	case "iss_sub":
		if s.Iss == "" || s.Sub == "" || len(s.Iss)+len(s.Sub) > 1000 || s.Email != "" || s.ID != "" {
			return simple{}, sessions.Invalid("%s: format iss_sub needs iss and sub, and nothing else", name)
		}
	case "opaque":
		if s.ID == "" || len(s.ID) > 500 || s.Email != "" || s.Iss != "" || s.Sub != "" {
			return simple{}, sessions.Invalid("%s: format opaque needs id, and nothing else", name)
		}
	case "":
		return simple{}, sessions.Invalid("%s: format is required", name)
	default:
		return simple{}, sessions.Invalid("%s: format %q is not supported here (email, iss_sub, opaque, complex)", name, s.Format)
	}
	return s, nil
}

// key is the subject in a normal form, the same for equal subjects.
func (s subject) key() string {
	if len(s) == 1 && s["user"].Format != "" {
		return s["user"].key()
	}
	var parts []string
	for _, m := range complexMembers {
		if v, ok := s[m]; ok {
			parts = append(parts, m+"="+v.key())
		}
	}
	return "complex:" + strings.Join(parts, ";")
}

// eventSubject is what an event is about, for matching: the user (by id
// and, unless erased, email), the session, the org.
type eventSubject struct {
	userID, email, sessionID, orgID string
}

// matches reports whether the receiver's subject s names ev (SSF 1.0
// section 8.1.3.1: every member defined in both must be equal; a user
// matches by email, by iss_sub with this issuer, or by opaque user id).
func (s subject) matches(ev eventSubject, issuer string) bool {
	for name, v := range s {
		switch name {
		case "user":
			switch v.Format {
			case "email":
				if ev.email == "" || !strings.EqualFold(v.Email, ev.email) {
					return false
				}
			case "iss_sub":
				if v.Iss != issuer || v.Sub != ev.userID {
					return false
				}
			default:
				if v.ID != ev.userID {
					return false
				}
			}
		case "session":
			if ev.sessionID == "" || v.ID != ev.sessionID {
				return false
			}
		case "tenant":
			if v.ID != ev.orgID {
				return false
			}
		}
	}
	return true
}

// subjectChoices is a stream's removed and re-added subjects. Every
// subject is in a stream by default; an event is left out when a removed
// subject matches it and no added one does, so a receiver can remove a
// tenant and add back one of its users.
type subjectChoices struct {
	removed, added []subject
}

// excludes reports whether the choices leave ev out.
func (c subjectChoices) excludes(ev eventSubject, issuer string) bool {
	out := false
	for _, s := range c.removed {
		if s.matches(ev, issuer) {
			out = true
			break
		}
	}
	if !out {
		return false
	}
	for _, s := range c.added {
		if s.matches(ev, issuer) {
			return false
		}
	}
	return true
}

// mustJSON is v as JSON, for values that always encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ssf: %T does not encode: %v", v, err))
	}
	return b
}
