package ssf

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/events"
)

// testKeys is a key store holding one fresh 2048-bit key.
func testKeys(tb testing.TB) *Keys {
	tb.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		tb.Fatal(err)
	}
	k := &Keys{}
	k.cur.Store(&keySet{signer: signingKey{kid: thumbprint(&priv.PublicKey), priv: priv}})
	return k
}

// bigSignal is a signal of n sessions of one org.
func bigSignal(n int) events.SessionsSignal {
	ev := events.SessionsSignal{EventID: "0b8e2a4e-8f7e-4c1e-9d2a-00000000000a", Org: "0b8e2a4e-8f7e-4c1e-9d2a-000000000001",
		Reason: events.ReasonAdminBulkRevoke, RevokedAt: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	for i := range n {
		ev.Sessions = append(ev.Sessions, events.SignalSession{SID: fmt.Sprintf("0b8e2a4e-8f7e-4c1e-9d2a-%012d", i), Sub: "0b8e2a4e-8f7e-4c1e-9d2a-000000000002",
			Email: "a@example.com"})
	}
	return ev
}

// A signal of many sessions is signed on every core, and its SETs come out
// in the signal's order, each signed as itself.
func TestALargeSignalsSETsAreInOrderAndEachSigned(t *testing.T) {
	k := testKeys(t)
	st := &Stream{ID: "0b8e2a4e-8f7e-4c1e-9d2a-0000000000ff", Aud: "receiver", EventsDelivered: eventsSupported}
	b := &builder{issuer: "https://sessiond.example", keys: k, st: st}
	ev := bigSignal(40)
	sets, err := b.build(ev)
	if err != nil || len(sets) != 40 {
		t.Fatalf("%d SETs, %v", len(sets), err)
	}
	pub := &k.cur.Load().signer.priv.PublicKey
	for i, s := range sets {
		if s.jti != b.jtiOf(ev.EventID, i) {
			t.Fatalf("SET %d has jti %s, want %s", i, s.jti, b.jtiOf(ev.EventID, i))
		}
		parts := strings.Split(s.jwt, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig); err != nil {
			t.Fatalf("SET %d: %v", i, err)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c struct {
			JTI   string `json:"jti"`
			SubID struct {
				Session struct{ ID string } `json:"session"`
			} `json:"sub_id"`
		}
		if json.Unmarshal(payload, &c) != nil || c.JTI != s.jti || c.SubID.Session.ID != ev.Sessions[i].SID {
			t.Fatalf("SET %d is about %+v", i, c)
		}
	}
}

// BenchmarkSignLargeSignal: the SETs of a 500-session signal, signed on
// every core (build), beside the same signatures one after another (the
// floor of one core), in the same run.
func BenchmarkSignLargeSignal(b *testing.B) {
	k := testKeys(b)
	st := &Stream{ID: "0b8e2a4e-8f7e-4c1e-9d2a-0000000000ff", Aud: "receiver", EventsDelivered: eventsSupported}
	bl := &builder{issuer: "https://sessiond.example", keys: k, st: st}
	ev := bigSignal(500)
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			if _, err := bl.build(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-core", func(b *testing.B) {
		for b.Loop() {
			for i := range ev.Sessions {
				if _, err := k.sign(bl.claims(bl.jtiOf(ev.EventID, i), ev.EventID, 0, nil, EventSessionRevoked, nil)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
