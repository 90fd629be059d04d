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
	feed.markReplayed(time.Now())
	return New(v, feed.bl, feed, nil, m, testLog()), is
}

// BenchmarkDecisionCached is the hot path: a token seen before.
func BenchmarkDecisionCached(b *testing.B) {
	g, is := benchGateway(b)
	h := "Bearer " + is.sign(b, newGrant())
	ctx := context.Background()
	if d := g.Decide(ctx, h, time.Now()); d.Outcome != Allow {
		b.Fatal(d.Reason)
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

// BenchmarkDecisionFirstSeen verifies a token never seen before, next to a
// bare Ed25519 verification of the same token (the ratio is the cost of
// parsing and checking claims).
func BenchmarkDecisionFirstSeen(b *testing.B) {
	g, is := benchGateway(b)
	ctx := context.Background()
	var sample string
	b.Run("gateway", func(b *testing.B) {
		toks := make([]string, b.N) // every token new to the gateway
		for i := range toks {
			toks[i] = "Bearer " + is.sign(b, newGrant())
		}
		sample = toks[0]
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if g.Decide(ctx, toks[i], time.Now()).Outcome != Allow {
				b.Fatal("refused")
			}
		}
	})
	b.Run("bare-ed25519", func(b *testing.B) {
		raw := strings.TrimPrefix(sample, "Bearer ")
		i := strings.LastIndexByte(raw, '.')
		sig, _ := b64decode(raw[i+1:])
		msg := []byte(raw[:i])
		pub := is.key.Public
		b.ReportAllocs()
		for n := 0; n < b.N; n++ {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("bad signature")
			}
		}
	})
}
