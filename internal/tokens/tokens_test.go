package tokens

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

func init() {
	// golang-jwt rounds NumericDates to whole seconds unless told otherwise;
	// the reference must read iat's microseconds like Verifier does.
	jwt.TimePrecision = time.Microsecond
}

// fixedNow is the time every fuzz and table test verifies at, so that a
// corpus entry means the same thing in every run and every worker.
var fixedNow = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// fixedKeySet is one key derived from a constant seed: every fuzz worker
// process verifies with the same key that signed the seed corpus.
func fixedKeySet(t testing.TB) *KeySet {
	seed := sha256.Sum256([]byte("revoke: the fuzzers' fixed signing key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := priv.Public().(ed25519.PublicKey)
	ks, err := NewKeySet([]Key{{ID: Thumbprint(pub), Public: pub, Private: priv, CreatedAt: fixedNow}})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func randomKeySet(t testing.TB) *KeySet {
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

// signRaw signs a header and claims given as JSON text, exactly as written.
func signRaw(ks *KeySet, header, claims string) string {
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(ks.signing.Private, []byte(in)))
}

func stdHeader(ks *KeySet) string {
	return `{"alg":"EdDSA","typ":"at+jwt","kid":"` + ks.SigningKeyID() + `"}`
}

// stdClaims are valid claims at fixedNow, with extra members appended.
func stdClaims(extra string) string {
	now := fixedNow.Unix()
	return `{"iss":"iss","sub":"s","aud":"aud","exp":` + strconv.FormatInt(now+300, 10) + `,"iat":` + strconv.FormatInt(now-1, 10) +
		`,"nbf":` + strconv.FormatInt(now-1, 10) + `,"jti":"j","sid":"x","org":"o","role":"user"` + extra + `}`
}

// The two tokens of the security review that the gateway and sessiond read
// differently before their verifiers became one: an escaped member name
// that encoding/json unescapes (role), and one that hides alg "none".
const (
	escapedRoleClaims = `,"\u0072ole":"global_admin"`
	escapedAlgHeader  = `{"alg":"EdDSA","\u0061lg":"none","typ":"at+jwt","kid":"KID"}`
)

func TestSignedTokenShape(t *testing.T) {
	ks := randomKeySet(t)
	now := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	tok := signed(t, ks, now)
	parts := strings.Split(tok, ".")
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var h map[string]any
	var c map[string]json.RawMessage
	_ = json.Unmarshal(hb, &h)
	_ = json.Unmarshal(cb, &c)
	if h["alg"] != "EdDSA" || h["typ"] != "at+jwt" || h["kid"] != ks.SigningKeyID() || len(h) != 3 {
		t.Fatalf("header %v", h)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "org", "role"} {
		if _, ok := c[k]; !ok {
			t.Fatalf("claims lack %s: %s", k, cb)
		}
	}
	if string(c["aud"]) != `"aud"` {
		t.Fatalf("aud %s, want a single string", c["aud"])
	}
	if sec := strconv.FormatInt(now.Unix(), 10); string(c["iat"]) != sec+".123456" || string(c["nbf"]) != sec {
		t.Fatalf("iat %s nbf %s: want iat to the microsecond, nbf a whole second", c["iat"], c["nbf"])
	}
	got, err := NewVerifier("iss", "aud", 0).Verify(ks, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IssuedAt.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("iat read as %v, want %v", got.IssuedAt, now.Truncate(time.Microsecond))
	}
	if _, err := newReferenceVerifier("iss", "aud", 0, func() time.Time { return now }).Verify(ks, tok); err != nil {
		t.Fatal(err)
	}
}

func TestMicroDate(t *testing.T) {
	for _, tc := range []struct {
		us   int64
		want string
	}{
		{0, "0"},
		{1764583200_000000, "1764583200"},
		{1764583200_100000, "1764583200.1"},
		{1764583200_000001, "1764583200.000001"},
		{1764583200_123450, "1764583200.12345"},
		{1764583200_999999, "1764583200.999999"},
	} {
		b, err := microDate(tc.us).MarshalJSON()
		if err != nil || string(b) != tc.want {
			t.Errorf("%d: %s %v, want %s", tc.us, b, err, tc.want)
		}
		// every verifier that reads the number as a float64 reads the same microsecond
		f, _ := strconv.ParseFloat(string(b), 64)
		if got, ok := numericDate(f); !ok || got.UnixMicro() != tc.us {
			t.Errorf("%s read back as %v", b, got.UnixMicro())
		}
	}
	if _, err := microDate(-1).MarshalJSON(); err == nil {
		t.Error("a negative NumericDate was written")
	}
}

// TestNumericDatesRoundTripToTheMicrosecond: every microsecond of a
// present-day second survives being written and read as a float64.
func TestNumericDatesRoundTripToTheMicrosecond(t *testing.T) {
	base := int64(1764583200) * 1e6
	for us := base; us < base+1e6; us += 7 {
		b, _ := microDate(us).MarshalJSON()
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(math.Round(f * 1e6)); got != us {
			t.Fatalf("%s read back as %d", b, got)
		}
	}
}

// TestVerifierRefuses: what the security review found the verifiers read
// differently, and what golang-jwt accepts but this system never issues.
func TestVerifierRefuses(t *testing.T) {
	ks := fixedKeySet(t)
	hdr := stdHeader(ks)
	kid := ks.SigningKeyID()
	valid := signRaw(ks, hdr, stdClaims(""))
	cases := map[string]string{
		"escaped claim name (\\u0072ole)":  signRaw(ks, hdr, stdClaims(escapedRoleClaims)),
		"escaped header name (\\u0061lg)":  signRaw(ks, strings.Replace(escapedAlgHeader, "KID", kid, 1), stdClaims("")),
		"duplicate claim":                  signRaw(ks, hdr, stdClaims(`,"role":"global_admin"`)),
		"duplicate header member":          signRaw(ks, `{"alg":"EdDSA","typ":"at+jwt","kid":"`+kid+`","typ":"at+jwt"}`, stdClaims("")),
		"crit header":                      signRaw(ks, `{"alg":"EdDSA","typ":"at+jwt","kid":"`+kid+`","crit":["exp"]}`, stdClaims("")),
		"non-canonical signature encoding": fixNonCanonical(valid),
		"padded signature":                 valid + "==",
		"sub is a number":                  signRaw(ks, hdr, strings.Replace(stdClaims(""), `"sub":"s"`, `"sub":7`, 1)),
		"exp is a string":                  signRaw(ks, hdr, strings.Replace(stdClaims(""), `"exp":`, `"exp":"`, 1)+`"`),
		"role is null":                     signRaw(ks, hdr, strings.Replace(stdClaims(""), `"role":"user"`, `"role":null`, 1)),
		"nbf is null":                      signRaw(ks, hdr, strings.Replace(stdClaims(""), `"nbf":`+strconv.FormatInt(fixedNow.Unix()-1, 10), `"nbf":null`, 1)),
		"aud holds a number":               signRaw(ks, hdr, strings.Replace(stdClaims(""), `"aud":"aud"`, `"aud":["aud",1]`, 1)),
		"aud is an empty list":             signRaw(ks, hdr, strings.Replace(stdClaims(""), `"aud":"aud"`, `"aud":[]`, 1)),
		"negative iat":                     signRaw(ks, hdr, strings.Replace(stdClaims(""), `"iat":`, `"iat":-`, 1)),
		"invalid UTF-8 in a claim":         signRaw(ks, hdr, strings.Replace(stdClaims(""), `"sub":"s"`, "\"sub\":\"s\xff\"", 1)),
		"a claim differing only in case":   signRaw(ks, hdr, stdClaims(`,"ROLE":"global_admin"`)),
		"too many members":                 signRaw(ks, hdr, stdClaims(manyMembers(30))),
		"alg none":                         signRaw(ks, `{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`, stdClaims("")),
		"typ JWT":                          signRaw(ks, `{"alg":"EdDSA","typ":"JWT","kid":"`+kid+`"}`, stdClaims("")),
		"auth_time is a string":            signRaw(ks, hdr, stdClaims(`,"auth_time":"1764583199"`)),
		"auth_time is null":                signRaw(ks, hdr, stdClaims(`,"auth_time":null`)),
		"negative auth_time":               signRaw(ks, hdr, stdClaims(`,"auth_time":-1`)),
		"duplicate auth_time":              signRaw(ks, hdr, stdClaims(`,"auth_time":1764583100,"auth_time":1764583199`)),
	}
	v := NewVerifier("iss", "aud", 30*time.Second)
	if _, err := v.Verify(ks, valid, fixedNow); err != nil {
		t.Fatalf("the control token is refused: %v", err)
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if c, err := v.Verify(ks, tok, fixedNow); err == nil {
				t.Fatalf("accepted, with claims %+v", c)
			}
		})
	}
}

// fixNonCanonical re-encodes tok's signature with one unused bit set.
func fixNonCanonical(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig := tok[i+1:]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	return tok[:i+1] + sig[:len(sig)-1] + string(alphabet[last|1])
}

func manyMembers(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(`,"m` + strconv.Itoa(i) + `":1`)
	}
	return b.String()
}

