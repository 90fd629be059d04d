package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// runBare is the comparison server, run as a process of its own:
// "ok" answers 200 (the bare handler next to /v1/check), "proxy" is a bare
// httputil.ReverseProxy (next to the gateway's proxy), "upstream" answers
// 512 bytes (behind both proxies).
func runBare(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "ok", "ok, proxy or upstream")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	upstream := fs.String("upstream", "", "upstream URL (proxy mode)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := make([]byte, 512)
	var h http.Handler
	switch *mode {
	case "ok":
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	case "upstream":
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })
	case "proxy":
		u, err := url.Parse(*upstream)
		if err != nil || u.Host == "" {
			return errors.New("proxy mode needs -upstream")
		}
		h = &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
			Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second},
		}
	default:
		return errors.New("unknown mode " + *mode)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.Handle("/", h)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
