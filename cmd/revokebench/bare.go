package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// runBare is the comparison server, run as a process of its own:
// "ok" answers 200 (the bare handler next to /v1/check), "proxy" is a bare
// httputil.ReverseProxy (next to the gateway's proxy), "upstream" answers
// 512 bytes (behind both proxies); "query" answers each request after one
// PostgreSQL round trip (next to introspection); "api" and "gateway" are
// the bare revocation mechanism (internal/barepath).
func runBare(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "ok", "ok, proxy, upstream, query, api or gateway")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	upstream := fs.String("upstream", "", "upstream URL (proxy mode)")
	database := fs.String("database", "", "PostgreSQL URL (api mode)")
	natsURL := fs.String("nats", "", "NATS URL (api and gateway modes)")
	name := fs.String("name", "", "gateway name (gateway mode)")
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
	case "query":
		if *database == "" {
			return errors.New("bare query needs -database")
		}
		pool, err := pgxpool.New(ctx, *database)
		if err != nil {
			return err
		}
		defer pool.Close()
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			var n int
			if err := pool.QueryRow(r.Context(), "SELECT length($1::text)", r.PostForm.Get("token")).Scan(&n); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"active":true,"n":%d}`, n)
		})
	case "api", "gateway":
		var closeFn func()
		var err error
		switch {
		case *mode == "api" && *database != "" && *natsURL != "":
			h, closeFn, err = bareAPI(ctx, *database, *natsURL)
		case *mode == "gateway" && *natsURL != "" && *name != "":
			h, closeFn, err = bareGateway(ctx, *natsURL, *name)
		default:
			err = fmt.Errorf("bare %s needs -database and -nats (api) or -nats and -name (gateway)", *mode)
		}
		if err != nil {
			return err
		}
		defer closeFn()
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
