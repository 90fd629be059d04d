// Command gatewayd is the edge auth gateway: a reverse proxy that lets only
// valid, unrevoked access tokens through, plus a forward-auth endpoint for
// NGINX, Traefik and Envoy. Configuration is by environment variable; see
// the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessionguard/revoke/internal/buildinfo"
	"github.com/sessionguard/revoke/internal/envconf"
	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/telemetry"

	"github.com/sessionguard/revoke/services/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gatewayd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 2 && args[1] == "healthcheck" {
		// For a container's HEALTHCHECK (the image has no shell or curl):
		// ready (replayed, current, keys loaded) on the control address.
		return httpx.Probe(ctx, httpx.LocalURL(envconf.New(getenv).String("GATEWAY_CONTROL_ADDR", ":9091"), "/readyz"))
	}
	if len(args) > 1 {
		fmt.Fprintln(stderr, "usage: gatewayd [healthcheck] (configured by environment variables; see the README)")
		return fmt.Errorf("unexpected arguments %q", args[1:])
	}
	level, lerr := envconf.LogLevel(getenv, "LOG_LEVEL")
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	cfg, err := gateway.ConfigFromEnv(getenv)
	tp, stopTracing, terr := telemetry.Setup(ctx, getenv, "gatewayd", buildinfo.Version())
	if err = errors.Join(lerr, err, terr); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	defer telemetry.Shutdown(stopTracing, log)
	cfg.Tracer = tp
	return gateway.Serve(ctx, cfg, gateway.Listeners{}, log)
}
