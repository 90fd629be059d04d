package gateway

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/telemetry"
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

// BenchmarkCheckTracing times the forward-auth handler (Check) on a cached
// token four ways, in turn each iteration so all face the same machine:
// bare, the decision and its answer as Check made them before requests had
// ids and spans; ids, bare with the request id Check now gives every
// request; off, Check untraced (ids, and a branch on whether tracing is
// on); on, Check traced (a sampled server span per decision, exported in
// batches to an exporter that drops them). It reports each time and the
// ratios: off/ids is what tracing costs when off.
//
//	go test -run '^$' -bench 'CheckTracing' -count 6 ./services/gateway/
func BenchmarkCheckTracing(b *testing.B) {
	off, is := benchGateway(b)
	on, _ := benchGateway(b)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	on.tracer, on.traced = telemetry.Tracer(tp), true
	// both gateways verify with the same keys
	on.verifier = off.verifier
	h := "Bearer " + is.sign(b, newGrant())
	for range 2 { // a token enters the cache on its second use
		if d := off.Decide(context.Background(), h, time.Now()); d.Outcome != Allow {
			b.Fatal(d.Reason)
		}
	}
	off.verifier.cache.Wait()
	req := httptest.NewRequest("GET", "/v1/check", nil)
	req.Header.Set("Authorization", h)
	bare := func(w http.ResponseWriter, r *http.Request) { // Check as it was
		start := time.Now()
		d := off.Decide(r.Context(), r.Header.Get("Authorization"), off.now())
		off.metrics.latency.Observe(time.Since(start).Seconds())
		if d.Outcome != Allow {
			deny(w, d)
			return
		}
		setIdentity(w.Header(), d.Identity)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}
	ids := func(w http.ResponseWriter, r *http.Request) {
		httpx.EnsureRequestID(w, r)
		bare(w, r)
	}
	var tBare, tIDs, tOff, tOn time.Duration
	run := func(f http.HandlerFunc) time.Duration {
		w := &discardWriter{h: http.Header{}}
		r := req.Clone(req.Context())
		t0 := time.Now()
		f(w, r)
		d := time.Since(t0)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
		return d
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tBare += run(bare)
		tIDs += run(ids)
		tOff += run(off.Check)
		tOn += run(on.Check)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tBare.Nanoseconds())/n, "bare-ns/op")
	b.ReportMetric(float64(tIDs.Nanoseconds())/n, "ids-ns/op")
	b.ReportMetric(float64(tOff.Nanoseconds())/n, "off-ns/op")
	b.ReportMetric(float64(tOn.Nanoseconds())/n, "on-ns/op")
	b.ReportMetric(float64(tIDs)/float64(tBare), "ids/bare")
	b.ReportMetric(float64(tOff)/float64(tIDs), "off/ids")
	b.ReportMetric(float64(tOn)/float64(tOff), "on/off")
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
