package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/tokens"
)

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func claimsFor(g grant, iss, aud string, iat, nbf, exp time.Time) map[string]any {
	return map[string]any{"iss": iss, "sub": g.sub, "aud": aud, "exp": exp.Unix(), "iat": iat.Unix(), "nbf": nbf.Unix(),
		"jti": g.jti, "sid": g.sid, "org": g.org, "role": "user"}
}

func signWith(priv ed25519.PrivateKey, header, claims map[string]any) string {
	in := b64(header) + "." + b64(claims)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(in)))
}

func TestForgedAndInvalidTokensAreRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	g := newGrant()
	now := time.Now()
	hdr := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": w.is.key.ID}
	good := claimsFor(g, testIssuer, testAudience, now, now, now.Add(5*time.Minute))
	_, otherPriv, _ := ed25519.GenerateKey(nil)

	hs256 := func() string {
		h := map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": w.is.key.ID}
		in := b64(h) + "." + b64(good)
		m := hmac.New(sha256.New, w.is.key.Public)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hdrWith := func(k string, v any) map[string]any {
		h := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": w.is.key.ID}
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	valid := signWith(w.is.key.Private, hdr, good)
	parts := strings.Split(valid, ".")
	cases := map[string]string{
		"alg none":               b64(hdrWith("alg", "none")) + "." + b64(good) + ".",
		"HS256 with public key":  hs256(),
		"unknown kid":            signWith(otherPriv, hdrWith("kid", "nope"), good),
		"right kid, other key":   signWith(otherPriv, hdr, good),
		"wrong issuer":           signWith(w.is.key.Private, hdr, with("iss", "http://evil.test")),
		"wrong audience":         signWith(w.is.key.Private, hdr, with("aud", "other")),
		"expired":                signWith(w.is.key.Private, hdr, with("exp", now.Add(-time.Minute).Unix())),
		"no exp":                 signWith(w.is.key.Private, hdr, with("exp", nil)),
		"nbf in the future":      signWith(w.is.key.Private, hdr, with("nbf", now.Add(time.Minute).Unix())),
		"missing typ":            signWith(w.is.key.Private, hdrWith("typ", nil), good),
		"typ JWT":                signWith(w.is.key.Private, hdrWith("typ", "JWT"), good),
		"payload tampered":       parts[0] + "." + b64(with("role", "global_admin")) + "." + parts[2],
		"signature truncated":    valid[:len(valid)-4],
		"not a JWT":              "hello",
		"sid not a UUID":         signWith(w.is.key.Private, hdr, with("sid", "x")),
		"missing jti":            signWith(w.is.key.Private, hdr, with("jti", nil)),
		"unknown role":           signWith(w.is.key.Private, hdr, with("role", "root")),
		"empty":                  "",
		"refresh token as token": "q7bG0s8kS2f3V0mZp1nC4xY5tR6uW8eA9dF0gH1jK2l",
	}
	if d := w.decide(valid); d.Outcome != Allow {
		t.Fatalf("the well-formed control token is refused: %s", d.Reason)
	}
	// Each refusal is counted under its own reason, for operators.
	reasons := map[string]string{
		"unknown kid": reasonUnknownKey, "right kid, other key": reasonBadSignature, "payload tampered": reasonBadSignature,
		"wrong issuer": reasonWrongIssuer, "wrong audience": reasonWrongAudience, "expired": reasonExpired,
		"nbf in the future": reasonNotYetValid, "empty": reasonMissing,
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			want, ok := reasons[name]
			if !ok {
				want = reasonMalformed
			}
			before := counterValue(t, w.gw.metrics.denied[want])
			if d := w.decide(tok); d.Outcome != Deny {
				t.Fatalf("outcome %v, want deny", d.Outcome)
			}
			if after := counterValue(t, w.gw.metrics.denied[want]); after != before+1 {
				t.Fatalf("gateway_decisions_total{outcome=deny,reason=%s} went from %v to %v, want one more", want, before, after)
			}
		})
	}
}

// TestEveryDecisionSeriesExistsFromTheStart: an alert on a reason can be
// written before its first refusal.
func TestEveryDecisionSeriesExistsFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "gateway_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var outcome, reason string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "outcome":
					outcome = l.GetValue()
				case "reason":
					reason = l.GetValue()
				}
			}
			got[outcome+"/"+reason] = true
		}
	}
	want := []string{"allow/valid", "unavailable/stale"}
	for _, r := range denyReasons {
		want = append(want, "deny/"+r)
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("no series gateway_decisions_total{%s} at start", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), got)
	}
}

