package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionguard/revoke/internal/testenv"
)

// A Shared Signals receiver written from the specifications (SSF 1.0, RFC
// 8935, RFC 8936, the CAEP interoperability profile), to drive sessiond's
// transmitter as Okta or Keycloak would: it reads the transmitter's
// configuration, gets a client token, manages its stream through the
// endpoints the configuration names, and checks every SET it receives
// (signature by jwks_uri, typ, iss, aud, one event, sub_id, no sub or exp)
// before it accepts it.

const (
	caepSessionRevoked  = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	riscAccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	riscAccountEnabled  = "https://schemas.openid.net/secevent/risc/event-type/account-enabled"
	riscAccountPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	ssfVerification     = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	ssfStreamUpdated    = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
	methodPush          = "urn:ietf:rfc:8935"
	methodPoll          = "urn:ietf:rfc:8936"
)

// ssfConfig is the part of the transmitter's metadata a receiver uses.
type ssfConfig struct {
	SpecVersion              string              `json:"spec_version"`
	Issuer                   string              `json:"issuer"`
	JWKSURI                  string              `json:"jwks_uri"`
	DeliveryMethodsSupported []string            `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string              `json:"configuration_endpoint"`
	StatusEndpoint           string              `json:"status_endpoint"`
	AddSubjectEndpoint       string              `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string              `json:"remove_subject_endpoint"`
	VerificationEndpoint     string              `json:"verification_endpoint"`
	AuthorizationSchemes     []map[string]string `json:"authorization_schemes"`
	DefaultSubjects          string              `json:"default_subjects"`
}

// streamConfig is a stream's configuration as the receiver reads it.
type streamConfig struct {
	StreamID        string   `json:"stream_id"`
	Iss             string   `json:"iss"`
	Aud             any      `json:"aud"`
	EventsSupported []string `json:"events_supported"`
	EventsRequested []string `json:"events_requested"`
	EventsDelivered []string `json:"events_delivered"`
	Delivery        struct {
		Method              string `json:"method"`
		EndpointURL         string `json:"endpoint_url"`
		AuthorizationHeader string `json:"authorization_header"`
	} `json:"delivery"`
	MinVerificationInterval int    `json:"min_verification_interval"`
	Description             string `json:"description"`
}

// receivedSET is a SET the receiver accepted, with its claims.
type receivedSET struct {
	jti    string
	typ    string // its one event type
	event  map[string]any
	subID  map[string]any
	claims jwt.MapClaims
}

// receiver is one SSF receiver of s's transmitter.
type receiver struct {
	t        testing.TB
	s        *system
	http     *http.Client // reaches the transmitter at its issuer's host
	cfg      ssfConfig
	clientID string
	secret   string
	token    string
	keys     map[string]*rsa.PublicKey

	push      *httptest.Server
	pushToken string // the Authorization header the transmitter must send

	mu       sync.Mutex
	got      []receivedSET
	seen     map[string]bool
	answer   func(n int) (int, string) // the push endpoint's answer to the n-th request: status and body
	requests int
	problems []string
}

// newReceiver registers an API client with scopes for org ("" for every
// org), signs it in with the client credentials grant, reads the
// transmitter's configuration and starts a push endpoint.
func newReceiver(t testing.TB, s *system, org string, scopes ...string) *receiver {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{"ssf.manage", "ssf.read"}
	}
	body := map[string]any{"name": "receiver " + t.Name(), "scopes": scopes}
	if org != "" {
		body["org_id"] = org
	}
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if code := s.do("POST", "/v1/clients", s.admin, body, &c); code != 201 {
		t.Fatalf("create client: %d", code)
	}
	return newReceiverFor(t, s, c.ClientID, c.ClientSecret)
}

// newReceiverFor is a receiver with an API client's credentials.
func newReceiverFor(t testing.TB, s *system, clientID, secret string) *receiver {
	t.Helper()
	rc := &receiver{t: t, s: s, seen: map[string]bool{}, pushToken: "Bearer push-" + base64.RawURLEncoding.EncodeToString([]byte(t.Name())),
		clientID: clientID, secret: secret}
	// The transmitter's issuer is http://sessiond.test: its endpoints are
	// reached at sessiond's address, as a DNS name would resolve them.
	rc.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.apiLn)
		},
	}}
	rc.token = rc.clientToken()
	if code := rc.call("GET", "http://sessiond.test/.well-known/ssf-configuration", "", nil, &rc.cfg); code != 200 {
		t.Fatalf("ssf configuration: %d", code)
	}
	rc.loadKeys()
	rc.push = httptest.NewServer(http.HandlerFunc(rc.receive))
	t.Cleanup(rc.push.Close)
	return rc
}

