package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/revoke/internal/tokens"
)

// fetchKeys reads the public keys of a JWKS.
func fetchKeys(ctx context.Context, u string) ([]ed25519.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	keys, err := tokens.ParseJWKS(body)
	if err != nil {
		return nil, err
	}
	var out []ed25519.PublicKey
	for _, k := range keys {
		out = append(out, k.Public)
	}
	return out, nil
}

// runBare is the comparison server, run as a process of its own:
// "ok" answers 200 (the bare handler next to /v1/check), "proxy" is a bare
// httputil.ReverseProxy (next to the gateway's proxy), "upstream" answers
// 512 bytes (behind both proxies); "query" answers each request after one
// PostgreSQL round trip (next to introspection); "api" and "gateway" are
// the bare revocation mechanism (internal/barepath).
func runBare(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "ok", "ok, proxy, upstream, query, ed25519, api or gateway")
	jwks := fs.String("jwks", "", "JWKS URL (ed25519 mode)")
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
	case "ed25519":
		// One Ed25519 verify of the bearer token's signature per request and
		// nothing else: the floor of a gateway's decision on a token it has
		// not seen.
		keys, err := fetchKeys(ctx, *jwks)
		if err != nil {
			return err
		}
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			dot := strings.LastIndexByte(raw, '.')
			if dot < 0 {
				w.WriteHeader(401)
				return
			}
			sig, err := base64.RawURLEncoding.DecodeString(raw[dot+1:])
			for _, k := range keys {
				if err == nil && ed25519.Verify(k, []byte(raw[:dot]), sig) {
					w.WriteHeader(200)
					return
				}
			}
			w.WriteHeader(401)
		})
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