func TestVerifierReadsFractionalTimes(t *testing.T) {
	ks := fixedKeySet(t)
	claims := strings.Replace(stdClaims(""), `"iat":`+strconv.FormatInt(fixedNow.Unix()-1, 10), `"iat":1764583199.25`, 1)
	c, err := NewVerifier("iss", "aud", 0).Verify(ks, signRaw(ks, stdHeader(ks), claims), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(1764583199, 250_000_000); !c.IssuedAt.Equal(want) {
		t.Fatalf("iat %v, want %v", c.IssuedAt, want)
	}
	list := strings.Replace(stdClaims(""), `"aud":"aud"`, `"aud":["other","aud"]`, 1)
	if c, err := NewVerifier("iss", "aud", 0).Verify(ks, signRaw(ks, stdHeader(ks), list), fixedNow); err != nil || len(c.Audience) != 2 {
		t.Fatalf("a list audience: %+v %v", c, err)
	}
}

// TestAuthTimeRoundTripsToTheMicrosecond: a token carries its session's
// sign-in time as auth_time to the microsecond, as the strict verifier and
// golang-jwt read it; a token without one (issued before auth_time was)
// still verifies, with a zero AuthTime.
func TestAuthTimeRoundTripsToTheMicrosecond(t *testing.T) {
	ks := randomKeySet(t)
	now := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	signedIn := now.Add(-3*time.Hour - 987654321)
	g := Grant{Subject: "s", SessionID: "sid", Org: "o", Role: RoleUser, Now: now, AuthTime: signedIn, TTL: time.Minute, ID: "j"}
	tok, _, err := Signer{Issuer: "iss", Audience: "aud"}.Sign(ks, g)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]json.RawMessage
	_ = json.Unmarshal(mustClaims(tok), &c)
	if want := strconv.FormatInt(signedIn.Unix(), 10) + ".135802"; string(c["auth_time"]) != want { // .123456789 − .987654321, to the µs
		t.Fatalf("auth_time %s, want %s", c["auth_time"], want)
	}
	claims, err := NewVerifier("iss", "aud", 0).Verify(ks, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	if !claims.AuthTime.Equal(signedIn.Truncate(time.Microsecond)) {
		t.Fatalf("auth_time read as %v, want %v", claims.AuthTime, signedIn.Truncate(time.Microsecond))
	}
	if _, err := newReferenceVerifier("iss", "aud", 0, func() time.Time { return now }).Verify(ks, tok); err != nil {
		t.Fatal(err)
	}
	g.AuthTime = time.Time{}
	old, _, _ := Signer{Issuer: "iss", Audience: "aud"}.Sign(ks, g)
	if claims, err := NewVerifier("iss", "aud", 0).Verify(ks, old, now); err != nil || !claims.AuthTime.IsZero() || strings.Contains(string(mustClaims(old)), "auth_time") {
		t.Fatalf("a token without auth_time: %+v %v", claims, err)
	}
}

func mustClaims(tok string) []byte {
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	return b
}

func TestJWKSRoundTrip(t *testing.T) {
	ks := randomKeySet(t)
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

// maxFuzzInput bounds the fuzzers' inputs: a real token is a few hundred
// bytes, and longer inputs only make each run (and minimisation) slower.
const maxFuzzInput = 2048

// sameClaims reports how the two verifiers' readings of one token differ
// ("" when they agree). golang-jwt truncates fractions where Verifier
// rounds them, so times agree to within a microsecond.
func sameClaims(ce *Claims, cr *referenceClaims) string {
	near := func(a time.Time, b *jwt.NumericDate) bool {
		if b == nil {
			return a.IsZero()
		}
		d := a.Sub(b.Time)
		return d > -2*time.Microsecond && d < 2*time.Microsecond
	}
	switch {
	case ce.Subject != cr.Subject, ce.SessionID != cr.SessionID, ce.ID != cr.ID, ce.Org != cr.Org, ce.Issuer != cr.Issuer:
		return "identity claims"
	case ce.Role != cr.Role:
		return "role " + ce.Role + " vs " + cr.Role
	case !near(ce.IssuedAt, cr.IssuedAt), !near(ce.ExpiresAt, cr.ExpiresAt), !near(ce.NotBefore, cr.NotBefore):
		return "times"
	case strings.Join(ce.Audience, "\x00") != strings.Join(cr.Audience, "\x00"):
		return "audience"
	}
	return ""
}

// FuzzVerifierIsStricter mutates whole tokens: whatever Verifier accepts,
// golang-jwt accepts too, with the same claims. The key and the clock are
// fixed, so every worker accepts the seeds and their near neighbours.
func FuzzVerifierIsStricter(f *testing.F) {
	ks := fixedKeySet(f)
	kid := ks.SigningKeyID()
	edge := NewVerifier("iss", "aud", 30*time.Second)
	ref := newReferenceVerifier("iss", "aud", 30*time.Second, func() time.Time { return fixedNow })
	valid := signed(f, ks, fixedNow.Add(-time.Minute))
	if _, err := edge.Verify(ks, valid, fixedNow); err != nil { // the corpus reaches past the key lookup
		f.Fatalf("the valid seed is refused: %v", err)
	}
	f.Add(valid)
	f.Add(signed(f, ks, fixedNow.Add(-time.Hour))) // expired
	f.Add(signed(f, randomKeySet(f), fixedNow))    // unknown key
	f.Add(signRaw(ks, stdHeader(ks), stdClaims("")))
	f.Add(signRaw(ks, stdHeader(ks), stdClaims(escapedRoleClaims)))
	f.Add(signRaw(ks, strings.Replace(escapedAlgHeader, "KID", kid, 1), stdClaims("")))
	f.Fuzz(func(t *testing.T, tok string) {
		if len(tok) > maxFuzzInput {
			return
		}
		ce, errE := edge.Verify(ks, tok, fixedNow)
		if errE != nil {
			return
		}
		cr, errR := ref.Verify(ks, tok)
		if errR != nil {
			t.Fatalf("Verifier accepted what golang-jwt refuses (%v): %q", errR, tok)
		}
		if d := sameClaims(ce, cr); d != "" {
			t.Fatalf("the verifiers read %q differently: %s", tok, d)
		}
	})
}

// FuzzVerifierClaims signs arbitrary headers and claims with the fixed key,
// so that the header and claim checks themselves are compared.
func FuzzVerifierClaims(f *testing.F) {
	ks := fixedKeySet(f)
	kid := ks.SigningKeyID()
	hdr := stdHeader(ks)
	f.Add(hdr, stdClaims(""))
	f.Add(hdr, stdClaims(escapedRoleClaims))
	f.Add(strings.Replace(escapedAlgHeader, "KID", kid, 1), stdClaims(""))
	f.Add(`{"alg":"EdDSA","typ":"at+jwt","kid":"`+kid+`","crit":["x"]}`, stdClaims(""))
	f.Add(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`, stdClaims(""))
	f.Add(hdr, strings.Replace(stdClaims(""), `"aud":"aud"`, `"aud":["a","aud"]`, 1))
	f.Add(hdr, strings.Replace(stdClaims(""), `"iat":`+strconv.FormatInt(fixedNow.Unix()-1, 10), `"iat":1764583199.000001`, 1))
	f.Add(hdr, stdClaims(`,"ISS":"x"`))
	f.Add(hdr, stdClaims(`,"role":"global_admin"`))
	f.Add(hdr, `{"exp":"soon"}`)
	f.Add(`{"Alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"`+kid+`"}`, stdClaims(""))
	edge := NewVerifier("iss", "aud", 30*time.Second)
	ref := newReferenceVerifier("iss", "aud", 30*time.Second, func() time.Time { return fixedNow })
	f.Fuzz(func(t *testing.T, header, body string) {
		if len(header)+len(body) > maxFuzzInput {
			return
		}
		tok := signRaw(ks, header, body)
		ce, errE := edge.Verify(ks, tok, fixedNow)
		if errE != nil {
			return
		}
		cr, errR := ref.Verify(ks, tok)
		if errR != nil {
			t.Fatalf("Verifier accepted what golang-jwt refuses (%v): %s . %s", errR, header, body)
		}
		if d := sameClaims(ce, cr); d != "" {
			t.Fatalf("the verifiers read %s . %s differently: %s", header, body, d)
		}
	})
}