// clientToken is the client credentials grant (RFC 6749 section 4.4).
func (rc *receiver) clientToken() string {
	rc.t.Helper()
	req, _ := http.NewRequest("POST", rc.s.api+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(rc.clientID), url.QueryEscape(rc.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rc.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&tok) != nil {
		rc.t.Fatalf("client token: %d", resp.StatusCode)
	}
	return tok.AccessToken
}

// call makes a request to the transmitter with the client's token (none
// when token is ""), decoding a 2xx answer into out.
func (rc *receiver) call(method, u, token string, body, out any) int {
	rc.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		rc.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := rc.http.Do(req)
	if err != nil {
		rc.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			rc.t.Fatalf("%s %s: %v", method, u, err)
		}
	}
	return resp.StatusCode
}

// loadKeys reads the transmitter's JWKS (RS256 keys, RFC 7517).
func (rc *receiver) loadKeys() {
	rc.t.Helper()
	var set struct {
		Keys []struct {
			Kty, Kid, Alg, N, E string
		} `json:"keys"`
	}
	if code := rc.call("GET", rc.cfg.JWKSURI, "", nil, &set); code != 200 {
		rc.t.Fatalf("jwks: %d", code)
	}
	rc.keys = map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if k.Kty != "RSA" || k.Alg != "RS256" || err1 != nil || err2 != nil {
			rc.t.Fatalf("jwks: key %s is not an RS256 RSA key", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			rc.t.Fatalf("jwks: key %s has %d bits; the profile asks for 2048 at least", k.Kid, pub.N.BitLen())
		}
		rc.keys[k.Kid] = pub
	}
}

// check verifies a SET as a receiver must before it acts on it; "" when it
// is good.
func (rc *receiver) check(raw string, stream string) (receivedSET, string) {
	var r receivedSET
	tok, err := jwt.Parse(raw, func(t *jwt.Token) (any, error) {
		if t.Header["typ"] != "secevent+jwt" {
			return nil, fmt.Errorf("typ is %v, not secevent+jwt", t.Header["typ"])
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := rc.keys[kid]
		if !ok {
			return nil, fmt.Errorf("no key %q at jwks_uri", kid)
		}
		return k, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(rc.cfg.Issuer), jwt.WithAudience(rc.clientID), jwt.WithIssuedAt())
	if err != nil {
		return r, "invalid_key: " + err.Error()
	}
	c := tok.Claims.(jwt.MapClaims)
	r.claims = c
	r.jti, _ = c["jti"].(string)
	if _, ok := c["sub"]; ok {
		return r, "invalid_request: a SET carries no sub (SSF 1.0 section 4.1.2)"
	}
	if _, ok := c["exp"]; ok {
		return r, "invalid_request: a SET carries no exp (SSF 1.0 section 4.1.7)"
	}
	if r.subID, _ = c["sub_id"].(map[string]any); r.subID == nil || r.subID["format"] == nil {
		return r, "invalid_request: sub_id is required (SSF 1.0 section 3.1)"
	}
	evs, _ := c["events"].(map[string]any)
	if len(evs) != 1 {
		return r, fmt.Sprintf("invalid_request: %d events; the profile allows exactly one", len(evs))
	}
	for typ, ev := range evs {
		r.typ = typ
		r.event, _ = ev.(map[string]any)
	}
	if r.jti == "" || r.event == nil {
		return r, "invalid_request: jti and an event object are required"
	}
	if r.typ == caepSessionRevoked {
		admin, _ := r.event["reason_admin"].(map[string]any)
		if en, _ := admin["en"].(string); en == "" {
			return r, "invalid_request: session-revoked needs a non-empty reason_admin (the profile)"
		}
	}
	if (r.typ == ssfVerification || r.typ == ssfStreamUpdated) && (r.subID["format"] != "opaque" || (stream != "" && r.subID["id"] != stream)) {
		return r, "invalid_request: a stream's own event names the stream (opaque)"
	}
	return r, ""
}

// receive is the push endpoint (RFC 8935).
func (rc *receiver) receive(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.requests++
	n, answer := rc.requests, rc.answer
	rc.mu.Unlock()
	if answer != nil {
		if status, body := answer(n); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
			return
		}
	}
	if r.Header.Get("Authorization") != rc.pushToken {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Content-Type") != "application/secevent+jwt" || r.Header.Get("Accept") != "application/json" {
		rc.problem("push with Content-Type %q, Accept %q", r.Header.Get("Content-Type"), r.Header.Get("Accept"))
		http.Error(w, `{"err":"invalid_request","description":"content type"}`, http.StatusBadRequest)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	set, bad := rc.check(string(raw), "")
	if bad != "" {
		rc.problem("pushed SET refused: %s", bad)
		code, desc, _ := strings.Cut(bad, ": ")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"err": code, "description": desc})
		return
	}
	rc.accept(set)
	w.WriteHeader(http.StatusAccepted)
}

