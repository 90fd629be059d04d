// Command sessiond is the session API: login, refresh rotation, session
// listing and revocation, the admin portal, the outbox relay and the erasure
// consumer. Configuration is by environment variable; see the README.
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

	"github.com/sessionguard/revoke/services/sessions/sessiond"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sessiond:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 2 && args[1] == "healthcheck" {
		// For a container's HEALTHCHECK (the image has no shell or curl):
		// ready on the address sessiond listens on.
		return httpx.Probe(ctx, httpx.LocalURL(envconf.New(getenv).String("SESSIOND_ADDR", ":8080"), "/readyz"))
	}
	if len(args) > 1 {
		fmt.Fprintln(stderr, "usage: sessiond [healthcheck] (configured by environment variables; see the README)")
		return fmt.Errorf("unexpected arguments %q", args[1:])
	}
	level, lerr := envconf.LogLevel(getenv, "LOG_LEVEL")
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	cfg, err := sessiond.ConfigFromEnv(getenv)
	tp, stopTracing, terr := telemetry.Setup(ctx, getenv, "sessiond", buildinfo.Version())
	if err = errors.Join(lerr, err, terr); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	defer telemetry.Shutdown(stopTracing, log)
	cfg.Tracer = tp
	return sessiond.Serve(ctx, cfg, nil, log)
}
