// Command demoupstream is a tiny upstream for trying the gateway: it answers
// every request with the X-Auth-* headers it received, as JSON. It listens
// on DEMO_UPSTREAM_ADDR (default :8082).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sessionguard/revoke/internal/demo"
	"github.com/sessionguard/revoke/internal/httpx"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demoupstream:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	addr := getenv("DEMO_UPSTREAM_ADDR")
	if addr == "" {
		addr = ":8082"
	}
	if len(args) == 2 && args[1] == "healthcheck" { // for a container's HEALTHCHECK
		return httpx.Probe(ctx, httpx.LocalURL(addr, "/"))
	}
	if len(args) > 1 {
		return fmt.Errorf("usage: demoupstream [healthcheck]; unexpected arguments %q", args[1:])
	}
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	srv := &http.Server{Addr: addr, Handler: demo.Upstream(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("demo upstream listening", "addr", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