func (rc *receiver) problem(format string, args ...any) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.problems = append(rc.problems, fmt.Sprintf(format, args...))
}

// accept keeps a SET once, however often it comes (RFC 8935 section 2).
func (rc *receiver) accept(s receivedSET) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.seen[s.jti] {
		return
	}
	rc.seen[s.jti] = true
	rc.got = append(rc.got, s)
}

// received is what the receiver accepted, in order.
func (rc *receiver) received() []receivedSET {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedSET(nil), rc.got...)
}

// waitFor waits for a SET of type typ for which match is true, and returns
// it.
func (rc *receiver) waitFor(typ string, match func(receivedSET) bool, what string) receivedSET {
	rc.t.Helper()
	var found receivedSET
	testenv.Eventually(rc.t, 20*time.Second, func() bool {
		for _, s := range rc.received() {
			if s.typ == typ && (match == nil || match(s)) {
				found = s
				return true
			}
		}
		return false
	}, "the receiver never got %s", what)
	return found
}

// noProblems fails the test if the receiver refused anything the
// transmitter sent.
func (rc *receiver) noProblems() {
	rc.t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range rc.problems {
		rc.t.Error(p)
	}
}

// createPush creates a push stream to the receiver's endpoint for events.
func (rc *receiver) createPush(events ...string) streamConfig {
	rc.t.Helper()
	body := map[string]any{"delivery": map[string]string{"method": methodPush, "endpoint_url": rc.push.URL + "/events",
		"authorization_header": rc.pushToken}, "description": "test push stream"}
	if len(events) > 0 {
		body["events_requested"] = events
	}
	var st streamConfig
	if code := rc.call("POST", rc.cfg.ConfigurationEndpoint, rc.token, body, &st); code != 201 {
		rc.t.Fatalf("create push stream: %d", code)
	}
	return st
}

// poll makes one RFC 8936 poll of stream st.
func (rc *receiver) poll(st streamConfig, req map[string]any) (map[string]string, bool) {
	rc.t.Helper()
	var out struct {
		Sets          map[string]string `json:"sets"`
		MoreAvailable bool              `json:"moreAvailable"`
	}
	if code := rc.call("POST", st.Delivery.EndpointURL, rc.token, req, &out); code != 200 {
		rc.t.Fatalf("poll: %d", code)
	}
	return out.Sets, out.MoreAvailable
}

// pollInOrder polls stream st and returns its SETs in the order the answer
// holds them (a JSON object's members have an order on the wire).
func (rc *receiver) pollInOrder(st streamConfig, req map[string]any) []string {
	rc.t.Helper()
	b, _ := json.Marshal(req)
	r, _ := http.NewRequest("POST", st.Delivery.EndpointURL, bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+rc.token)
	resp, err := rc.http.Do(r)
	if err != nil {
		rc.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Sets json.RawMessage `json:"sets"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
		rc.t.Fatalf("poll: %d", resp.StatusCode)
	}
	dec := json.NewDecoder(bytes.NewReader(body.Sets))
	var out []string
	if _, err := dec.Token(); err != nil { // {
		rc.t.Fatal(err)
	}
	for dec.More() {
		if _, err := dec.Token(); err != nil { // the jti
			rc.t.Fatal(err)
		}
		var jwt string
		if err := dec.Decode(&jwt); err != nil {
			rc.t.Fatal(err)
		}
		out = append(out, jwt)
	}
	return out
}

// subjectUser is the email of a session-revoked SET's user, or its iss_sub
// sub.
func subjectUser(s receivedSET) string {
	u, _ := s.subID["user"].(map[string]any)
	if e, ok := u["email"].(string); ok {
		return e
	}
	if e, ok := s.subID["email"].(string); ok {
		return e
	}
	sub, _ := u["sub"].(string)
	if sub == "" {
		sub, _ = s.subID["sub"].(string)
	}
	return sub
}

// revokedSessions is the session of each session-revoked SET received, in
// the order they came.
func (rc *receiver) revokedSessions() []string {
	var out []string
	for _, x := range rc.received() {
		if x.typ == caepSessionRevoked {
			out = append(out, subjectSession(x))
		}
	}
	return out
}

// subjectSession is a session-revoked SET's session id.
func subjectSession(s receivedSET) string {
	m, _ := s.subID["session"].(map[string]any)
	id, _ := m["id"].(string)
	return id
}