func TestRevocationEventsAreEnforced(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()

	sess, tok, user := newGrant(), newGrant(), newGrant()
	sessTok, tokTok, userTok := w.is.sign(t, sess), w.is.sign(t, tok), w.is.sign(t, user)
	bystander := w.is.sign(t, newGrant())
	for _, x := range []string{sessTok, tokTok, userTok, bystander} {
		if d := w.decide(x); d.Outcome != Allow { // also fills the verified-token cache
			t.Fatalf("fresh token refused: %s", d.Reason)
		}
	}
	now := time.Now().UTC()
	w.publish(revokeSession(sess))
	w.publish(events.TokenRevoked{EventID: uuid.NewString(), JTI: tok.jti, SID: tok.sid, Sub: tok.sub, Org: tok.org, Reason: events.ReasonLogout, RevokedAt: now, ExpiresAt: now.Add(6 * time.Minute)})
	nb := now.Truncate(time.Second).Add(time.Second)
	w.publish(events.UserRevoked{EventID: uuid.NewString(), Sub: user.sub, Org: user.org, NotBefore: nb, Reason: events.ReasonUserDisabled, RevokedAt: now, ExpiresAt: now.Add(6 * time.Minute)})
	w.waitDenied(sessTok)
	w.waitDenied(tokTok)
	w.waitDenied(userTok)
	for tok, reason := range map[string]string{sessTok: reasonRevokedSession, tokTok: reasonRevokedToken, userTok: reasonRevokedUser} {
		before := counterValue(t, w.gw.metrics.denied[reason])
		w.decide(tok)
		if after := counterValue(t, w.gw.metrics.denied[reason]); after != before+1 {
			t.Errorf("a refusal by %s counted %v → %v", reason, before, after)
		}
	}
	if d := w.decide(bystander); d.Outcome != Allow {
		t.Fatalf("an unrevoked token is refused: %s", d.Reason)
	}
	// A token of the same user issued at or after not_before is not revoked.
	later := user
	later.jti, later.sid, later.iat = uuid.NewString(), uuid.NewString(), nb
	if d := w.decide(w.is.sign(t, later)); d.Outcome != Allow {
		t.Fatalf("a token issued after the user revocation is refused: %s", d.Reason)
	}
	// Applying the same events again, or an older one later, changes nothing.
	w.publish(revokeSession(sess))
	older := events.UserRevoked{EventID: uuid.NewString(), Sub: user.sub, Org: user.org, NotBefore: nb.Add(-time.Hour), Reason: events.ReasonAdminRevoke, RevokedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Minute)}
	w.publish(older)
	time.Sleep(50 * time.Millisecond) // let the feed catch up; the decisions below must not change
	if w.decide(w.is.sign(t, later)).Outcome != Allow || w.decide(userTok).Outcome != Deny {
		t.Fatal("an out-of-order event changed the outcome")
	}
}

// TestRestartReplaysBeforeReady: a new gateway process is not ready until
// it has replayed the stream, and refuses revoked tokens from then on.
func TestRestartReplaysBeforeReady(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	var revoked []string
	for i := 0; i < 2000; i++ {
		g := newGrant()
		revoked = append(revoked, w.is.sign(t, g))
		w.publish(revokeSession(g))
	}
	w.start()
	if w.feed.Replayed() && w.bl.Len() < 2000 {
		t.Fatal("ready before the replay was complete")
	}
	w.waitReady()
	if w.bl.Len() != 2000 {
		t.Fatalf("blocklist holds %d entries after replay, want 2000", w.bl.Len())
	}
	for _, tok := range revoked {
		if d := w.decide(tok); d.Outcome != Deny {
			t.Fatal("a revoked token passes after restart")
		}
	}
	// and once more, as a restarted process
	w.start()
	w.waitReady()
	if d := w.decide(revoked[1234]); d.Outcome != Deny {
		t.Fatal("a revoked token passes after the second restart")
	}
}

func TestReadyzBeforeReplay(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.nats.Stop() // no stream reachable: the replay cannot finish
	w.start()
	rec := httptest.NewRecorder()
	w.gw.Readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 {
		t.Fatalf("readyz %d before replay", rec.Code)
	}
	if d := w.decide(w.is.sign(t, newGrant())); d.Outcome != Unavailable {
		t.Fatal("decided before the replay")
	}
	w.nats.Start()
	w.waitReady()
	rec = httptest.NewRecorder()
	w.gw.Readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("readyz %d after replay", rec.Code)
	}
}

