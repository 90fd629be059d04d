package ssf

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions"
)

const issuer = "https://sessiond.example"

func mustSubject(t *testing.T, raw string) subject {
	t.Helper()
	s, err := parseSubject(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return s
}

func TestSubjectsMatchAsSSFSays(t *testing.T) {
	ev := eventSubject{userID: "u-1", email: "Alice@Example.com", sessionID: "s-1", orgID: "o-1"}
	erased := eventSubject{userID: "u-1", sessionID: "s-1", orgID: "o-1"}
	for _, tc := range []struct {
		name    string
		subject string
		ev      eventSubject
		want    bool
	}{
		{"email, any case", `{"format":"email","email":"alice@example.COM"}`, ev, true},
		{"another email", `{"format":"email","email":"bob@example.com"}`, ev, false},
		{"an erased user's email", `{"format":"email","email":"alice@example.com"}`, erased, false},
		{"iss_sub of this issuer", `{"format":"iss_sub","iss":"` + issuer + `","sub":"u-1"}`, erased, true},
		{"iss_sub of another issuer", `{"format":"iss_sub","iss":"https://other.example","sub":"u-1"}`, ev, false},
		{"opaque user id", `{"format":"opaque","id":"u-1"}`, ev, true},
		{"complex tenant", `{"format":"complex","tenant":{"format":"opaque","id":"o-1"}}`, ev, true},
		{"complex other tenant", `{"format":"complex","tenant":{"format":"opaque","id":"o-2"}}`, ev, false},
		{"complex user and session", `{"format":"complex","user":{"format":"opaque","id":"u-1"},"session":{"format":"opaque","id":"s-1"}}`, ev, true},
		{"complex other session", `{"format":"complex","session":{"format":"opaque","id":"s-2"}}`, ev, false},
		{"a session of an account event (none)", `{"format":"complex","session":{"format":"opaque","id":"s-1"}}`, eventSubject{userID: "u-1", orgID: "o-1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustSubject(t, tc.subject).matches(tc.ev, issuer); got != tc.want {
				t.Errorf("matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAnAddedSubjectWinsOverARemovedOne(t *testing.T) {
	ev := eventSubject{userID: "u-1", email: "a@example.com", sessionID: "s-1", orgID: "o-1"}
	other := eventSubject{userID: "u-2", email: "b@example.com", sessionID: "s-2", orgID: "o-1"}
	c := subjectChoices{removed: []subject{mustSubject(t, `{"format":"complex","tenant":{"format":"opaque","id":"o-1"}}`)}}
	if !c.excludes(ev, issuer) || !c.excludes(other, issuer) {
		t.Fatal("removing the tenant leaves its users in")
	}
	c.added = []subject{mustSubject(t, `{"format":"email","email":"a@example.com"}`)}
	if c.excludes(ev, issuer) || !c.excludes(other, issuer) {
		t.Fatal("adding one user back does not bring back that user, and that user only")
	}
	if (subjectChoices{}).excludes(ev, issuer) {
		t.Fatal("no choices exclude something")
	}
}

func TestMalformedSubjectsAreRefused(t *testing.T) {
	for _, raw := range []string{
		``, `null`, `"a@example.com"`, `{}`, `{"format":"email"}`, `{"format":"email","email":"not an address"}`,
		`{"format":"email","email":"a@example.com","id":"x"}`, `{"format":"iss_sub","iss":"x"}`, `{"format":"opaque"}`,
		`{"format":"phone_number","phone_number":"+12065550100"}`, `{"format":"complex"}`,
		`{"format":"complex","device":{"format":"opaque","id":"d"}}`, `{"format":"complex","tenant":{"format":"email","email":"a@example.com"}}`,
		`{"format":"opaque","id":"x","extra":1}`,
	} {
		if _, err := parseSubject(json.RawMessage(raw)); !errors.Is(err, sessions.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", raw, err)
		}
	}
}

func TestEqualSubjectsShareAKey(t *testing.T) {
	a := mustSubject(t, `{"format":"email","email":"A@example.com"}`)
	b := mustSubject(t, `{"format":"email","email":"a@EXAMPLE.com"}`)
	c := mustSubject(t, `{"format":"complex","tenant":{"format":"opaque","id":"o"},"user":{"format":"opaque","id":"u"}}`)
	d := mustSubject(t, `{"user":{"format":"opaque","id":"u"},"format":"complex","tenant":{"format":"opaque","id":"o"}}`)
	if a.key() != b.key() || c.key() != d.key() || a.key() == c.key() {
		t.Fatalf("keys: %q %q %q %q", a.key(), b.key(), c.key(), d.key())
	}
}

// Every reason of the contract reads as itself in a session-revoked event,
// with an initiating entity CAEP defines and a non-empty reason_admin (the
// profile's rule); one added later still gets both.
func TestEveryReasonHasATextAndAnEntity(t *testing.T) {
	reasons := []events.Reason{events.ReasonLogout, events.ReasonSelfRevoke, events.ReasonAdminRevoke, events.ReasonUserRevokeAll,
		events.ReasonRefreshReuse, events.ReasonUserDisabled, events.ReasonErasure, events.ReasonAdminBulkRevoke, events.ReasonReplaced,
		events.ReasonSessionLimit, events.ReasonIdleTimeout, events.ReasonMaxLifetime, events.ReasonTokenRevoke, "a_reason_from_the_future"}
	for _, r := range reasons {
		if _, known := revocationTexts[r]; !known && r.Valid() {
			t.Errorf("reason %s has no text of its own", r)
		}
		txt := reasonText(r)
		switch txt.entity {
		case "admin", "user", "policy", "system":
		default:
			t.Errorf("reason %s: initiating_entity %q is not CAEP's", r, txt.entity)
		}
		if txt.admin == "" || txt.user == "" {
			t.Errorf("reason %s: empty reason text %+v", r, txt)
		}
	}
}

func TestDeliveredIsTheSupportedTypesRequested(t *testing.T) {
	if got := delivered([]string{"urn:example:unknown", EventAccountPurged, EventSessionRevoked}); len(got) != 2 || got[0] != EventSessionRevoked || got[1] != EventAccountPurged {
		t.Errorf("delivered = %v", got)
	}
	if got := delivered(nil); len(got) != len(eventsSupported) {
		t.Errorf("nothing requested delivers %v", got)
	}
	if got := delivered([]string{"urn:example:unknown"}); len(got) != 0 {
		t.Errorf("only unknown types delivers %v", got)
	}
}

// A push endpoint cannot make sessiond reach what only it can reach: the
// address dialled, after resolution, must be public.
func TestPushesGoToPublicAddressesOnly(t *testing.T) {
	for addr, public := range map[string]bool{
		"93.184.215.14:443": true, "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443": true,
		"127.0.0.1:443": false, "10.1.2.3:443": false, "172.16.0.1:443": false, "192.168.1.1:443": false,
		"169.254.169.254:80": false, "100.64.0.1:443": false, "0.0.0.0:443": false, "[::1]:443": false,
		"[fd00::1]:443": false, "[fe80::1]:443": false, "[::ffff:127.0.0.1]:443": false,
	} {
		if err := publicOnly("tcp", addr, nil); (err == nil) != public {
			t.Errorf("%s: %v, want public %v", addr, err, public)
		}
	}
}
