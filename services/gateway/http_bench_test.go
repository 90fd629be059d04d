package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
	client := loopbackClient()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", target, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for pb.Next() {
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
