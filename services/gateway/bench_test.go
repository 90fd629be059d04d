package gateway

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// benchGateway is a gateway whose feed is marked current without NATS, for
// measuring the decision alone.
func benchGateway(b *testing.B) (*Gateway, *issuer) {
	is := newIssuer(b)
	keys := NewKeySource(is.jwks.URL, http.DefaultClient, time.Second, testLog())
	if err := keys.Fetch(context.Background()); err != nil {
		b.Fatal(err)
	}
	v, err := NewVerifier(keys, testIssuer, testAudience, 5*time.Second, 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	m := NewMetrics(prometheus.NewRegistry())
	feed := NewFeed(nil, NewBlocklist(), time.Hour, m, testLog())
	feed.markReplayed(feed.mono())
	return New(v, feed.bl, feed, nil, m, testLog()), is
}

// BenchmarkDecisionCached is the hot path: a token seen before.
func BenchmarkDecisionCached(b *testing.B) {
	g, is := benchGateway(b)
	h := "Bearer " + is.sign(b, newGrant())
	ctx := context.Background()
	for range 2 { // a token enters the cache on its second use
		if d := g.Decide(ctx, h, time.Now()); d.Outcome != Allow {
			b.Fatal(d.Reason)
		}
	}
	g.verifier.cache.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if g.Decide(ctx, h, time.Now()).Outcome != Allow {
			b.Fatal("refused")
		}
	}
}

// BenchmarkDecisionFirstSeen verifies tokens never seen before, each
// iteration side by side with a bare Ed25519 verification of the same
// token's signature, so that both face the same inputs and machine load; it reports both
// times and their ratio (the cost of parsing and checking the claims and of
// the blocklist and cache).
func BenchmarkDecisionFirstSeen(b *testing.B) {
	g, is := benchGateway(b)
	ctx := context.Background()
	toks := make([]string, b.N) // every token new to the gateway
	for i := range toks {
		toks[i] = "Bearer " + is.sign(b, newGrant())
	}
	// the bare verification checks the very same tokens
	msgs, sigs := make([][]byte, b.N), make([][]byte, b.N)
	for i, t := range toks {
		raw := strings.TrimPrefix(t, "Bearer ")
		dot := strings.LastIndexByte(raw, '.')
		sigs[i], _ = b64decode(raw[dot+1:])
		msgs[i] = []byte(raw[:dot])
	}
	pub := is.key.Public
	var gw, bare time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if g.Decide(ctx, toks[i], t0).Outcome != Allow {
			b.Fatal("refused")
		}
		t1 := time.Now()
		if !ed25519.Verify(pub, msgs[i], sigs[i]) {
			b.Fatal("bad signature")
		}
		t2 := time.Now()
		gw += t1.Sub(t0)
		bare += t2.Sub(t1)
	}
	b.ReportMetric(float64(gw.Nanoseconds())/float64(b.N), "gateway-ns/op")
	b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "bare-ed25519-ns/op")
	b.ReportMetric(float64(gw)/float64(bare), "ratio")
}

// BenchmarkDecisionCachedWithOrgRules times the cached decision of one
// gateway with no org rule and of one with 10,000 in force (one of them on
// the token's own org, which it does not cover: the token signed in after),
// alternating each iteration so both face the same machine; it reports both
// times and their ratio.
func BenchmarkDecisionCachedWithOrgRules(b *testing.B) {
	plain, is := benchGateway(b)
	ruled, _ := benchGateway(b)
	ruled.verifier.keys = plain.verifier.keys // the same issuer
	g := newGrant()
	g.authTime = time.Now()
	h := "Bearer " + is.sign(b, g)
	now := time.Now()
	org, _ := ParseID(g.org)
	ruled.bl.AddOrgRule(org, "", g.authTime.Add(-time.Hour), now.Add(time.Hour), now)
	for range 9999 {
		ruled.bl.AddOrgRule(randomID(), "", now, now.Add(time.Hour), now)
	}
	ctx := context.Background()
	for _, gw := range []*Gateway{plain, ruled} {
		for range 2 {
			if d := gw.Decide(ctx, h, time.Now()); d.Outcome != Allow {
				b.Fatal(d.Reason)
			}
		}
		gw.verifier.cache.Wait()
	}
	var without, with time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if plain.Decide(ctx, h, t0).Outcome != Allow {
			b.Fatal("refused")
		}
		t1 := time.Now()
		if ruled.Decide(ctx, h, t1).Outcome != Allow {
			b.Fatal("refused")
		}
		t2 := time.Now()
		without += t1.Sub(t0)
		with += t2.Sub(t1)
	}
	b.ReportMetric(float64(without.Nanoseconds())/float64(b.N), "no-rules-ns/op")
	b.ReportMetric(float64(with.Nanoseconds())/float64(b.N), "10k-rules-ns/op")
	b.ReportMetric(float64(with)/float64(without), "ratio")
}
