package gateway

import (
	"context"
	"crypto/ed25519"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Side-by-side HTTP benchmarks over loopback: the gateway's /v1/check
// against a bare handler that answers 200, and the gateway's proxy against a
// bare httputil.ReverseProxy to the same upstream. Compare with benchstat:
//
//	go test -run '^$' -bench 'HTTP' -count 6 ./services/gateway/ | tee http.txt

func loopbackClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext,
	}}
}

func hammer(b *testing.B, target string, auth string) {
	hammerWith(b, target, func(int64) string { return auth })
}

// hammerWith sends b.N requests from 16 clients per core, the i-th with the
// Authorization header auth(i) ("" for none), and reports requests per
// second; each must be answered 200.
func hammerWith(b *testing.B, target string, auth func(i int64) string) {
	client := loopbackClient()
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", target, nil)
		for pb.Next() {
			if a := auth(next.Add(1) - 1); a != "" {
				req.Header.Set("Authorization", a)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkHTTPCheck(b *testing.B) {
	g, is := benchGateway(b)
	auth := "Bearer " + is.sign(b, newGrant())
	for range 2 { // a token enters the cache on its second use
		if d := g.Decide(context.Background(), auth, time.Now()); d.Outcome != Allow {
			b.Fatal(d.Reason)
		}
	}
	g.verifier.cache.Wait()
	b.Run("bare-200", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
		defer srv.Close()
		hammer(b, srv.URL+"/v1/check", auth)
	})
	b.Run("gateway-check", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(g.Check))
		defer srv.Close()
		hammer(b, srv.URL+"/v1/check", auth)
	})
}

func BenchmarkHTTPProxy(b *testing.B) {
	g, is := benchGateway(b)
	auth := "Bearer " + is.sign(b, newGrant())
	for range 2 { // a token enters the cache on its second use
		if d := g.Decide(context.Background(), auth, time.Now()); d.Outcome != Allow {
			b.Fatal(d.Reason)
		}
	}
	g.verifier.cache.Wait()
	body := make([]byte, 512)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	b.Run("bare-reverseproxy", func(b *testing.B) {
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() }, Transport: NewTransport()}
		srv := httptest.NewServer(rp)
		defer srv.Close()
		hammer(b, srv.URL+"/x", auth)
	})
	b.Run("gateway-proxy", func(b *testing.B) {
		srv := httptest.NewServer(g.Proxy(u, NewTransport(), testLog()))
		defer srv.Close()
		hammer(b, srv.URL+"/x", auth)
	})
}

// hammerEach is hammer with a token of its own for every request: toks[i]
// for the i-th, none used twice (the first request of a fresh session).
func hammerEach(b *testing.B, target string, toks []string) {
	hammerWith(b, target, func(i int64) string { return "Bearer " + toks[i] })
}

// BenchmarkHTTPCheckFreshTokens is /v1/check when every token is new (the
// morning rush: the first request of each fresh session), beside a bare
// handler that does one Ed25519 verify of the token's signature per request
// and nothing else.
//
//	go test -run '^$' -bench 'HTTPCheckFreshTokens' -benchtime 20000x -count 6 ./services/gateway/
func BenchmarkHTTPCheckFreshTokens(b *testing.B) {
	g, is := benchGateway(b)
	pub := is.key.Public
	sign := func(n int) []string {
		toks := make([]string, n)
		for i := range toks {
			toks[i] = is.sign(b, newGrant())
		}
		return toks
	}
	b.Run("bare-ed25519", func(b *testing.B) {
		toks := sign(b.N)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			dot := strings.LastIndexByte(raw, '.')
			sig, err := b64decode(raw[dot+1:])
			if err != nil || !ed25519.Verify(pub, []byte(raw[:dot]), sig) {
				w.WriteHeader(401)
				return
			}
			w.WriteHeader(200)
		}))
		defer srv.Close()
		hammerEach(b, srv.URL+"/v1/check", toks)
	})
	b.Run("gateway-check", func(b *testing.B) {
		toks := sign(b.N)
		srv := httptest.NewServer(http.HandlerFunc(g.Check))
		defer srv.Close()
		hammerEach(b, srv.URL+"/v1/check", toks)
	})
}
