package tokens

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func testKeySet(t testing.TB) *KeySet {
	k, err := NewKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeySet([]Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func signed(t testing.TB, ks *KeySet, now time.Time) string {
	tok, _, err := Signer{Issuer: "iss", Audience: "aud"}.Sign(ks, Grant{Subject: uuid.NewString(), SessionID: uuid.NewString(), Org: uuid.NewString(), Role: RoleUser, Now: now, TTL: 5 * time.Minute, ID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSignedTokenShape(t *testing.T) {
	ks := testKeySet(t)
	now := time.Now()
	tok := signed(t, ks, now)
	parts := strings.Split(tok, ".")
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var h map[string]any
	var c map[string]any
	_ = json.Unmarshal(hb, &h)
	_ = json.Unmarshal(cb, &c)
	if h["alg"] != "EdDSA" || h["typ"] != "at+jwt" || h["kid"] != ks.SigningKeyID() || len(h) != 3 {
		t.Fatalf("header %v", h)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "org", "role"} {
		if _, ok := c[k]; !ok {
			t.Fatalf("claims lack %s: %v", k, c)
		}
	}
	if c["aud"] != "aud" {
		t.Fatalf("aud %v, want a single string", c["aud"])
	}
	for _, v := range []Verifier{*NewVerifier("iss", "aud", 0)} {
		if _, err := v.Verify(ks, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewEdgeVerifier("iss", "aud", 0).Verify(ks, tok, now); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSRoundTrip(t *testing.T) {
	ks := testKeySet(t)
	keys, err := ParseJWKS(ks.JWKS())
	if err != nil || len(keys) != 1 || keys[0].ID != ks.SigningKeyID() {
		t.Fatalf("%v %v", keys, err)
	}
	if Thumbprint(keys[0].Public) != keys[0].ID {
		t.Fatal("kid is not the RFC 7638 thumbprint")
	}
	if _, err := ParseJWKS([]byte(`{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB"}]}`)); err == nil {
		t.Fatal("a JWKS with no Ed25519 key was accepted")
	}
}

// FuzzEdgeVerifierIsStricter mutates valid tokens: whatever the edge
// verifier accepts, the reference verifier (golang-jwt) accepts too, with
// the same claims.
func FuzzEdgeVerifierIsStricter(f *testing.F) {
	ks := testKeySet(f)
	now := time.Now()
	f.Add(signed(f, ks, now))
	f.Add(signed(f, ks, now.Add(-time.Hour)))
	other := testKeySet(f)
	f.Add(signed(f, other, now))
	pub, _ := ks.Lookup(ks.SigningKeyID())
	_ = ed25519.PublicKey(pub)
	edge := NewEdgeVerifier("iss", "aud", 30*time.Second)
	ref := NewVerifier("iss", "aud", 30*time.Second)
	f.Fuzz(func(t *testing.T, tok string) {
		ce, errE := edge.Verify(ks, tok, time.Now())
		if errE != nil {
			return
		}
		cr, errR := ref.Verify(ks, tok)
		if errR != nil {
			t.Fatalf("edge accepted what the reference refuses (%v): %q", errR, tok)
		}
		if ce.Subject != cr.Subject || ce.SessionID != cr.SessionID || ce.ID != cr.ID || ce.Role != cr.Role || ce.Org != cr.Org || !ce.IssuedAt.Equal(cr.IssuedAt.Time) {
			t.Fatalf("claims differ: %+v vs %+v", ce, cr)
		}
	})
}

// FuzzEdgeVerifierClaims signs arbitrary headers and claims with the real
// key, so that the claim checks themselves are compared: the edge verifier
// accepts a subset of what the reference accepts.
func FuzzEdgeVerifierClaims(f *testing.F) {
	ks := testKeySet(f)
	now := time.Now().Unix()
	kid := ks.SigningKeyID()
	claims := func(extra string) string {
		return `{"iss":"iss","sub":"s","aud":"aud","exp":` + itoa(now+300) + `,"iat":` + itoa(now) + `,"nbf":` + itoa(now) + `,"jti":"j","sid":"x","org":"o","role":"user"` + extra + `}`
	}
	hdr := `{"alg":"EdDSA","typ":"at+jwt","kid":"` + kid + `"}`
	f.Add(hdr, claims(""))
	f.Add(`{"alg":"EdDSA","typ":"at+jwt","kid":"`+kid+`","crit":["x"]}`, claims(""))
	f.Add(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`, claims(""))
	f.Add(hdr, claims(`,"aud":["a","aud"]`))
	f.Add(hdr, claims(`,"exp":1.5`))
	f.Add(hdr, claims(`,"ISS":"x"`))
	f.Add(hdr, `{"exp":"soon"}`)
	f.Add(`{"Alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"`+kid+`"}`, claims(""))
	edge := NewEdgeVerifier("iss", "aud", 30*time.Second)
	ref := NewVerifier("iss", "aud", 30*time.Second)
	f.Fuzz(func(t *testing.T, header, body string) {
		in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(body))
		tok := in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(ks.signing.Private, []byte(in)))
		ce, errE := edge.Verify(ks, tok, time.Now())
		if errE != nil {
			return
		}
		cr, errR := ref.Verify(ks, tok)
		if errR != nil {
			t.Fatalf("edge accepted what the reference refuses (%v): %s . %s", errR, header, body)
		}
		if ce.Subject != cr.Subject || ce.SessionID != cr.SessionID || ce.ID != cr.ID || ce.Role != cr.Role || ce.Org != cr.Org || ce.IssuedAt.Unix() != cr.IssuedAt.Unix() {
			t.Fatalf("claims differ: %+v vs %+v", ce, cr)
		}
	})
}

func itoa(n int64) string { return formatInt(n) }

func formatInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
