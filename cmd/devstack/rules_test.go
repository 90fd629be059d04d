package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
)

// TestOrgRuleAtEveryVerifier: POST /v1/revocations with an org and a role
// becomes one rule; with Prefer: wait it answers once every gateway has it,
// and then every token of the org's users signed in before it is refused
// by both gateways, the Go middleware and sessiond, while a session signed
// in right after it, and the org's admin, work everywhere. A verifier that
// knows only the contract (auth_time as a float, auth_before as RFC 3339)
// decides the same.
func TestOrgRuleAtEveryVerifier(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 2)
	mw := s.middleware()
	cv := s.contractVerifier()
	org := s.org("ruled")
	s.member(org, "user", "ana@ruled.example")
	s.member(org, "user", "bo@ruled.example")
	s.member(org, "org_admin", "boss@ruled.example")
	covered := []pair{s.login("ana@ruled.example", "password-1"), s.login("bo@ruled.example", "password-1"), s.login("ana@ruled.example", "password-1")}
	boss := s.login("boss@ruled.example", "password-1")

	b, _ := json.Marshal(map[string]any{"org_id": org, "role": "user", "reason_text": "SSO compromised"})
	req, _ := http.NewRequest(http.MethodPost, s.api+"/v1/revocations", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+s.admin)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "wait=5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		RevokedSessions int `json:"revoked_sessions"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || res.RevokedSessions != 3 || resp.Header.Get("Revocation-Status") != "enforced" {
		t.Fatalf("bulk revoke: %d %+v %v", resp.StatusCode, res, resp.Header)
	}
	after := s.login("bo@ruled.example", "password-1")
	authBefore := cv.authBefore(org)

	for _, p := range covered {
		for _, g := range s.gateways {
			if code := check(t, g, p.AccessToken); code != http.StatusUnauthorized {
				t.Errorf("gateway %s accepts a covered token: %d", g.control, code)
			}
		}
		if code := mw(p.AccessToken); code != http.StatusUnauthorized {
			t.Errorf("the middleware accepts a covered token: %d", code)
		}
		if code := s.sessiondSays(p.AccessToken); code != http.StatusUnauthorized {
			t.Errorf("sessiond accepts a covered token: %d", code)
		}
		if at := cv.authTime(p.AccessToken); !(at < authBefore) {
			t.Errorf("the contract's reading: auth_time %f is not before %f", at, authBefore)
		}
	}
	for name, p := range map[string]pair{"signed in after the rule": after, "the org's admin": boss} {
		for _, g := range s.gateways {
			if code := check(t, g, p.AccessToken); code != http.StatusOK {
				t.Errorf("%s: gateway %s answers %d", name, g.control, code)
			}
		}
		if code := mw(p.AccessToken); code != http.StatusOK {
			t.Errorf("%s: the middleware answers %d", name, code)
		}
		if code := s.sessiondSays(p.AccessToken); code != http.StatusOK {
			t.Errorf("%s: sessiond answers %d", name, code)
		}
	}
	if at := cv.authTime(after.AccessToken); !(at >= authBefore) {
		t.Errorf("the contract's reading: the later sign-in's auth_time %f is before %f", at, authBefore)
	}
}

// authTime is a token's auth_time, read as a JSON number.
func (c *contractVerifier) authTime(token string) float64 {
	c.t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		c.t.Fatal(err)
	}
	var claims struct {
		AuthTime float64 `json:"auth_time"`
	}
	if err := json.Unmarshal(b, &claims); err != nil || claims.AuthTime == 0 {
		c.t.Fatalf("no auth_time in %s (%v)", b, err)
	}
	return claims.AuthTime
}

// authBefore waits for org's rule in REVOCATIONS and returns its
// auth_before, as seconds.
func (c *contractVerifier) authBefore(org string) float64 {
	c.t.Helper()
	var out float64
	waitFor(c.t, func() bool {
		cons, err := c.js.OrderedConsumer(c.t.Context(), events.StreamRevocations, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectOrgRevoked}})
		if err != nil {
			return false
		}
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			var ev struct {
				Org        string `json:"org"`
				AuthBefore string `json:"auth_before"`
			}
			if json.Unmarshal(m.Data(), &ev) != nil || ev.Org != org {
				continue
			}
			tm, err := time.Parse(time.RFC3339Nano, ev.AuthBefore)
			if err != nil {
				c.t.Fatal(err)
			}
			out = float64(tm.UnixMicro()) / 1e6
			return true
		}
		return false
	}, "the org's rule never reached the stream")
	return out
}