// TestNATSRestartResumesWithoutGap: revocations published while the
// gateway's NATS connection was down are applied after it comes back.
func TestNATSRestartResumesWithoutGap(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	before := newGrant()
	w.publish(revokeSession(before))
	w.waitDenied(w.is.sign(t, before))

	w.nats.Stop()
	w.nats.Start()
	// Published through a fresh connection right after the restart, possibly
	// before the gateway has reconnected.
	var during []grant
	for i := 0; i < 20; i++ {
		g := newGrant()
		during = append(during, g)
		w.publish(revokeSession(g))
	}
	for _, g := range during {
		w.waitDenied(w.is.sign(t, g))
	}
	if d := w.decide(w.is.sign(t, before)); d.Outcome != Deny {
		t.Fatal("an old revocation was lost across the restart")
	}
}

// TestStalenessFailsClosedAndRecovers: with NATS gone for longer than the
// bound every decision is 503, and it recovers by itself.
func TestStalenessFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 500*time.Millisecond)
	w.start()
	w.waitReady()
	tok := w.is.sign(t, newGrant())
	if w.decide(tok).Outcome != Allow {
		t.Fatal("valid token refused")
	}
	w.nats.Stop()
	w.t.Log("NATS stopped")
	deadline := time.Now().Add(10 * time.Second)
	for w.decide(tok).Outcome != Unavailable {
		if time.Now().After(deadline) {
			t.Fatal("never failed closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rec := httptest.NewRecorder()
	w.gw.Readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 {
		t.Fatalf("readyz %d while stale", rec.Code)
	}
	w.nats.Start()
	w.waitReady()
	if w.decide(tok).Outcome != Allow {
		t.Fatal("did not recover")
	}
}

func TestProxyAndCheckHeaders(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	var seen http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		rw.WriteHeader(200)
	}))
	defer upstream.Close()
	u, _ := urlParse(upstream.URL)
	proxy := httptest.NewServer(w.gw.Proxy(u, NewTransport(), testLog()))
	defer proxy.Close()

	g := newGrant()
	tok := w.is.sign(t, g)
	req, _ := http.NewRequest("GET", proxy.URL+"/anything", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Auth-User", "forged")
	req.Header.Set("X-Auth-Role", "global_admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("proxy: %d", resp.StatusCode)
	}
	if seen.Get("X-Auth-User") != g.sub || seen.Get("X-Auth-Role") != "user" || seen.Get("X-Auth-Org") != g.org || seen.Get("X-Auth-Session") != g.sid || len(seen.Values("X-Auth-User")) != 1 {
		t.Fatalf("upstream saw %v", seen)
	}

	// refused: the upstream never sees it
	seen = nil
	req, _ = http.NewRequest("GET", proxy.URL+"/anything", nil)
	req.Header.Set("Authorization", "Bearer garbage")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || seen != nil {
		t.Fatalf("status %d, upstream saw %v", resp.StatusCode, seen)
	}
	if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer error="invalid_token", error_description="`) {
		t.Fatalf("WWW-Authenticate %q", h)
	}

	// forward auth
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/v1/check", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w.gw.Check(rec, r)
	if rec.Code != 200 || rec.Header().Get("X-Auth-Session") != g.sid {
		t.Fatalf("check: %d %v", rec.Code, rec.Header())
	}
	w.publish(revokeSession(g))
	w.waitDenied(tok)
	rec = httptest.NewRecorder()
	w.gw.Check(rec, r)
	if rec.Code != 401 || rec.Header().Get("X-Auth-User") != "" {
		t.Fatalf("check after revoke: %d %v", rec.Code, rec.Header())
	}
}

func TestUnknownKidRefreshesJWKS(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 10*time.Second)
	w.start()
	w.waitReady()
	// the issuer rotates: a new key, both published
	nk, _ := tokens.NewKey(time.Now().Add(time.Second))
	ks, _ := tokens.NewKeySet([]tokens.Key{w.is.key, nk})
	old := w.is.sign(t, newGrant())
	w.is.ks = ks
	time.Sleep(150 * time.Millisecond) // past the refresh rate limit of this test's key source
	fresh := w.is.sign(t, newGrant())
	if d := w.decide(fresh); d.Outcome != Allow {
		t.Fatalf("token with the new kid refused: %s", d.Reason)
	}
	if d := w.decide(old); d.Outcome != Allow {
		t.Fatalf("token with the old kid refused: %s", d.Reason)
	}
	// the JWKS endpoint goes away: the keys are kept
	w.is.jwks.Close()
	if err := w.keys.Fetch(context.Background()); err == nil {
		t.Fatal("fetch from a closed server succeeded")
	}
	if d := w.decide(w.is.sign(t, newGrant())); d.Outcome != Allow {
		t.Fatal("keys lost when the JWKS endpoint went away")
	}
}
